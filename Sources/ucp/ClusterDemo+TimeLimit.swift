import Foundation
import UCP

/// The executors' time limit, calibrated when the demo starts.
///
/// The limit has to stop the runaway `spin` job soon, and must never stop a LOW `ticker` job of
/// the second and third acts. How long a ticker job takes depends on the build (a debug build
/// runs guests several times slower) and on what else the machine does, so the demo times one
/// ticker job in this process first, with this build and under the machine's current load, and
/// gives the executors ``timeLimitMargin`` times that, never less than one second.
extension ClusterDemo {
    /// The LOW jobs of the second and third acts: `ticker` with these arguments (12 ticks of
    /// 20 000 steps each, preemptible at every tick).
    static let tickerArguments = ["12", "20000"]

    /// The executors' time limit over the measured ticker job. During the acts every executor
    /// runs a ticker job at once, beside the brokers and the datastore; with three executors on
    /// two cores, one of them kept busy by something else, a guest gets about half a core, so a
    /// job takes about twice as long as measured here. A factor of 8 leaves 4× over that.
    static let timeLimitMargin = 8.0

    /// The shortest time limit, in seconds.
    static let shortestTimeLimit = 1.0

    /// Times one ticker job on an in-process ``JobRunner`` (module parsing included, as an
    /// executor's first run of it) and returns the time limit in seconds: ``timeLimitMargin``
    /// times that, rounded up to a tenth of a second, at least ``shortestTimeLimit``.
    ///
    /// - Throws: when the job cannot run or does not finish all its ticks.
    static func calibratedTimeLimit(folder: String) async throws -> (limit: Double, ticker: Duration) {
        // The fuel rate is set, not measured: the measurement run must not be stopped by a budget.
        let runner = try JobRunner(
            rootdir: folder,
            configuration: JobRunnerConfiguration(
                workers: 1, defaultTimeLimit: .seconds(600), fuelRate: FuelRate(fuelPerSecond: 1e15)))
        defer { runner.shutdown() }
        let job = try runner.prepare(jobID: "ticker")
        try Data(try ShippedJob.ticker.wasm()).write(to: URL(fileURLWithPath: job.code.path + "/ticker.wasm"))
        let report = try await runner.run(
            try JobSpec(jobID: "ticker", module: try JobPath("ticker.wasm"), args: tickerArguments))
        guard report.outcome.succeeded, let stdout = try? String(contentsOfFile: job.stdoutPath, encoding: .utf8),
            stdout.contains("ticker: \(tickerArguments[0]) ticks")
        else {
            throw DemoError("the calibration ticker job did not finish: \(report.outcome)")
        }
        let limit = max(shortestTimeLimit, (report.duration.seconds * timeLimitMargin * 10).rounded(.up) / 10)
        return (limit, report.duration)
    }
}
