import Causal
import Foundation
import Logging
import Testing
import UCP

@testable import ucp

/// Polls `condition` every 50 ms until it holds or `timeout` passes; then records an issue
/// naming `what` and throws, so that the test stops there with a clear message.
func until(
    _ what: String, timeout: Duration, sourceLocation: SourceLocation = #_sourceLocation,
    _ condition: () async throws -> Bool
) async throws {
    let began = ContinuousClock.now
    let deadline = began + timeout
    while ContinuousClock.now < deadline {
        if try await condition() {
            FileHandle.standardError.write(Data("[fault] \(what): after \(ContinuousClock.now - began)\n".utf8))
            return
        }
        try await Task.sleep(for: .milliseconds(50))
    }
    if try await condition() { return }
    Issue.record("timed out after \(timeout) waiting for: \(what)", sourceLocation: sourceLocation)
    throw DemoError("timed out after \(timeout) waiting for \(what)")
}

/// Crashes, pauses and restarts real `ucp` processes of a ``LocalCluster`` while jobs run, and
/// checks that no job is lost and no result is accepted twice. Heartbeats every 0.5 s; a node
/// is suspected after 1.5 s and failed after 4 s of silence (generous for a loaded machine).
@Suite("Faults: ucp processes crashed, paused and restarted while jobs run", .serialized, .timeLimit(.minutes(5)))
struct FaultTests {
    static let failAfter = 4.0

    /// Notes a step with the time since the test started, on standard error.
    static func step(_ started: ContinuousClock.Instant, _ what: String) {
        FileHandle.standardError.write(Data("[fault \(ContinuousClock.now - started)] \(what)\n".utf8))
    }

    /// Runs `body` with a cluster of a broker, a datastore and two executors, and a client.
    static func withCluster(
        _ label: String, timeLimit: Double = 10, workers: Int? = nil, dispatchWindow: Int? = nil,
        _ body: (LocalCluster, UCPClient) async throws -> Void
    ) async throws {
        let ucp = try #require(ClusterDemoTests.ucp, "ucp is built with the tests")
        let started = ContinuousClock.now
        let folder = NSTemporaryDirectory() + "ucp-fault-\(label)-" + UUID().ucpString.prefix(8)
        let cluster = try await LocalCluster.start(
            in: folder, executors: 2, timeLimit: timeLimit, heartbeatSeconds: 0.5, suspectAfterSeconds: 1.5,
            failAfterSeconds: failAfter, workers: workers, dispatchWindow: dispatchWindow, executable: ucp,
            log: { _ in })
        let client = cluster.client()
        step(started, "\(label): cluster ready")
        defer { step(started, "\(label): done") }
        do {
            try await body(cluster, client)
        } catch {
            await client.shutdown()
            cluster.stop()
            Issue.record("logs kept in \(folder)")
            throw error
        }
        await client.shutdown()
        cluster.stop()
        try? FileManager.default.removeItem(atPath: folder)
    }

    /// The broker's status.
    static func status(_ cluster: LocalCluster, _ client: UCPClient) async throws -> BrokerStatus {
        try await client.http.decode(BrokerStatus.self, .GET, cluster.broker, "/status")
    }

    /// Executor `name` as the broker's status shows it.
    static func executor(_ name: String, in status: BrokerStatus, of cluster: LocalCluster) -> ExecutorStatus? {
        guard let port = cluster.address(of: name)?.port else { return nil }
        return status.executors.first { $0.address.port == port }
    }

