import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Testing
@testable import UCP

@Suite("Broker executor side over loopback", .timeLimit(.minutes(2)))
struct BrokerAPITests {
    @Test("registration pings the executor: a live one passes, a dead port is 400")
    func registration() async throws {
        let executor = FakeExecutor()
        try await withBroker { _, broker in
            try await withServer(executor.router()) { port in
                let base = "http://\(broker)"
                var (status, body) = try await send(
                    .PUT, base + "/executors/register", json: executor.registration(port: port))
                #expect(status == .ok, "\(body)")
                #expect(body == "null")
                (status, body) = try await send(.GET, base + "/executors/count")
                #expect(body == "1")

                let dead = FakeExecutor()
                (status, body) = try await send(.PUT, base + "/executors/register", json: dead.registration(port: 1))
                #expect(status == .badRequest)
                #expect(body.contains("Could not ping to verify"))
                // A live port answering for another id does not verify either.
                (status, body) = try await send(.PUT, base + "/executors/register", json: dead.registration(port: port))
                #expect(status == .badRequest)
                (status, body) = try await send(.GET, base + "/executors/count")
                #expect(body == "1")
            }
        }
    }

    @Test("heartbeats: unknown executor 404, malformed capabilities 422 naming the field")
    func heartbeat() async throws {
        let executor = FakeExecutor()
        try await withBroker { _, broker in
            try await withServer(executor.router()) { port in
                let base = "http://\(broker)"
                var (status, body) = try await send(.PUT, base + "/executors/heartbeat/\(UUID())", json: "{}")
                #expect(status == .notFound)
                #expect(body.contains("No such executor"))
                _ = try await send(.PUT, base + "/executors/register", json: executor.registration(port: port))
                (status, body) = try await send(
                    .PUT, base + "/executors/heartbeat/\(executor.idText)",
                    json:
                        #"{"memory": 1, "disk": 2, "cpu_load": 5.0, "cpu_cores": 4, "cpu_freq": 1.0, "has_battery": false, "power": 100.0}"#
                )
                #expect(status == .ok, "\(body)")
                (status, body) = try await send(
                    .PUT, base + "/executors/heartbeat/\(executor.idText)", json: #"{"memory": "lots"}"#)
                #expect(status == .unprocessableEntity)
                #expect(body.contains("memory"), "\(body)")
                (status, body) = try await send(.PUT, base + "/executors/heartbeat/\(executor.idText)", json: "{nope")
                #expect(status == .unprocessableEntity)
                (status, body) = try await send(.PUT, base + "/executors/heartbeat/not-a-uuid", json: "{}")
                #expect(status == .badRequest)
                (_, body) = try await send(.GET, base + "/metrics")
                #expect(body.contains(#"ucp_heartbeats_total{role="executor"} 1"#), "\(body)")
            }
        }
    }

    @Test("a UCP client's submission goes to a capable executor; done and GET /job show the stamps")
    func submit() async throws {
        let executor = FakeExecutor()
        try await withBroker { brokerObject, broker in
            try await withServer(executor.router()) { port in
                let base = "http://\(broker)"
                _ = try await send(.PUT, base + "/executors/register", json: executor.registration(port: port))
                let id = UUID()
                var (status, body) = try await send(.PUT, base + "/job/submit/\(id)", json: submission())
                #expect(status == .ok, "\(body)")
                #expect(body == "\"\(id.ucpString)\"")
                #expect(executor.submitted.map(\.id) == [id])
                #expect(executor.submitted.first?.body.contains(#""wasm_bin":"exec.wasm""#) == true)
                (status, body) = try await send(.GET, base + "/job/\(id)")
                let view = try JSONDecoder().decode(JobView.self, from: Data(body.utf8))
                #expect(view.state == .assigned)
                #expect(view.executor == executor.idText)
                let assigned = try #require(view.assigned)
                #expect(view.submitted.compare(assigned) == .before)

                (status, body) = try await send(.PUT, base + "/job/done/\(id)")
                #expect(status == .ok)
                (status, body) = try await send(.GET, base + "/job/\(id)")
                let done = try JSONDecoder().decode(JobView.self, from: Data(body.utf8))
                #expect(done.state == .done)
                #expect(assigned.compare(try #require(done.done)) == .before)
                #expect(try brokerObject.store.events(of: id).map(\.kind) == [.submitted, .assigned, .done])

                (status, body) = try await send(.PUT, base + "/job/done/\(UUID())")
                #expect(status == .notFound)
                (status, body) = try await send(.GET, base + "/job/\(UUID())")
                #expect(status == .notFound)
                (status, body) = try await send(.PUT, base + "/job/submit/\(id)", json: submission())
                #expect(status == .conflict)
            }
        }
    }

    @Test("503 when no executor is capable; an executor answering 503 is skipped for another")
    func capability() async throws {
        let busy = FakeExecutor(submitStatus: .serviceUnavailable)
        let small = FakeExecutor()
        try await withBroker { _, broker in
            try await withServer(busy.router()) { busyPort in
                try await withServer(small.router()) { smallPort in
                    let base = "http://\(broker)"
                    var (status, body) = try await send(.PUT, base + "/job/submit/\(UUID())", json: submission())
                    #expect(status == .serviceUnavailable)
                    #expect(body.contains("No capable Executor"))
                    _ = try await send(.PUT, base + "/executors/register", json: busy.registration(port: busyPort))
                    _ = try await send(
                        .PUT, base + "/executors/register", json: small.registration(port: smallPort, memory: 1000))
                    let big = UUID()
                    (status, body) = try await send(.PUT, base + "/job/submit/\(big)", json: submission(memory: 5000))
                    #expect(status == .serviceUnavailable)
                    #expect(body.contains("Failed to submit Job"), "\(body)")
                    (status, _) = try await send(.GET, base + "/job/\(big)")
                    #expect(status == .notFound, "a refused job is forgotten, as UCP does")
                    for _ in 0..<5 {
                        let id = UUID()
                        (status, body) = try await send(.PUT, base + "/job/submit/\(id)", json: submission(memory: 10))
                        #expect(status == .ok, "\(body)")
                    }
                    #expect(small.submitted.count == 5)
                }
            }
        }
    }

    @Test("wait_for releases a job only after the jobs it names are done; unknown ones are 404; delete")
    func waitFor() async throws {
        let executor = FakeExecutor()
        try await withBroker { _, broker in
            try await withServer(executor.router()) { port in
                let base = "http://\(broker)"
                var (status, body) = try await send(
                    .PUT, base + "/job/submit/\(UUID())", json: submission(waitFor: [UUID()]))
                #expect(status == .notFound)
                #expect(body.contains("wait_for"))
                _ = try await send(.PUT, base + "/executors/register", json: executor.registration(port: port))
                let first = UUID()
                let second = UUID()
                (status, body) = try await send(.PUT, base + "/job/submit/\(first)", json: submission(waitFor: []))
                #expect(status == .ok, "\(body)")
                (status, body) = try await send(
                    .PUT, base + "/job/submit/\(second)", json: submission(waitFor: [first]))
                #expect(status == .ok, "\(body)")
                try await eventually("the first job is dispatched") { executor.submitted.map(\.id) == [first] }
                (_, body) = try await send(.GET, base + "/job/\(second)")
                #expect(body.contains(#""state":"waiting""#), "\(body)")
                _ = try await send(.PUT, base + "/job/done/\(first)")
                try await eventually("the second job is dispatched") {
                    executor.submitted.map(\.id) == [first, second]
                }

                (status, _) = try await send(.DELETE, base + "/job/\(second)")
                #expect(status == .ok)
                (_, body) = try await send(.GET, base + "/job/\(second)")
                #expect(body.contains(#""state":"deleted""#))
                #expect(executor.deleted == [second])
                (status, _) = try await send(.DELETE, base + "/job/\(UUID())")
                #expect(status == .notFound)
            }
        }
    }

    @Test("a job that no executor can take waits in the queue without holding up the others")
    func noStall() async throws {
        let executor = FakeExecutor()
        try await withBroker { _, broker in
            try await withServer(executor.router()) { port in
                let base = "http://\(broker)"
                _ = try await send(
                    .PUT, base + "/executors/register", json: executor.registration(port: port, memory: 100))
                let stuck = UUID()
                _ = try await send(
                    .PUT, base + "/job/submit/\(stuck)", json: submission(memory: 1_000_000, waitFor: []))
                let others = (0..<3).map { _ in UUID() }
                for id in others {
                    _ = try await send(.PUT, base + "/job/submit/\(id)", json: submission(waitFor: []))
                }
                try await eventually("the capable jobs are dispatched") {
                    Set(executor.submitted.map(\.id)) == Set(others)
                }
                let (_, body) = try await send(.GET, base + "/job/\(stuck)")
                #expect(body.contains(#""state":"queued""#))
            }
        }
    }

    @Test("an executor that stops beating is pruned and its job requeued")
    func pruning() async throws {
        let executor = FakeExecutor()
        try await withBroker({
            // The executor beats every 100 ms while it must be active; suspicion (at 1.6 s) and
            // failure (3 s) leave room for beats delayed by a loaded machine.
            $0.heartbeatInterval = .milliseconds(200); $0.failAfter = .seconds(3)
        }) { _, broker in
            let base = "http://\(broker)"
            let id = UUID()
            // It beats until it holds the job, then falls silent.
            try await withServer(executor.router()) { port in
                try await executor.beating(to: base) {
                    _ = try await send(.PUT, base + "/executors/register", json: executor.registration(port: port))
                    let (status, body) = try await send(.PUT, base + "/job/submit/\(id)", json: submission())
                    #expect(status == .ok, "\(body)")
                    try await eventually("the job goes to the executor") { executor.submitted.map(\.id) == [id] }
                }
            }
            try await eventually("the silent executor is pruned") {
                try await send(.GET, base + "/executors/count").1 == "0"
            }
            try await eventually("its job is back in the queue") {
                try await send(.GET, base + "/job/\(id)").1.contains(#""state":"queued""#)
            }
            // The gauges follow on the background loop's next refresh, not with the store.
            try await eventually("the gauges show the pruning") {
                let (_, metrics) = try await send(.GET, base + "/metrics")
                return metrics.contains("ucp_executors 0") && metrics.contains(#"ucp_jobs{state="queued"} 1"#)
            }
        }
    }

    @Test("a broker restarted from its SQLite file knows its executors and jobs and resumes the queue")
    func restart() async throws {
        let executor = FakeExecutor()
        try await withTemporaryFolder { folder in
            try await withServer(executor.router()) { port in
                let configuration = BrokerConfiguration(
                    host: "127.0.0.1", port: 0, rootdir: folder + "/broker", tickInterval: .milliseconds(100),
                    logLevel: .warning)
                let done = UUID()
                let waiting = UUID()
                let firstClock = Locked(0)
                try await withBrokerNode(configuration) { base in
                    _ = try await send(.PUT, base + "/executors/register", json: executor.registration(port: port))
                    _ = try await send(.PUT, base + "/job/submit/\(done)", json: submission())
                    _ = try await send(.PUT, base + "/job/submit/\(waiting)", json: submission(waitFor: [done]))
                    let view = try JSONDecoder().decode(
                        ClockView.self, from: Data(try await send(.GET, base + "/clock").1.utf8))
                    firstClock.value = Int(view.stamp.clock[view.node] ?? 0)
                }
                try await withBrokerNode(configuration) { base in
                    #expect(try await send(.GET, base + "/executors/count").1 == "1")
                    #expect(try await send(.GET, base + "/job/\(done)").1.contains(#""state":"assigned""#))
                    #expect(try await send(.GET, base + "/job/\(waiting)").1.contains(#""state":"waiting""#))
                    let view = try JSONDecoder().decode(
                        ClockView.self, from: Data(try await send(.GET, base + "/clock").1.utf8))
                    #expect(
                        Int(view.stamp.clock[view.node] ?? 0) >= firstClock.value, "the clock starts where it stopped")
                    _ = try await send(.PUT, base + "/job/done/\(done)")
                    let job = try JSONDecoder().decode(
                        JobView.self, from: Data(try await send(.GET, base + "/job/\(done)").1.utf8))
                    let stamp = try #require(job.done)
                    #expect(Int(stamp.clock[view.node] ?? 0) > firstClock.value, "events after a restart count on")
                    #expect(job.submitted.compare(stamp) == .before)
                    try await eventually("the released job is dispatched") {
                        executor.submitted.map(\.id) == [done, waiting]
                    }
                }
            }
        }
    }
}

/// Runs a ``BrokerNode`` for the length of `body`, which gets its base URL.
func withBrokerNode(_ configuration: BrokerConfiguration, _ body: @Sendable (String) async throws -> Void) async throws
{
    var logger = Logger(label: "broker-node-test")
    logger.logLevel = .warning
    try await withNode("broker") {
        BrokerNode(configuration: configuration, logger: logger, onListening: $0)
    } _: { node in
        try await body("http://127.0.0.1:\(node.port)")
    }
}
