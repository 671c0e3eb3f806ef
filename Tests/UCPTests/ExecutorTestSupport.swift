import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import UCP

/// A broker peer for executor and client tests: a Hummingbird router that records what
/// executors and clients send it and serves data from a dictionary. Not a broker: it schedules
/// nothing and forwards nothing.
final class TestBroker: Sendable {
    struct DataRequest: Hashable, Sendable {
        var name: String
        var jobID: String?
    }

    struct State: Sendable {
        var registrations: [RegistrationBody] = []
        var registeredClocks: [String] = []
        var known: Set<UUID> = []
        var heartbeats: [UUID] = []
        var data: [String: [UInt8]] = [:]
        var dataRequests: [DataRequest] = []
        var results: [String: [UInt8]] = [:]
        var done: [String] = []
        var submits: [String: [UInt8]] = [:]
        var deletes: [String] = []
        var failRegistrations = 0
        /// Answer result uploads (`PUT /result/{id}`, `PUT /data/<id>/result`) 409 as the
        /// broker's ledger does when another executor's result came first.
        var refuseResults = false
        /// The result uploads answered 409, by job id.
        var refused: [String] = []
    }

    /// The executor named as the accepted one in 409 answers.
    static let acceptedExecutor = "0000000a-0000-0000-0000-00000000000b"

    /// The 409 the broker's ledger answers, naming ``acceptedExecutor``.
    static func ledgerConflict() -> Response {
        let body = #"{"detail":"a result from another executor was accepted first","accepted_executor":"\#(acceptedExecutor)","accepted_clock":{"test-broker":7},"accepted_dot":"\#(acceptedExecutor):3"}"#
        return Response(
            status: .conflict, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    /// The JSON null with 200, as UCP answers.
    static func null() -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: "null")))
    }

    let state = Mutex(State())
    let folder: String
    let routes = NodeRoutes(
        clock: NodeClock(nodeID: "test-broker", role: .member), metrics: NodeMetrics(),
        instanceName: NodeRoutes.instanceName(role: "broker", id: "test-broker"))

    init(folder: String) {
        self.folder = folder
    }

    subscript<T: Sendable>(_ path: KeyPath<State, T>) -> T { state.withLock { $0[keyPath: path] } }

    /// Forgets every registered executor (its next heartbeat is answered 404).
    func forgetExecutors() { state.withLock { $0.known.removeAll() } }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        routes.install(on: router)
        let broker = self
        router.put("executors/register") { request, _ in
            let body = try await request.body.collect(upTo: 1 << 20)
            let registration = try UCPJSON.decode(RegistrationBody.self, from: Data(body.readableBytesView))
            let refuse = broker.state.withLock { s in
                guard s.failRegistrations > 0 else { return false }
                s.failRegistrations -= 1
                return true
            }
            if refuse { throw APIError(.badRequest, "Could not ping to verify") }
            broker.state.withLock {
                $0.registrations.append(registration)
                $0.registeredClocks.append(request.headers[.ucpClock] ?? "")
                $0.known.insert(registration.executor.id)
            }
            return "null"
        }
        router.put("executors/heartbeat/:id") { request, context in
            let id = UUID(uuidString: try context.parameters.require("id"))
            let body = try await request.body.collect(upTo: 1 << 20)
            _ = try UCPJSON.decode(Capabilities.self, from: Data(body.readableBytesView))
            let known = broker.state.withLock { s in
                guard let id, s.known.contains(id) else { return false }
                s.heartbeats.append(id)
                return true
            }
            guard known else { throw APIError(.notFound, "No such executor") }
            return "null"
        }
        router.get("data/**") { request, _ in
            let name = try DatastoreAPI.percentDecoded(String(request.uri.path.dropFirst("/data/".count)))
            let jobID = request.uri.queryParameters["job_id"].map(String.init)
            let bytes = broker.state.withLock { s in
                s.dataRequests.append(DataRequest(name: name, jobID: jobID))
                return s.data[name]
            }
            guard let bytes else { throw APIError(.notFound, "Data location not known") }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        router.put("data/**") { request, _ in
            let name = try DatastoreAPI.percentDecoded(String(request.uri.path.dropFirst("/data/".count)))
            let bytes = try await broker.receive(request)
            let refused = broker.state.withLock { s in
                if s.refuseResults, name.hasSuffix("/result") {
                    s.refused.append(String(name.dropLast("/result".count)))
                    return true
                }
                s.data[name] = bytes
                return false
            }
            return refused ? TestBroker.ledgerConflict() : TestBroker.null()
        }
        router.get("list/data/**") { request, _ in
            let prefix = try DatastoreAPI.percentDecoded(String(request.uri.path.dropFirst("/list/data/".count)))
            let names = broker.state.withLock { $0.data.keys.filter { $0.hasPrefix(prefix) }.sorted() }
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: try UCPJSON.encode(names))))
        }
        router.put("result/:job_id") { request, context in
            let jobID = try context.parameters.require("job_id")
            let bytes = try await broker.receive(request)
            let refused = broker.state.withLock { s in
                if s.refuseResults {
                    s.refused.append(jobID)
                    return true
                }
                s.results[jobID] = bytes
                return false
            }
            return refused ? TestBroker.ledgerConflict() : TestBroker.null()
        }
        router.put("job/done/:job_id") { _, context in
            let jobID = try context.parameters.require("job_id")
            broker.state.withLock { $0.done.append(jobID) }
            return "null"
        }
        router.put("job/submit/:job_id") { request, context in
            let jobID = try context.parameters.require("job_id")
            let body = try await request.body.collect(upTo: 1 << 20)
            broker.state.withLock { $0.submits[jobID] = Array(buffer: body) }
            return "\"\(jobID)\""
        }
        router.delete("job/:job_id") { _, context in
            let jobID = try context.parameters.require("job_id")
            broker.state.withLock { $0.deletes.append(jobID) }
            return "null"
        }
        return router
    }

    private func receive(_ request: Request) async throws -> [UInt8] {
        let path = folder + "/upload-" + UUID().uuidString
        try await MultipartReceiver.receive(request, into: path)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }
}