    /// Submits `jobs`, 32 at a time.
    static func submit(_ jobs: [JobSubmission], _ client: UCPClient) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, job) in jobs.enumerated() {
                if index >= 32 { try await group.next() }
                group.addTask { try await client.submit(job) }
            }
            try await group.waitForAll()
        }
    }

    /// Every job's ledger, 16 at a time.
    static func ledgers(_ ids: [UUID], _ cluster: LocalCluster, _ client: UCPClient) async throws
        -> [UUID: LedgerView]
    {
        try await withThrowingTaskGroup(of: (UUID, LedgerView).self) { group in
            var views: [UUID: LedgerView] = [:]
            for (index, id) in ids.enumerated() {
                if index >= 16, let (done, view) = try await group.next() { views[done] = view }
                group.addTask {
                    (
                        id,
                        try await client.http.decode(
                            LedgerView.self, .GET, cluster.broker, "/ledger/\(id.ucpString)")
                    )
                }
            }
            for try await (id, view) in group { views[id] = view }
            return views
        }
    }

    /// Waits for every job's result at `listener`, all within `timeout`.
    static func results(_ ids: [UUID], _ listener: ResultListener, timeout: Duration) async throws {
        let began = ContinuousClock.now
        let deadline = began + timeout
        for id in ids {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw DemoError("not every result arrived within \(timeout)") }
            _ = try await listener.result(for: id, timeout: left)
        }
        FileHandle.standardError.write(
            Data("[fault] \(ids.count) results: after \(ContinuousClock.now - began)\n".utf8))
    }

    @Test("kill -9 one of two executors while 1000 jobs run: every job completes once, its jobs redeployed")
    func crashExecutor() async throws {
        // A wide dispatch window, so that the executor killed holds many jobs (queued ones among
        // them), not only the few of the default window, whose results may all be in already.
        try await Self.withCluster("executor", dispatchWindow: 200) { cluster, client in
            try await client.put(name: "fault/hello.wasm", bytes: try ShippedJob.hello.wasm())
            try await cluster.withResultListener(client: client) { listener, resultAddr in
                let jobs = (0..<1000).map { _ in
                    JobSubmission(module: .named("fault/hello.wasm"), waitFor: [], resultAddr: resultAddr)
                }
                try await Self.submit(Array(jobs[..<300]), client)
                try await until("executor-2 holds jobs", timeout: .seconds(60)) {
                    (Self.executor("executor-2", in: try await Self.status(cluster, client), of: cluster)?.assignedJobs
                        ?? 0) > 0
                }
                cluster.crash("executor-2")
                try await Self.submit(Array(jobs[300...]), client)
                let ids = jobs.map(\.jobID)
                try await Self.results(ids, listener, timeout: .seconds(120))
                let ledgers = try await Self.ledgers(ids, cluster, client)
                #expect(ledgers.count == ids.count)
                #expect(ledgers.values.filter { $0.accepted == nil }.isEmpty, "every job has an accepted result")
                let status = try await Self.status(cluster, client)
                #expect(status.redeployments > 0, "\(status)")
                #expect(status.ledger.accepted == ids.count, "exactly one accepted result per job")
                #expect(Self.executor("executor-2", in: status, of: cluster)?.state == .failed)
            }
        }
    }

    @Test(
        "SIGSTOP an executor holding jobs until it fails and its jobs are done elsewhere, then SIGCONT: its late results are refused and counted"
    )
    func pauseExecutor() async throws {
        // Spin jobs end at the executors' 0.5 s time limit, with an error result; one at a time
        // per executor, so that a loaded machine does not stretch them much.
        try await Self.withCluster("pause", timeLimit: 0.5, workers: 1) { cluster, client in
            try await client.put(name: "fault/spin.wasm", bytes: try ShippedJob.spin.wasm())
            try await cluster.withResultListener(client: client) { listener, resultAddr in
                let jobs = (0..<4).map { _ in
                    JobSubmission(module: .named("fault/spin.wasm"), waitFor: [], resultAddr: resultAddr)
                }
                try await Self.submit(jobs, client)
                // The dispatch picks executors at random: pause one that holds jobs.
                var name = ""
                try await until("an executor holds jobs", timeout: .seconds(30)) {
                    let status = try await Self.status(cluster, client)
                    name =
                        ["executor-2", "executor-1"].first {
                            (Self.executor($0, in: status, of: cluster)?.assignedJobs ?? 0) > 0
                        } ?? ""
                    return !name.isEmpty
                }
                let paused = try #require(cluster.process(name))
                paused.pause()
                defer { paused.resume() }
                let victim = try #require(Self.executor(name, in: try await Self.status(cluster, client), of: cluster))
                try await until("the paused executor fails and its jobs are redeployed", timeout: .seconds(30)) {
                    let status = try await Self.status(cluster, client)
                    return Self.executor(name, in: status, of: cluster)?.state == .failed && status.redeployments > 0
                }
                let ids = jobs.map(\.jobID)
                try await Self.results(ids, listener, timeout: .seconds(60))
                paused.resume()
                try await until("the late results are refused", timeout: .seconds(30)) {
                    try await Self.status(cluster, client).ledger.rejected > 0
                }
                let ledgers = try await Self.ledgers(ids, cluster, client)
                #expect(ledgers.values.filter { $0.accepted == nil }.isEmpty)
                let late = ledgers.values.flatMap(\.rejected).filter {
                    $0.entry.executor.map { $0.ucpString } == victim.id
                }
                #expect(!late.isEmpty, "the paused executor's rejected results are in the ledger")
                #expect(try await Self.status(cluster, client).ledger.accepted == ids.count)
            }
        }
    }

    @Test(
        "kill -9 the broker while jobs run, some waiting for others, and restart it: no job lost, none accepted twice")
    func crashBroker() async throws {
        try await Self.withCluster("broker", timeLimit: 0.5, workers: 1) { cluster, client in
            try await client.put(name: "fault/spin.wasm", bytes: try ShippedJob.spin.wasm())
            try await client.put(name: "fault/hello.wasm", bytes: try ShippedJob.hello.wasm())
            try await cluster.withResultListener(client: client) { listener, resultAddr in
                let spins = (0..<6).map { _ in
                    JobSubmission(module: .named("fault/spin.wasm"), waitFor: [], resultAddr: resultAddr)
                }
                let followers = spins.map { spin in
                    JobSubmission(module: .named("fault/hello.wasm"), waitFor: [spin.jobID], resultAddr: resultAddr)
                }
                let hellos = (0..<20).map { _ in
                    JobSubmission(module: .named("fault/hello.wasm"), waitFor: [], resultAddr: resultAddr)
                }
                try await Self.submit(spins, client)
                try await Self.submit(followers + hellos, client)
                let ids = (spins + followers + hellos).map(\.jobID)
                try await until("a first spin result arrives", timeout: .seconds(30)) {
                    spins.contains { FileManager.default.fileExists(atPath: listener.path(for: $0.jobID)) }
                }
                cluster.crash("broker")
                try cluster.restart("broker")
                try await Self.results(ids, listener, timeout: .seconds(90))
                let ledgers = try await Self.ledgers(ids, cluster, client)
                #expect(ledgers.values.filter { $0.accepted == nil }.isEmpty, "no job lost")
                #expect(
                    try await Self.status(cluster, client).ledger.accepted == ids.count, "one accepted result per job")
                try await until("no job waits or is queued", timeout: .seconds(30)) {
                    let jobs = try await Self.status(cluster, client).jobs
                    return jobs["waiting"] == 0 && jobs["queued"] == 0
                }
            }
        }
    }
}
