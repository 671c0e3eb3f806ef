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
    @Option(help: "Brokers (a federation when more than one); jobs are submitted through each in turn.")
    var brokers = 1
    @Option(help: "Then queue this many normal jobs and time CRITICAL jobs submitted behind them (0: skip).")
    var emergencyQueue = 0
    @Option(help: "CRITICAL jobs timed behind the queue.") var emergencyJobs = 30

    func validate() throws {
        guard jobs >= 10, concurrency >= 1, (1...16).contains(executors), (1...8).contains(brokers),
            emergencyQueue >= 0, emergencyJobs >= 1
        else {
            throw ValidationError("--jobs >= 10, --concurrency >= 1, --executors 1...16, --brokers 1...8")
        }
    }

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        let folder = NSTemporaryDirectory() + "ucp-bench-" + UUID().ucpString.prefix(8)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let baseline = try await inProcessRate(folder: folder + "/baseline")
        print("cluster in \(folder):")
        let cluster = try await LocalCluster.start(
            in: folder, brokers: brokers, executors: executors, timeLimit: 10, log: { print($0) })
        let stopper = SignalStopper { cluster.stop() }
        defer {
            stopper.cancel()
            cluster.stop()
        }
        let clients = cluster.brokers.map { cluster.client(of: $0) }
        defer { Task { for client in clients { await client.shutdown() } } }
        let client = clients[0]
        try await client.put(name: "bench/hello.wasm", bytes: try ShippedJob.hello.wasm())

        let jobs = self.jobs
        let concurrency = self.concurrency
        let executors = self.executors
        let brokers = self.brokers
        let emergencyQueue = self.emergencyQueue
        let emergencyJobs = self.emergencyJobs
        try await cluster.withResultListener(client: client) { listener, resultAddr in
            _ = try await Self.measure(
                jobs: max(10, jobs / 10), concurrency: concurrency, clients: clients, listener: listener,
                resultAddr: resultAddr)
            let (elapsed, latencies) = try await Self.measure(
                jobs: jobs, concurrency: concurrency, clients: clients, listener: listener, resultAddr: resultAddr)
            let rate = Double(jobs) / elapsed.seconds
            let sorted = latencies.sorted()
            func percentile(_ p: Double) -> Double {
                sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))].seconds * 1000
            }
            print("")
            print("| measure | value |")
            print("|---|---:|")
            print(
                "| jobs | \(jobs) (\(concurrency) in flight, \(executors) executors, \(brokers) broker\(brokers == 1 ? "" : "s")) |"
            )
            print("| end to end | \(String(format: "%.0f", rate)) jobs/s |")
            print("| submit → result p50 | \(String(format: "%.1f", percentile(0.50))) ms |")
            print("| submit → result p99 | \(String(format: "%.1f", percentile(0.99))) ms |")
            print("| baseline: same job on an in-process JobRunner | \(String(format: "%.0f", baseline)) jobs/s |")
            print("| end to end / baseline | \(String(format: "%.2f", rate / baseline))x |")
            if emergencyQueue > 0 {
                try await Self.emergencyLatency(
                    queue: emergencyQueue, critical: emergencyJobs, cluster: cluster, clients: clients,
                    listener: listener, resultAddr: resultAddr)
            }
        }
    }

    /// Queues `queue` normal jobs, then submits `critical` CRITICAL jobs one after another behind
    /// them and prints their submit-to-start (the executor's `started` event) and submit-to-result
    /// latencies, p50 and p99.
    private static func emergencyLatency(
        queue: Int, critical: Int, cluster: LocalCluster, clients: [UCPClient], listener: ResultListener,
        resultAddr: Address
    ) async throws {
        let began = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<32 {
                group.addTask {
                    for index in stride(from: lane, to: queue, by: 32) {
                        let job = JobSubmission(module: .named("bench/hello.wasm"), waitFor: [], resultAddr: resultAddr)
                        _ = try await clients[index % clients.count].submit(job)
                    }
                }
            }
            try await group.waitForAll()
        }
        // Every broker knows every job (the federation replicates them): one broker's count is the total.
        let waiting = try await cluster.status().jobs["queued", default: 0]
        var starts: [Double] = []
        var results: [Double] = []
        let executors = cluster.addresses.filter { $0.name.hasPrefix("executor") }.map(\.address)
        for index in 0..<critical {
            let job = JobSubmission(
                module: .named("bench/hello.wasm"), waitFor: [], emergency: .critical, resultAddr: resultAddr)
            let submitted = Date().timeIntervalSince1970
            let clock = ContinuousClock.now
            _ = try await clients[index % clients.count].submit(job)
            _ = try await listener.result(for: job.jobID, timeout: .seconds(120))
            results.append((ContinuousClock.now - clock).seconds * 1000)
            for executor in executors {
                guard
                    let status = try? await clients[0].http.decode(
                        ExecutorJobStatus.self, .GET, executor, "/job/\(job.jobID.ucpString)"),
                    let started = status.events.first(where: { $0.event == "started" })?.at
                else { continue }
                starts.append((started - submitted) * 1000)
                break
            }
        }
        func percentile(_ values: [Double], _ p: Double) -> String {
            let sorted = values.sorted()
            guard !sorted.isEmpty else { return "n/a" }
            return String(format: "%.1f ms", sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))])
        }
        print(
            "| normal jobs queued before the CRITICAL ones | \(queue) submitted in \(String(format: "%.1f", (ContinuousClock.now - began).seconds)) s; \(waiting) still queued at the brokers |"
        )
        print(
            "| CRITICAL submit → start p50 / p99 (\(starts.count) jobs) | \(percentile(starts, 0.5)) / \(percentile(starts, 0.99)) |"
        )
        print("| CRITICAL submit → result p50 / p99 | \(percentile(results, 0.5)) / \(percentile(results, 0.99)) |")
    }

    /// Runs `jobs` hello jobs with `concurrency` in flight; returns the wall time and each job's
    /// submit-to-result latency.
    private static func measure(
        jobs: Int, concurrency: Int, clients: [UCPClient], listener: ResultListener, resultAddr: Address
    ) async throws -> (Duration, [Duration]) {
        let start = ContinuousClock.now
        var latencies: [Duration] = []
        latencies.reserveCapacity(jobs)
        try await withThrowingTaskGroup(of: Duration.self) { group in
            var next = 0
            func launch() {
                let client = clients[next % clients.count]
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
