import AsyncHTTPClient
import Foundation
import Hummingbird
import NIOCore
import NIOHTTP1
import Synchronization
import Testing
import UCP

/// A client's result listener stand-in: records every `PUT /result/{job_id}` and answers 500 to
/// the first `failures` of them.
final class ResultSink: Sendable {
    private let state: Mutex<(failures: Int, received: [UUID])>

    init(failures: Int = 0) {
        state = Mutex((failures, []))
    }

    /// The jobs whose results were received (and answered 200), in order.
    var received: [UUID] { state.withLock { $0.received } }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.put("result/:job_id") { request, context in
            let id = UUID(uuidString: try context.parameters.require("job_id"))!
            let body = try await request.body.collect(upTo: 1 << 20)
            let fail = self.state.withLock { s in
                if s.failures > 0 {
                    s.failures -= 1
                    return true
                }
                if body.readableBytes > 0 { s.received.append(id) }
                return false
            }
            return Response(
                status: fail ? .internalServerError : .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: fail ? #"{"detail":"down"}"# : "null")))
        }
        return router
    }
}

/// Sends a result zip for job `id` to `path` as executor `executor` would (its dot in
/// `X-UCP-Dot`), or as a plain UCP executor when `executor` is nil.
func sendResult(_ base: String, _ path: String, from executor: FakeExecutor?, seq: UInt64 = 1) async throws
    -> (HTTPResponseStatus, String)
{
    let (body, type) = multipart(try resultZip("zip-of-\(executor?.idText ?? "plain")"))
    var request = HTTPClientRequest(url: base + path)
    request.method = .PUT
    request.headers.add(name: "Content-Type", value: type)
    if let executor {
        request.headers.add(name: "X-UCP-Clock", value: "{}")
        request.headers.add(name: "X-UCP-Dot", value: "\(executor.idText):\(seq)")
    }
    request.body = .bytes(body)
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
    return (response.status, String(buffer: try await response.body.collect(upTo: 1 << 20)))
}

/// The broker's ledger of job `id`.
func ledgerView(_ base: String, _ id: UUID) async throws -> LedgerView {
    let (status, body) = try await send(.GET, base + "/ledger/\(id)")
    #expect(status == .ok, "\(body)")
    return try JSONDecoder().decode(LedgerView.self, from: Data(body.utf8))
}