/// Runs `body` with a test broker listening on loopback.
func withTestBroker(_ body: @Sendable (TestBroker, Address) async throws -> Void) async throws {
    try await withTemporaryFolder { folder in
        let broker = TestBroker(folder: folder)
        try await withServer(broker.router()) { port in
            try await body(broker, Address(host: "127.0.0.1", port: port))
        }
    }
}

/// The fuel rate measured once for the suite.
func suiteFuelRate() throws -> FuelRate {
    try withTemporaryFolder { folder in
        let runner = try makeRunner(root: folder)
        defer { runner.shutdown() }
        return runner.fuelRate
    }
}

/// An executor configuration for tests: loopback, port 0, 2 workers, short retries.
func testExecutorConfiguration(broker: Address, rootdir: String) throws -> ExecutorConfiguration {
    ExecutorConfiguration(
        host: "127.0.0.1", port: 0, rootdir: rootdir, broker: broker, workers: 2, timeLimit: .seconds(10),
        heartbeatInterval: .seconds(60), retryWindow: .seconds(3), maxRetryDelay: .milliseconds(200),
        shutdownGrace: .seconds(30), fuelRate: try suiteFuelRate())
}

/// Runs an executor node with `configuration` for the length of `body`, which gets the node, its
/// address and the running node (to stop it early); stops it gracefully afterwards and waits.
func withExecutorNode(
    _ configuration: ExecutorConfiguration,
    _ body: @Sendable (ExecutorNode, Address, RunningNode) async throws -> Void
) async throws {
    var logger = Logger(label: "executor-test")
    logger.logLevel = .warning
    var made: ExecutorNode?
    try await withNode("executor") { onListening in
        let node = ExecutorNode(configuration: configuration, logger: logger, onListening: onListening)
        made = node
        return node
    } _: { running in
        try await body(made!, running.address, running)
    }
}

/// Submits `info` as job `jobID` to the executor at `executor` (`PUT /submit/{job_id}`).
@discardableResult
func submitToExecutor(_ executor: Address, _ jobID: UUID, _ info: JobInfo) async throws -> (Int, String) {
    let (status, body, _) = try await call(
        .PUT, "http://\(executor)/submit/\(jobID.ucpString)",
        body: ByteBuffer(bytes: try UCPJSON.encode(info)), contentType: "application/json")
    return (Int(status.code), String(buffer: body))
}

/// A job that runs `job`, its binary stored at the test broker as `<job_id>/exec.wasm`.
func shippedJobInfo(_ job: ShippedJob, _ jobID: UUID, broker: TestBroker, args: [String] = []) throws -> JobInfo {
    let name = jobID.ucpString + "/exec.wasm"
    let wasm = try job.wasm()
    broker.state.withLock { $0.data[name] = wasm }
    return JobInfo(wasmBin: DataReference(name: name), args: args, resultAddr: Address(host: "127.0.0.1", port: 1))
}
