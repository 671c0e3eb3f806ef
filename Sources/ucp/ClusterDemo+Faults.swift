import Causal
import Foundation
import UCP

/// The demo's second and third acts: an emergency raised mid-run whose jobs overtake the queue,
/// then an executor frozen until its broker declares it failed, its jobs redeployed, its late
/// results refused, and the executor killed.
extension ClusterDemo {
    /// What the emergency act measured.
    struct EmergencyReport {
        /// Submit-to-result times of the CRITICAL jobs, in milliseconds, sorted.
        var latencies: [Double]
        /// Normal jobs not finished yet when the last CRITICAL result arrived.
        var overtaken: Int
        /// Normal jobs run.
        var normal: Int
    }

    /// Queues long LOW ticker jobs on every executor, raises HIGH through the second broker,
    /// submits CRITICAL jobs through the first, and clears the mode once they are done.
    func emergencyAct(cluster: LocalCluster, clients: [UCPClient], listener: ResultListener, resultAddr: Address)
        async throws -> EmergencyReport
    {
        try await clients[0].put(name: "demo/ticker.wasm", bytes: try ShippedJob.ticker.wasm())
        try await clients[0].put(name: "demo/hello.wasm", bytes: try ShippedJob.hello.wasm())
        let normal = (0..<(3 * executors)).map { _ in
            JobSubmission(
                module: .named("demo/ticker.wasm"), args: Self.tickerArguments, waitFor: [], resultAddr: resultAddr)
        }
        print("\nemergency: \(normal.count) LOW ticker jobs queued on the executors")
        for (index, job) in normal.enumerated() { _ = try await clients[index % clients.count].submit(job) }
        try await pollUntil("the LOW jobs run", timeout: .seconds(60)) {
            var running = 0
            for broker in cluster.brokers {
                running += try await cluster.status(of: broker).jobs["assigned", default: 0]
            }
            return running >= executors
        }
        let raised = try await clients[clients.count - 1].raiseEmergency(.high, reason: "demo: flood warning")
        print("  \(describe(raised))")
        let critical = (0..<3).map { _ in
            JobSubmission(module: .named("demo/hello.wasm"), waitFor: [], emergency: .critical, resultAddr: resultAddr)
        }
        var submitted: [UUID: ContinuousClock.Instant] = [:]
        for job in critical {
            submitted[job.jobID] = .now
            _ = try await clients[0].submit(job)
        }
        var latencies: [Double] = []
        for job in critical {
            let path = try await listener.result(for: job.jobID, timeout: .seconds(60))
            let elapsed = ContinuousClock.now - submitted[job.jobID]!
            latencies.append(milliseconds(elapsed))
            guard try ResultZip(path: path).stdout == "Hello, world!\n" else {
                throw DemoError("a CRITICAL job printed something else")
            }
        }
        var overtaken = 0
        for job in normal where !FileManager.default.fileExists(atPath: listener.path(for: job.jobID)) {
            overtaken += 1
        }
        print(
            "  3 CRITICAL jobs done in \(latencies.map { String(format: "%.0f ms", $0) }.joined(separator: ", ")),"
                + " ahead of \(overtaken) of the \(normal.count) LOW jobs queued before them")
        var preemptions = 0
        for (name, address) in cluster.addresses where name.hasPrefix("executor") {
            let metrics = try await clients[0].http.call(.GET, address, "/metrics")
            let line = String(decoding: metrics.body, as: UTF8.self).split(separator: "\n")
                .first { $0.hasPrefix("ucp_executor_preemptions_total") }
            preemptions += line.flatMap { $0.split(separator: " ").last }.flatMap { Int(Double($0) ?? 0) } ?? 0
        }
        print("  the executors preempted \(preemptions) running LOW jobs for them")
        print("  \(describe(try await clients[0].clearEmergency(reason: "demo: all clear")))")
        for job in normal {
            let zip = try ResultZip(path: try await listener.result(for: job.jobID, timeout: .seconds(120)))
            guard zip.stdout.contains("ticker: \(Self.tickerArguments[0]) ticks") else {
                throw DemoError("a LOW ticker job did not finish all its ticks: \(zip.stdout) \(zip.stderr)")
            }
        }
        print("  every LOW job finished all its ticks (preempted ones were rerun)")
        return EmergencyReport(latencies: latencies.sorted(), overtaken: overtaken, normal: normal.count)
    }

    /// Freezes (SIGSTOP) an executor that holds jobs until its broker declares it failed and its
    /// jobs are done elsewhere, thaws it so that its late results reach the ledger, then kills it.
    /// Returns its name.
    func failureAct(cluster: LocalCluster, clients: [UCPClient], listener: ResultListener, resultAddr: Address)
        async throws -> String
    {
        let jobs = (0..<(2 * executors)).map { _ in
            JobSubmission(
                module: .named("demo/ticker.wasm"), args: Self.tickerArguments, waitFor: [], resultAddr: resultAddr)
        }
        print("\nfailure: \(jobs.count) ticker jobs")
        for (index, job) in jobs.enumerated() { _ = try await clients[index % clients.count].submit(job) }
        var victim: (name: String, broker: Address)?
        try await pollUntil("an executor holds jobs", timeout: .seconds(60)) {
            for broker in cluster.brokers {
                let status = try await cluster.status(of: broker)
                if let busy = status.executors.first(where: { $0.assignedJobs > 0 && $0.state == .active }),
                    let name = cluster.name(ofPort: busy.address.port)
                {
                    victim = (name, broker)
                    return true
                }
            }
            return false
        }
        guard let victim, let process = cluster.process(victim.name) else { throw DemoError("no executor to freeze") }
        process.pause()
        print("  froze \(victim.name) (SIGSTOP) while it held jobs")
        try await pollUntil("the broker declares \(victim.name) failed", timeout: .seconds(60)) {
            let status = try await cluster.status(of: victim.broker)
            let state = status.executors.first { cluster.name(ofPort: $0.address.port) == victim.name }?.state
            return state == .failed && status.redeployments > 0
        }
        print("  its broker suspected it, then declared it failed and redeployed its jobs")
        for job in jobs { _ = try await listener.result(for: job.jobID, timeout: .seconds(120)) }
        print("  all \(jobs.count) jobs done elsewhere; thawing \(victim.name) (SIGCONT)")
        process.resume()
        try await pollUntil("its late result is refused", timeout: .seconds(60)) {
            try await cluster.status(of: victim.broker).ledger.rejected > 0
        }
        print("  its late result was refused (409) and recorded in the ledger; killing it (SIGKILL)")
        cluster.crash(victim.name)
        return victim.name
    }
}

/// Polls `condition` until it holds, every 100 ms, or throws after `timeout`.
func pollUntil(_ what: String, timeout: Duration, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if (try? await condition()) == true { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw DemoError("timed out after \(timeout) waiting until \(what)")
}

/// `value` seconds as the demo prints them: `1 s`, `2.4 s`.
func secondsText(_ value: Double) -> String {
    value == value.rounded() ? "\(Int(value)) s" : String(format: "%.1f s", value)
}

/// `elapsed` in milliseconds.
func milliseconds(_ elapsed: Duration) -> Double {
    Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) * 1e-15
}