@Suite("The result ledger at the broker, over loopback", .timeLimit(.minutes(2)))
struct ResultLedgerAPITests {
    @Test("two executors' results for one job: the first is forwarded, the second is 409 naming the first")
    func twoExecutors() async throws {
        let e1 = FakeExecutor()
        let e2 = FakeExecutor()
        let sink = ResultSink(failures: 1)
        try await withBroker { brokerObject, broker in
            try await withServer(e1.router()) { p1 in
                try await withServer(e2.router()) { p2 in
                    try await withServer(sink.router()) { sinkPort in
                        let base = "http://\(broker)"
                        _ = try await send(.PUT, base + "/executors/register", json: e1.registration(port: p1))
                        _ = try await send(.PUT, base + "/executors/register", json: e2.registration(port: p2))
                        let id = UUID()
                        var (status, body) = try await send(
                            .PUT, base + "/job/submit/\(id)",
                            json: submission(resultAddr: #"{"host":"127.0.0.1","port":\#(sinkPort)}"#))
                        #expect(status == .ok, "\(body)")
                        let empty = try await ledgerView(base, id)
                        #expect(empty.accepted == nil && empty.rejected.isEmpty)

                        // E1 is first; the client's listener fails: 502, but E1's result stays accepted.
                        (status, body) = try await sendResult(base, "/result/\(id)", from: e1)
                        #expect(status == .badGateway, "\(body)")
                        // E2 comes second: 409 naming E1 and its clock, nothing forwarded.
                        (status, body) = try await sendResult(base, "/result/\(id)", from: e2)
                        #expect(status == .conflict, "\(body)")
                        let conflict = try JSONDecoder().decode(LedgerConflict.self, from: Data(body.utf8))
                        #expect(conflict.acceptedExecutor == e1.idText)
                        #expect(conflict.acceptedDot == "\(e1.idText):1")
                        #expect((conflict.acceptedClock[brokerObject.nodeID] ?? 0) > 0, "\(body)")
                        #expect(conflict.detail.contains(e1.idText))
                        // E2's fallback, storing the result as <job_id>/result, is refused too.
                        (status, body) = try await sendResult(base, "/data/\(id)/result", from: e2, seq: 2)
                        #expect(status == .conflict, "\(body)")
                        // E1 retries: the accepted result is forwarded.
                        (status, body) = try await sendResult(base, "/result/\(id)", from: e1, seq: 2)
                        #expect(status == .ok, "\(body)")
                        #expect(sink.received == [id], "the listener received exactly one zip")

                        let view = try await ledgerView(base, id)
                        let accepted = try #require(view.accepted)
                        #expect(accepted.executor == e1.id)
                        #expect(accepted.stamp.clock == conflict.acceptedClock)
                        #expect(view.rejected.map(\.entry.executor) == [e2.id, e2.id])
                        #expect(view.rejected.map(\.entry.dot?.seq) == [1, 2])
                        #expect(accepted.stamp.compare(view.rejected[0].entry.stamp) == .before)
                        (status, _) = try await send(.GET, base + "/ledger/\(UUID())")
                        #expect(status == .notFound)

                        // The loser's done changes nothing; the winner's marks the job done.
                        (status, body) = try await sendDone(base, id, from: e2)
                        #expect(status == .ok, "\(body)")
                        #expect(try brokerObject.job(id).done == nil)
                        (status, body) = try await sendDone(base, id, from: e1)
                        #expect(status == .ok, "\(body)")
                        #expect(try brokerObject.job(id).state == .done)
                        let (_, metrics) = try await send(.GET, base + "/metrics")
                        #expect(metrics.contains("ucp_ledger_accepted_total 1"), "\(metrics)")
                        #expect(metrics.contains("ucp_ledger_rejected_total 2"), "\(metrics)")
                    }
                }
            }
        }
    }

    @Test(
        "an executor pruned and replaced comes back late: refused after the new executor's result, accepted when first",
        arguments: [false, true])
    func lateAfterRequeue(lateFirst: Bool) async throws {
        let old = FakeExecutor()
        let new = FakeExecutor()
        let sink = ResultSink()
        try await withBroker({
            $0.heartbeatInterval = .milliseconds(200)
            $0.failAfter = .seconds(2)
        }) { _, broker in
            try await withServer(sink.router()) { sinkPort in
                let base = "http://\(broker)"
                let id = UUID()
                let after = UUID()
                // The old executor beats while it takes the job, then falls silent.
                try await withServer(old.router()) { port in
                    try await old.beating(to: base) {
                        _ = try await send(.PUT, base + "/executors/register", json: old.registration(port: port))
                        let (status, body) = try await send(
                            .PUT, base + "/job/submit/\(id)",
                            json: submission(resultAddr: #"{"host":"127.0.0.1","port":\#(sinkPort)}"#))
                        #expect(status == .ok, "\(body)")
                        _ = try await send(.PUT, base + "/job/submit/\(after)", json: submission(waitFor: [id]))
                        try await eventually("the job goes to the old executor") {
                            old.submitted.map(\.id).contains(id)
                        }
                    }
                }
                try await eventually("the silent executor is pruned and its job requeued") {
                    try await send(.GET, base + "/job/\(id)").1.contains(#""state":"queued""#)
                }
                // The new executor beats to the end: failed, it would have its accepted job marked done.
                try await withServer(new.router()) { port in
                    try await new.beating(to: base) {
                        _ = try await send(.PUT, base + "/executors/register", json: new.registration(port: port))
                        try await eventually("the job goes to the new executor") {
                            new.submitted.map(\.id).contains(id)
                        }
                        let (winner, loser) = lateFirst ? (old, new) : (new, old)
                        var (status, body) = try await sendResult(base, "/result/\(id)", from: winner)
                        #expect(status == .ok, "\(body)")
                        (status, body) = try await sendResult(base, "/result/\(id)", from: loser)
                        #expect(status == .conflict, "\(body)")
                        let conflict = try JSONDecoder().decode(LedgerConflict.self, from: Data(body.utf8))
                        #expect(conflict.acceptedExecutor == winner.idText)
                        #expect(sink.received == [id])
                        if lateFirst {
                            // The late result won: the new executor is told to drop its rerun.
                            try await eventually("the rerun is withdrawn") { new.deleted.contains(id) }
                        } else {
                            #expect(!new.deleted.contains(id), "the winner keeps its job")
                        }

                        // The loser's done changes nothing; the winner's, assigned or not, releases `after`.
                        (status, body) = try await sendDone(base, id, from: loser)
                        #expect(status == .ok, "\(body)")
                        var view = try JSONDecoder().decode(
                            JobView.self, from: Data(try await send(.GET, base + "/job/\(id)").1.utf8))
                        #expect(view.done == nil)
                        #expect(try await send(.GET, base + "/job/\(after)").1.contains(#""state":"waiting""#))
                        (status, body) = try await sendDone(base, id, from: winner)
                        #expect(status == .ok, "\(body)")
                        view = try JSONDecoder().decode(
                            JobView.self, from: Data(try await send(.GET, base + "/job/\(id)").1.utf8))
                        #expect(view.state == .done)
                        #expect(try await send(.GET, base + "/job/\(after)").1.contains(#""state":"waiting""#) == false)
                        let ledger = try await ledgerView(base, id)
                        #expect(ledger.accepted?.executor == winner.id)
                        #expect(ledger.rejected.map(\.entry.executor) == [loser.id])
                    }
                }
            }
        }
    }
}

/// Reports job `id` done as `executor` would (its dot in `X-UCP-Dot`).
func sendDone(_ base: String, _ id: UUID, from executor: FakeExecutor, seq: UInt64 = 9) async throws
    -> (HTTPResponseStatus, String)
{
    var request = HTTPClientRequest(url: base + "/job/done/\(id)")
    request.method = .PUT
    request.headers.add(name: "X-UCP-Clock", value: "{}")
    request.headers.add(name: "X-UCP-Dot", value: "\(executor.idText):\(seq)")
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
    return (response.status, String(buffer: try await response.body.collect(upTo: 1 << 20)))
}
