import ArgumentParser
import Causal
import Foundation
import Logging
import ServiceLifecycle
import UCP

/// `ucp bench-jobs`: jobs per second end to end and submit-to-result latency, beside the same
/// job run in-process on a `JobRunner` in the same run (the baseline: no broker, no HTTP).
struct JobsBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-jobs",
        abstract: "Measure end-to-end jobs/s and submit-to-result latency of a trivial WASI job on a local cluster.")

    @Option(help: "Jobs to run (after a warm-up of a tenth as many).") var jobs = 2000
    @Option(help: "Jobs in flight at once.") var concurrency = 64
    @Option(help: "Executor processes.") var executors = 2

    func validate() throws {
        guard jobs >= 10, concurrency >= 1, (1...16).contains(executors) else {
            throw ValidationError("--jobs >= 10, --concurrency >= 1, --executors 1...16")
        }
    }

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        let folder = NSTemporaryDirectory() + "ucp-bench-" + Membership.id(of: UUID()).prefix(8)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let baseline = try await inProcessRate(folder: folder + "/baseline")
        print("cluster in \(folder):")
        let cluster = try await LocalCluster.start(in: folder, executors: executors, timeLimit: 10, log: { print($0) })
        let stopper = SignalStopper { cluster.stop() }
        defer {
            stopper.cancel()
            cluster.stop()
        }
        let client = cluster.client()
        defer { Task { await client.shutdown() } }
        try await client.put(name: "bench/hello.wasm", bytes: try ShippedJob.hello.wasm())

        let jobs = self.jobs
        let concurrency = self.concurrency
        let executors = self.executors
        try await cluster.withResultListener(client: client) { listener, resultAddr in
            _ = try await Self.measure(
                jobs: max(10, jobs / 10), concurrency: concurrency, client: client, listener: listener,
                resultAddr: resultAddr)
            let (elapsed, latencies) = try await Self.measure(
                jobs: jobs, concurrency: concurrency, client: client, listener: listener, resultAddr: resultAddr)
            let rate = Double(jobs) / elapsed.seconds
            let sorted = latencies.sorted()
            func percentile(_ p: Double) -> Double {
                sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))].seconds * 1000
            }
            print("")
            print("| measure | value |")
            print("|---|---:|")
            print("| jobs | \(jobs) (\(concurrency) in flight, \(executors) executors) |")
            print("| end to end | \(String(format: "%.0f", rate)) jobs/s |")
            print("| submit → result p50 | \(String(format: "%.1f", percentile(0.50))) ms |")
            print("| submit → result p99 | \(String(format: "%.1f", percentile(0.99))) ms |")
            print("| baseline: same job on an in-process JobRunner | \(String(format: "%.0f", baseline)) jobs/s |")
            print("| end to end / baseline | \(String(format: "%.2f", rate / baseline))x |")
        }
    }

    /// Runs `jobs` hello jobs with `concurrency` in flight; returns the wall time and each job's
    /// submit-to-result latency.
    private static func measure(
        jobs: Int, concurrency: Int, client: UCPClient, listener: ResultListener, resultAddr: Address
    ) async throws -> (Duration, [Duration])
    {
        let start = ContinuousClock.now
        var latencies: [Duration] = []
        latencies.reserveCapacity(jobs)
        try await withThrowingTaskGroup(of: Duration.self) { group in
            var next = 0
            func launch() {
                next += 1
                group.addTask {
                    let began = ContinuousClock.now
                    let submission = JobSubmission(module: .named("bench/hello.wasm"), resultAddr: resultAddr)
                    let id = try await client.submit(submission)
                    let zip = try ResultZip(path: try await listener.result(for: id, timeout: .seconds(120)))
                    guard zip.stdout == "Hello, world!\n" else { throw DemoError("job \(id) printed \(zip.stdout)") }
                    return ContinuousClock.now - began
                }
            }
            while next < min(concurrency, jobs) { launch() }
            for try await latency in group {
                latencies.append(latency)
                if next < jobs { launch() }
            }
        }
        return (ContinuousClock.now - start, latencies)
    }

    /// Hello jobs per second on a `JobRunner` in this process, `concurrency` at a time, with the
    /// executors' worker count: the cost of the job itself, without the platform.
    private func inProcessRate(folder: String) async throws -> Double {
        let runner = try JobRunner(rootdir: folder, configuration: JobRunnerConfiguration(workers: executors))
        defer { runner.shutdown() }
        let wasm = try ShippedJob.hello.wasm()
        let count = max(200, jobs / 4)
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<count {
                if index >= concurrency { try await group.next() }
                group.addTask {
                    let id = "job\(index)"
                    let folder = try runner.prepare(jobID: id)
                    try Data(wasm).write(to: URL(fileURLWithPath: folder.code.path + "/exec.wasm"))
                    let report = try await runner.run(try JobSpec(jobID: id, module: try JobPath("exec.wasm")))
                    guard report.outcome.succeeded else { throw DemoError("baseline job \(id): \(report.outcome)") }
                    try? FileManager.default.removeItem(atPath: folder.path)
                }
            }
            try await group.waitForAll()
        }
        return Double(count) / (ContinuousClock.now - start).seconds
    }
}

extension Duration {
    /// The duration in seconds.
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) * 1e-18
    }
}
