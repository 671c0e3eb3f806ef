import Causal
import Foundation
import Hummingbird
import NIOCore
import Synchronization
import Testing
@testable import UCP

/// The broker's `GET /status`.
func brokerStatus(_ base: String) async throws -> BrokerStatus {
    let (status, body) = try await send(.GET, base + "/status")
    #expect(status == .ok, "\(body)")
    return try JSONDecoder().decode(BrokerStatus.self, from: Data(body.utf8))
}

/// An executor stand-in whose first `PUT /submit/{job_id}` is held until ``release()``: the
/// broker's call is in flight meanwhile. Records the jobs it was sent and told to drop.
final class HeldExecutor: Sendable {
    let id = UUID()
    private let state = Mutex<(arrived: [UUID], deleted: [UUID], held: Bool)>(([], [], false))
    private let gate = AsyncStream.makeStream(of: Void.self)

    var idText: String { id.ucpString }
    var arrived: [UUID] { state.withLock { $0.arrived } }
    var deleted: [UUID] { state.withLock { $0.deleted } }

    /// Lets the held submission answer 200.
    func release() { gate.continuation.finish() }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        let name = "_executor\(idText)._urban-cp._tcp.local."
        router.get("ping") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: "\"\(name)\"")))
        }
        router.put("submit/:job_id") { _, context in
            let id = UUID(uuidString: try context.parameters.require("job_id"))!
            let first = self.state.withLock { s in
                s.arrived.append(id)
                defer { s.held = true }
                return !s.held
            }
            if first { for await _ in self.gate.stream {} }
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: "null")))
        }
        router.delete("job/:job_id") { _, context in
            let id = UUID(uuidString: try context.parameters.require("job_id"))!
            self.state.withLock { $0.deleted.append(id) }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "null")))
        }
        return router
    }

    func registration(port: Int) -> String {
        """
        {"hosts": ["127.0.0.1"], "executor": {"address":{"host":"","port":\(port)},"id":"\(idText)",\
        "cur_caps":{"memory":8000000000,"disk":50000000000,"cpu_load":10.0,"cpu_cores":2,"cpu_freq":2400.0,\
        "has_battery":false,"power":100.0},"last_update":1721900000.5}}
        """
    }
}

@Suite("Failure detection and redeployment", .timeLimit(.minutes(2)))
struct RedeploymentTests {
    static func job(b: UInt64) -> JobRecord {
        JobRecord(
            id: UUID(), info: JobInfo(wasmBin: DataReference(name: "exec.wasm")), state: .queued,
            submitted: ClockStamp(clock: ["b": b]))
    }

    @Test("the store assigns a job only to an active executor, checked in the same transaction")
    func assignChecksTheExecutor() throws {
        try withTemporaryFolder { folder in
            let store = try BrokerStore(rootdir: folder)
            defer { try? store.close() }
            let executor = ExecutorEntry(record: ExecutorRecord(id: UUID()), hosts: [], lastHeartbeat: 0)
            let job = Self.job(b: 1)
            try store.submit(job, cause: nil)
            #expect(try store.assign(job.id, to: UUID(), stamp: ClockStamp(clock: ["b": 2])) == false)
            try store.registerExecutor(executor, clock: [:])
            #expect(try store.failExecutors([executor.id]) { ClockStamp(clock: ["b": 3]) }.redeployed == [])
            #expect(try store.assign(job.id, to: executor.id, stamp: ClockStamp(clock: ["b": 4])) == false)
            #expect(try store.job(job.id)?.state == .queued)
            #expect(try store.job(job.id)?.executorID == nil)
            #expect(try store.events(of: job.id).map(\.kind) == [.submitted])
            // Registered again, it is active and may be given the job.
            try store.registerExecutor(executor, clock: [:])
            #expect(try store.assign(job.id, to: executor.id, stamp: ClockStamp(clock: ["b": 5])))
            #expect(try store.job(job.id)?.state == .assigned)
        }
    }

