import Causal
import Foundation
import Hummingbird
import NetworkFaults
import Testing
@testable import UCP

@Suite("Broker federation over the causal transport, on loopback", .timeLimit(.minutes(3)))
struct FederationTests {
    @Test("a job submitted where no executor can run it is delegated; its state and ledger replicate both ways")
    func delegationAndReplication() async throws {
        let executor = FakeExecutor()
        let late = FakeExecutor()
        let sink = ResultSink()
        try await withFederation { brokers, _ in
            try await withServer(executor.router()) { executorPort in
                try await withServer(sink.router()) { sinkPort in
                    let (a, b) = (brokers[0], brokers[1])
                    var (status, body) = try await send(
                        .PUT, b.base + "/executors/register", json: executor.registration(port: executorPort))
                    #expect(status == .ok, "\(body)")
                    try await eventually("broker 0 knows broker 1's executor") {
                        try a.broker.store.peerExecutors().contains { $0.entry.id == executor.id }
                    }
                    #expect(try a.broker.store.executors().isEmpty, "a peer's executor is not dispatched to directly")

                    let job = UUID()
                    (status, body) = try await send(
                        .PUT, a.base + "/job/submit/\(job)",
                        json: submission(resultAddr: #"{"host":"127.0.0.1","port":\#(sinkPort)}"#, waitFor: []))
                    #expect(status == .ok, "\(body)")
                    try await eventually("broker 1's executor got the delegated job") {
                        executor.submitted.contains { $0.id == job }
                    }
                    try await eventually("broker 0 sees the assignment") {
                        let record = try a.broker.store.job(job)
                        return record?.state == .assigned && record?.executorID == executor.id
                    }
                    #expect(try a.broker.store.events(of: job).map(\.kind).contains(.delegated))

                    // The result reaches broker 1 first: accepted and forwarded.
                    (status, body) = try await sendResult(b.base, "/result/\(job)", from: executor)
                    #expect(status == .ok, "\(body)")
                    #expect(sink.received == [job])
                    try await eventually("broker 0's ledger holds broker 1's decision") {
                        (try a.broker.store.acceptedResult(of: job))?.executor == executor.id
                    }
                    // Another executor's result at broker 0 is refused: accepted once platform-wide.
                    (status, body) = try await sendResult(a.base, "/result/\(job)", from: late)
                    #expect(status == .conflict, "\(body)")
                    #expect(body.contains(executor.idText))
                    #expect(sink.received == [job])

                    // A job nobody can run, submitted without wait_for, is refused (503) and removed on both.
                    let impossible = UUID()
                    (status, body) = try await send(
                        .PUT, a.base + "/job/submit/\(impossible)", json: submission(memory: 1 << 50))
                    #expect(status == .serviceUnavailable, "\(body)")
                    try await eventually("the refused job is gone at broker 1 too") {
                        try a.broker.store.job(impossible) == nil && b.broker.store.outboxCount() == 0
                            && a.broker.store.outboxCount() == 0 && b.broker.store.job(impossible) == nil
                    }

                    (status, body) = try await send(.PUT, b.base + "/job/done/\(job)")
                    #expect(status == .ok, "\(body)")
                    try await eventually("broker 0 sees the job done") { (try a.broker.store.job(job))?.state == .done }
                    try await eventually("equal tables") { try a.digest() == b.digest() }
                    let ledger = try await ledgerView(b.base, job)
                    #expect(ledger.rejected.count == 1, "broker 0's refusal replicated to broker 1")
                }
            }
        }
    }

    @Test("cut the link, change both sides, heal: equal clocks and equal tables, one ledger winner")
    func partitionAndHeal() async throws {
        let e1 = FakeExecutor()
        let e2 = FakeExecutor()
        try await withFederation { brokers, proxy in
            try await withServer(e1.router()) { p1 in
                try await withServer(e2.router()) { p2 in
                    let (a, b) = (brokers[0], brokers[1])
                    _ = try await send(.PUT, b.base + "/executors/register", json: e1.registration(port: p1))
                    // A job both brokers know before the partition.
                    let shared = UUID()
                    var (status, body) = try await send(.PUT, b.base + "/job/submit/\(shared)", json: submission())
                    #expect(status == .ok, "\(body)")
                    try await eventually("broker 0 knows the shared job") { try a.broker.store.job(shared) != nil }
                    try await eventually("both sides drained their outboxes") {
                        try a.broker.store.outboxCount() == 0 && b.broker.store.outboxCount() == 0
                    }

                    proxy.partition()
                    try await eventually("both sides see the link down", timeout: .seconds(15)) {
                        !a.connected && !b.connected
                    }
                    // Broker 0: a job it cannot run and cannot delegate while cut off; a result.
                    let stranded = UUID()
                    (status, body) = try await send(
                        .PUT, a.base + "/job/submit/\(stranded)", json: submission(waitFor: []))
                    #expect(status == .ok, "\(body)")
                    (status, body) = try await sendResult(a.base, "/data/\(shared)/result", from: e2)
                    #expect(status != .conflict, "broker 0 has not heard of another result: \(body)")
                    // Broker 1: a new executor, more jobs, and a result for the same job.
                    _ = try await send(.PUT, b.base + "/executors/register", json: e2.registration(port: p2))
                    for _ in 0..<3 {
                        (status, body) = try await send(.PUT, b.base + "/job/submit/\(UUID())", json: submission())
                        #expect(status == .ok, "\(body)")
                    }
                    (status, body) = try await sendResult(b.base, "/data/\(shared)/result", from: e1)
                    #expect(status != .conflict, "broker 1 has not heard of another result: \(body)")
                    #expect(try a.digest() != b.digest(), "the sides diverged while cut off")
                    #expect(try a.broker.store.job(stranded)?.state == .queued)

                    proxy.heal()
                    try await eventually("the link is back", timeout: .seconds(15)) { a.connected && b.connected }
                    try await eventually("the stranded job was delegated once the link came back") {
                        e1.submitted.contains { $0.id == stranded } || e2.submitted.contains { $0.id == stranded }
                    }
                    try await eventually(
                        "equal tables and equal clocks", timeout: .seconds(20),
                        detail: { try differences(a, b) }
                    ) {
                        let ca = try await a.federation.node.clock()
                        let cb = try await b.federation.node.clock()
                        return try a.digest() == b.digest() && ca == cb
                    }
                    // Both sides accepted a result for the shared job while cut off: now one wins everywhere.
                    let va = try await ledgerView(a.base, shared)
                    let vb = try await ledgerView(b.base, shared)
                    #expect(va.accepted == vb.accepted)
                    #expect(va.rejected.count == 1 && vb.rejected.count == 1, "the loser is recorded once on each side")
                    #expect(va.rejected.first?.reason.contains("superseded") == true)
                }
            }
        }
    }

    @Test("emergency notices reach every broker and its executors in causal order; the mode holds back low jobs")
    func emergencies() async throws {
        let executor = FakeExecutor()
        try await withFederation { brokers, proxy in
            try await withServer(executor.router()) { port in
                let (a, b) = (brokers[0], brokers[1])
                _ = try await send(.PUT, b.base + "/executors/register", json: executor.registration(port: port))
                var (status, body) = try await send(
                    .PUT, a.base + "/emergency", json: #"{"level": "HIGH", "reason": "flood"}"#)
                #expect(status == .ok, "\(body)")
                let raised = try JSONDecoder().decode(EmergencyNotice.self, from: Data(body.utf8))
                #expect(raised.level == .high && raised.origin == a.broker.nodeID)
                try await eventually("broker 1 applied the raise") { b.broker.emergencyMode.current == raised }
                try await eventually("broker 1's executor got it") { executor.emergencyNotices.contains(raised) }

                // Under HIGH, broker 1 holds a LOW job back and dispatches a HIGH one.
                let low = UUID()
                let high = UUID()
                (status, body) = try await send(.PUT, b.base + "/job/submit/\(low)", json: submission(waitFor: []))
                #expect(status == .ok, "\(body)")
                (status, body) = try await send(
                    .PUT, b.base + "/job/submit/\(high)",
                    json: submission(waitFor: []).replacingOccurrences(
                        of: #""delete":true"#, with: #""delete":true,"emergency":"HIGH""#))
                #expect(status == .ok, "\(body)")
                try await eventually("the HIGH job was dispatched") { executor.submitted.contains { $0.id == high } }
                #expect(!executor.submitted.contains { $0.id == low }, "the LOW job waits")

                // Broker 1 clears it, after it saw the raise: everyone ends cleared, in that order.
                (status, body) = try await send(.DELETE, b.base + "/emergency?reason=receded")
                #expect(status == .ok, "\(body)")
                let cleared = try JSONDecoder().decode(EmergencyNotice.self, from: Data(body.utf8))
                #expect(cleared.level == nil && cleared.stamp.compare(raised.stamp) == .after)
                try await eventually("broker 0 applied the clear") { a.broker.emergencyMode.current == cleared }
                #expect(a.broker.emergencyMode.applied == [raised, cleared])
                #expect(b.broker.emergencyMode.applied == [raised, cleared])
                try await eventually("the LOW job goes once cleared") { executor.submitted.contains { $0.id == low } }
                // Pushed to executors in the background, after the broker applied it.
                try await eventually("broker 1's executor got the clear, after the raise") {
                    executor.emergencyNotices == [raised, cleared]
                }

                // Raised concurrently on both sides of a partition: both settle on the same notice.
                proxy.partition()
                try await eventually("both sides see the link down", timeout: .seconds(15)) {
                    !a.connected && !b.connected
                }
                (status, body) = try await send(
                    .PUT, a.base + "/emergency", json: #"{"level": "MEDIUM", "reason": "a"}"#)
                #expect(status == .ok, "\(body)")
                (status, body) = try await send(
                    .PUT, b.base + "/emergency", json: #"{"level": "CRITICAL", "reason": "b"}"#)
                #expect(status == .ok, "\(body)")
                proxy.heal()
                try await eventually("both settle on one notice", timeout: .seconds(20)) {
                    a.broker.emergencyMode.current == b.broker.emergencyMode.current
                }
                let winner = try #require(a.broker.emergencyMode.current)
                #expect(winner.level == .medium || winner.level == .critical)
                for broker in [a, b] {
                    let applied = broker.broker.emergencyMode.applied
                    for (i, earlier) in applied.enumerated() {
                        for later in applied[(i + 1)...] {
                            #expect(later.stamp.compare(earlier.stamp) != .before, "applied out of causal order")
                        }
                    }
                }
            }
        }
    }

    @Test("bad emergency requests: clear errors, the mode unchanged")
    func badEmergencyInput() async throws {
        try await withBroker { broker, address in
            let base = "http://\(address)"
            for body in ["{", #"{"level": "SEVERE", "reason": "x"}"#, #"{"reason": "no level"}"#, "[]"] {
                let (status, answer) = try await send(.PUT, base + "/emergency", json: body)
                #expect(status == .unprocessableEntity, "\(body): \(answer)")
                #expect(answer.contains("detail"))
            }
            let long = String(repeating: "x", count: EmergencyNotice.maxReasonLength + 1)
            let (status, answer) = try await send(
                .PUT, base + "/emergency", json: #"{"level": "LOW", "reason": "\#(long)"}"#)
            #expect(status == .badRequest, "\(answer)")
            #expect(broker.emergencyMode.current == nil)
            let (_, view) = try await send(.GET, base + "/emergency")
            #expect(view.contains(#""applied":[]"#), "\(view)")
        }
    }
}

/// The rows two brokers disagree on, for a failure message.
func differences(_ a: FederatedBroker, _ b: FederatedBroker) throws -> String {
    let da = Set(try a.digest())
    let db = Set(try b.digest())
    return "only at broker 0: \(da.subtracting(db).sorted())\nonly at broker 1: \(db.subtracting(da).sorted())"
}
