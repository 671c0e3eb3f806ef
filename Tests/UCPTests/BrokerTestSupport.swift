import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization
import Testing
import UCP

/// Runs a ``Broker`` with its API on a free loopback port and its background loop, over a fresh
/// folder (or `rootdir`), for the length of `body`.
func withBroker(
    rootdir: String? = nil, _ adjust: (inout BrokerConfiguration) -> Void = { _ in },
    _ body: @Sendable (Broker, Address) async throws -> Void
) async throws {
    try await withTemporaryFolder { folder in
        var configuration = BrokerConfiguration(
            host: "127.0.0.1", port: 0, rootdir: rootdir ?? folder + "/broker", tickInterval: .milliseconds(100),
            callTimeout: .seconds(5), logLevel: .warning)
        adjust(&configuration)
        let store = try BrokerStore(rootdir: configuration.rootdir)
        var logger = Logger(label: "broker-test")
        logger.logLevel = .warning
        let broker = try Broker(configuration: configuration, store: store, logger: logger)
        let router = Router(context: BrokerRequestContext.self)
        BrokerAPI(broker: broker).addRoutes(to: router)
        let loop = Task { await broker.runMaintenance() }
        do {
            try await withServer(router) { port in
                try await body(broker, Address(host: "127.0.0.1", port: port))
            }
        } catch {
            loop.cancel()
            _ = await loop.value
            await broker.shutdown()
            try store.close()
            throw error
        }
        loop.cancel()
        _ = await loop.value
        await broker.shutdown()
        try store.close()
    }
}

/// An executor stand-in: answers `GET /ping` with its instance name, records every
/// `PUT /submit/{job_id}` (answering `submitStatus`) and every `DELETE /job/{job_id}`.
final class FakeExecutor: Sendable {
    let id = UUID()
    let submitStatus: HTTPResponse.Status
    let submitDelay: Duration
    private let state = Mutex<(submitted: [(UUID, String)], deleted: [UUID])>(([], []))
    private let notices = Mutex<[EmergencyNotice]>([])

    /// An executor answering `submitStatus` to every submission, after `submitDelay` (a busy one).
    init(submitStatus: HTTPResponse.Status = .ok, submitDelay: Duration = .zero) {
        self.submitStatus = submitStatus
        self.submitDelay = submitDelay
    }

    var submitted: [(id: UUID, body: String)] { state.withLock { $0.submitted.map { (id: $0.0, body: $0.1) } } }
    var deleted: [UUID] { state.withLock { $0.deleted } }
    /// The emergency notices pushed to it (`PUT /emergency`), in arrival order.
    var emergencyNotices: [EmergencyNotice] { notices.withLock { $0 } }
    var idText: String { id.ucpString }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        let name = "_executor\(idText)._urban-cp._tcp.local."
        router.get("ping") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: "\"\(name)\"")))
        }
        router.put("submit/:job_id") { request, context in
            let id = UUID(uuidString: try context.parameters.require("job_id"))!
            let body = String(buffer: try await request.body.collect(upTo: 1 << 20))
            if self.submitDelay > .zero { try await Task.sleep(for: self.submitDelay) }
            if self.submitStatus == .ok { self.state.withLock { $0.submitted.append((id, body)) } }
            return Response(
                status: self.submitStatus, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: self.submitStatus == .ok ? "null" : #"{"detail":"busy"}"#)))
        }
        router.put("emergency") { request, _ in
            let body = try await request.body.collect(upTo: 1 << 20)
            let notice = try JSONDecoder().decode(EmergencyNotice.self, from: Data(buffer: body))
            self.notices.withLock { $0.append(notice) }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "null")))
        }
        router.delete("job/:job_id") { _, context in
            let id = UUID(uuidString: try context.parameters.require("job_id"))!
            self.state.withLock { $0.deleted.append(id) }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "null")))
        }
        return router
    }

    /// Runs `body` while this executor beats to the broker at `base` (`PUT
    /// /executors/heartbeat/{id}`) every `interval`, so that it stays active however long `body`
    /// takes on a loaded machine; the beats have stopped when this returns. A test about silence
    /// lets the executor be silent by leaving this block, and then waits for the broker to notice.
    func beating<T>(
        to base: String, every interval: Duration = .milliseconds(100), _ body: () async throws -> T
    ) async throws -> T {
        let url = base + "/executors/heartbeat/\(idText)"
        let beats = Task {
            while !Task.isCancelled {
                _ = try? await send(.PUT, url, json: heartbeatBody)
                try? await Task.sleep(for: interval)  // the executor's period, not synchronisation
            }
        }
        let result: Result<T, any Error>
        do { result = .success(try await body()) } catch { result = .failure(error) }
        beats.cancel()
        await beats.value
        return try result.get()
    }

    /// The registration body a UCP executor sends, exactly as its `Broker.register_executor`
    /// writes it.
    func registration(port: Int, hosts: [String] = ["127.0.0.1"], memory: Int = 8_000_000_000) -> String {
        let hostList = hosts.map { "\"\($0)\"" }.joined(separator: ", ")
        return """
            {"hosts": [\(hostList)], "executor": {"address":{"host":"","port":\(port)},"id":"\(idText)",\
            "cur_caps":{"memory":\(memory),"disk":50000000000,"cpu_load":10.0,"cpu_cores":2,"cpu_freq":2400.0,\
            "has_battery":false,"power":100.0},"last_update":1721900000.5}}
            """
    }
}

/// An executor's heartbeat body.
let heartbeatBody =
    #"{"memory":8000000000,"disk":50000000000,"cpu_load":10.0,"cpu_cores":2,"cpu_freq":2400.0,"has_battery":false,"power":100.0}"#

/// Sends `json` with `method` to `url` and returns the status and body text.
func send(_ method: HTTPMethod, _ url: String, json: String? = nil) async throws -> (HTTPResponseStatus, String) {
    let (status, body, _) = try await call(
        method, url, body: json.map { ByteBuffer(string: $0) }, contentType: json == nil ? nil : "application/json")
    return (status, String(buffer: body))
}

/// A UCP client's `submit_job` body: `{"job_info": ..., "wait_for": [...]}`.
func submission(memory: Int = 0, resultAddr: String = #"{"host":"","port":0}"#, waitFor: [UUID]? = nil) -> String {
    let info = """
        {"wasm_bin":"exec.wasm","wasm_bin_is_named":false,"stdin":["",""],"stdin_is_named":false,\
        "job_data":{},"named_data":{},"directories":[],"args":["a"],"env":{},"zip_results":{"/":"/"},\
        "named_results":{},"capabilities":{"memory":\(memory),"disk":0,"cpu_load":100.0,"cpu_cores":1,\
        "cpu_freq":0.0,"has_battery":true,"power":0.0},"result_addr":\(resultAddr),"delete":true}
        """
    guard let waitFor else { return #"{"job_info": \#(info)}"# }
    let list = waitFor.map { "\"\($0.ucpString)\"" }.joined(separator: ", ")
    return #"{"job_info": \#(info), "wait_for": [\#(list)]}"#
}

/// A value shared with `@Sendable` closures.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) {
        mutex = Mutex(value)
    }

    var value: Value {
        get { mutex.withLock { $0 } }
        set { mutex.withLock { $0 = newValue } }
    }

    func update(_ body: (inout Value) -> Void) {
        mutex.withLock { body(&$0) }
    }
}