    @Test(
        "failing an executor redeploys its jobs, except those whose result it gave and the ledger accepted: only their done is missing"
    )
    func failKeepsFinishedJobs() throws {
        try withTemporaryFolder { folder in
            let store = try BrokerStore(rootdir: folder)
            defer { try? store.close() }
            let executor = ExecutorEntry(record: ExecutorRecord(id: UUID()), hosts: [], lastHeartbeat: 0)
            try store.registerExecutor(executor, clock: [:])
            let running = Self.job(b: 1)
            let reported = Self.job(b: 2)
            let lost = Self.job(b: 2)
            for job in [running, reported, lost] {
                try store.submit(job, cause: nil)
                #expect(try store.assign(job.id, to: executor.id, stamp: ClockStamp(clock: ["b": 3])))
            }
            _ = try store.decideResult(
                LedgerEntry(
                    jobID: reported.id, executor: executor.id, dot: nil, stamp: ClockStamp(clock: ["b": 4]), at: 0))
            // Another executor's result for `lost` was accepted: this one may not have run it.
            _ = try store.decideResult(
                LedgerEntry(jobID: lost.id, executor: UUID(), dot: nil, stamp: ClockStamp(clock: ["b": 4]), at: 0))
            let outcome = try store.failExecutors([executor.id]) { ClockStamp(clock: ["b": 5]) }
            #expect(outcome.redeployed == [running.id, lost.id])
            #expect(outcome.finished == [reported.id])
            #expect(try store.job(running.id)?.state == .queued)
            #expect(try store.job(reported.id)?.state == .assigned)
            #expect(try store.heartbeatExecutor(executor.id, capabilities: Capabilities(), at: 9) == false)
            #expect(try store.executorSummaries().first?.failed == true)
        }
    }

    @Test("the store counts jobs by level, ledger entries and redeployments for the status")
    func statusQueries() throws {
        try withTemporaryFolder { folder in
            let store = try BrokerStore(rootdir: folder)
            defer { try? store.close() }
            let executor = ExecutorEntry(record: ExecutorRecord(id: UUID()), hosts: [], lastHeartbeat: 0)
            try store.registerExecutor(executor, clock: [:])
            var urgent = Self.job(b: 1)
            urgent.info.emergency = .high
            let plain = Self.job(b: 2)
            try store.submit(urgent, cause: nil)
            try store.submit(plain, cause: nil)
            #expect(try store.assign(plain.id, to: executor.id, stamp: ClockStamp(clock: ["b": 3])))
            #expect(try store.jobCounts(in: .queued) == [.high: 1])
            #expect(try store.jobCounts(in: .assigned) == [.low: 1])
            #expect(try store.executorSummaries().map(\.assignedJobs) == [1])
            let first = LedgerEntry(
                jobID: plain.id, executor: executor.id, dot: nil, stamp: ClockStamp(clock: ["b": 4]), at: 0)
            _ = try store.decideResult(first)
            var late = first
            late.executor = UUID()
            _ = try store.decideResult(late)
            let counts = try store.ledgerCounts()
            #expect(counts.accepted == 1 && counts.rejected == 1)
            #expect(try store.redeploymentCount() == 0)
        }
    }

    @Test(
        "a job sent to an executor that fails meanwhile stays queued, the executor is told to drop it, another gets it")
    func failsWhileSending() async throws {
        let held = HeldExecutor()
        let other = FakeExecutor()
        try await withBroker({
            $0.heartbeatInterval = .seconds(5); $0.failAfter = .seconds(30)
        }) { broker, address in
            let base = "http://\(address)"
            try await withServer(held.router()) { port in
                _ = try await send(.PUT, base + "/executors/register", json: held.registration(port: port))
                let id = UUID()
                let (status, body) = try await send(.PUT, base + "/job/submit/\(id)", json: submission(waitFor: []))
                #expect(status == .ok, "\(body)")
                try await eventually("the job is being sent to the executor") { held.arrived == [id] }
                // The failure detector declares it failed while the call is in flight.
                #expect(try broker.store.failExecutors([held.id]) { broker.clock.event() }.redeployed == [])
                held.release()
                try await eventually("the failed executor is told to drop the job") { held.deleted == [id] }
                let job = try #require(try broker.store.job(id))
                #expect(job.state == .queued)
                #expect(job.executorID == nil)
                #expect(!(try broker.store.events(of: id).map(\.kind).contains(.assigned)))
                try await withServer(other.router()) { port in
                    _ = try await send(.PUT, base + "/executors/register", json: other.registration(port: port))
                    try await eventually("another executor gets the job") {
                        try broker.store.job(id)?.executorID == other.id
                    }
                }
                #expect(held.arrived == [id], "the failed executor was not tried again")
            }
        }
    }

    @Test("a silent executor is suspected (no new jobs), active again when it beats, then failed: its jobs redeployed")
    func suspectedThenFailed() async throws {
        let executor = FakeExecutor()
        try await withBroker({
            // The executor beats whenever the test needs it active. Once it is silent, the test
            // sees it suspected and has 10 s for two loopback requests before it fails.
            $0.heartbeatInterval = .milliseconds(200)
            $0.suspectAfter = .seconds(2)
            $0.failAfter = .seconds(12)
        }) { broker, address in
            let base = "http://\(address)"
            try await withServer(executor.router()) { port in
                let held = UUID()
                try await executor.beating(to: base) {
                    _ = try await send(.PUT, base + "/executors/register", json: executor.registration(port: port))
                    let (status, body) = try await send(.PUT, base + "/job/submit/\(held)", json: submission())
                    #expect(status == .ok, "\(body)")
                }

                try await eventually("the silent executor is suspected", timeout: .seconds(10)) {
                    try await brokerStatus(base).executors.first?.state == .suspected
                }
                var (status, body) = try await send(.PUT, base + "/job/submit/\(UUID())", json: submission())
                #expect(status == .serviceUnavailable, "a suspected executor gets no new job: \(body)")
                #expect(try broker.store.job(held)?.state == .assigned, "it keeps the one it has")
                #expect(try await send(.GET, base + "/executors/count").1 == "1")

                (status, body) = try await send(
                    .PUT, base + "/executors/heartbeat/\(executor.idText)", json: heartbeatBody)
                #expect(status == .ok, "\(body)")
                let again = UUID()
                try await executor.beating(to: base) {
                    #expect(try await brokerStatus(base).executors.first?.state == .active)
                    let (status, body) = try await send(.PUT, base + "/job/submit/\(again)", json: submission())
                    #expect(status == .ok, "active again, it takes jobs: \(body)")
                }

                try await eventually("the silent executor fails", timeout: .seconds(30)) {
                    try await brokerStatus(base).executors.first?.state == .failed
                }
                let view = try await brokerStatus(base)
                #expect(view.redeployments == 2)
                #expect(view.executors.first?.assignedJobs == 0)
                #expect(view.jobs["queued"] == 2)
                for id in [held, again] {
                    #expect(try broker.store.events(of: id).map(\.kind).last == .redeployed)
                }
                let (beat, _) = try await send(
                    .PUT, base + "/executors/heartbeat/\(executor.idText)", json: heartbeatBody)
                #expect(beat == .notFound, "a failed executor must register again")
                #expect(try await send(.GET, base + "/metrics").1.contains("ucp_redeployments_total 2"))
            }
        }
    }

    @Test("GET /status: executors, jobs by state and level, ledger, redeployments, no peers, no emergency")
    func statusRoute() async throws {
        let executor = FakeExecutor()
        let sink = ResultSink()
        try await withBroker { broker, address in
            let base = "http://\(address)"
            try await withServer(sink.router()) { sinkPort in
                try await withServer(executor.router()) { port in
                    _ = try await send(.PUT, base + "/executors/register", json: executor.registration(port: port))
                    let assigned = UUID()
                    _ = try await send(
                        .PUT, base + "/job/submit/\(assigned)",
                        json: submission(resultAddr: #"{"host":"127.0.0.1","port":\#(sinkPort)}"#))
                    // Too big for the executor: it stays queued.
                    _ = try await send(
                        .PUT, base + "/job/submit/\(UUID())", json: submission(memory: 1 << 50, waitFor: []))
                    let (status, accepted) = try await sendResult(base, "/result/\(assigned)", from: executor)
                    #expect(status == .ok, "\(accepted)")
                    let other = FakeExecutor()
                    let (late, _) = try await sendResult(base, "/result/\(assigned)", from: other)
                    #expect(late == .conflict)

                    let (code, text) = try await send(.GET, base + "/status")
                    #expect(code == .ok)
                    #expect(text.contains(#""emergency":null"#), "\(text)")
                    #expect(text.contains(#""peers":[]"#), "\(text)")
                    #expect(text.contains(#""seconds_since_heartbeat":"#), "\(text)")
                    #expect(text.contains(#""queued_by_level":{"#), "\(text)")
                    let view = try await brokerStatus(base)
                    #expect(view.broker == broker.id.ucpString)
                    #expect(view.clock[broker.nodeID] ?? 0 > 0)
                    #expect(view.executors.count == 1)
                    let entry = try #require(view.executors.first)
                    #expect(entry.id == executor.idText)
                    #expect(entry.address.port == port)
                    #expect(entry.state == .active)
                    #expect(entry.assignedJobs == 1)
                    #expect(entry.secondsSinceHeartbeat >= 0 && entry.secondsSinceHeartbeat < 60)
                    #expect(view.jobs == ["waiting": 0, "queued": 1, "assigned": 1, "done": 0, "deleted": 0])
                    #expect(view.queuedByLevel == ["LOW": 1, "MEDIUM": 0, "HIGH": 0, "CRITICAL": 0])
                    #expect(view.assignedByLevel == ["LOW": 1, "MEDIUM": 0, "HIGH": 0, "CRITICAL": 0])
                    #expect(view.ledger == LedgerCounts(accepted: 1, rejected: 1))
                    #expect(view.redeployments == 0)
                    #expect(view.peers.isEmpty)
                    #expect(view.emergency == nil)
                }
            }
        }
    }
}
