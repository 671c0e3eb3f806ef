import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization
import Testing
@testable import UCP

/// Runs a ``DatastoreNode`` registered with `broker` over `rootdir` for the length of `body`,
/// which gets the node's base URL.
func withDatastoreNode(
    broker: Address, rootdir: String, maxItemBytes: Int64 = 1 << 30, heartbeat: Duration = .milliseconds(200),
    _ body: @Sendable (String) async throws -> Void
) async throws {
    var logger = Logger(label: "datastore-node-test")
    logger.logLevel = .warning
    let configuration = DatastoreConfiguration(
        host: "127.0.0.1", port: 0, rootdir: rootdir, broker: broker, maxItemBytes: maxItemBytes,
        heartbeatInterval: heartbeat, maxRetryInterval: .milliseconds(200), logLevel: .warning)
    try await withNode("datastore") {
        DatastoreNode(configuration: configuration, logger: logger, onListening: $0)
    } _: { node in
        try await body("http://127.0.0.1:\(node.port)")
    }
}

@Suite("Datastore node and the broker's data side over loopback", .timeLimit(.minutes(2)))
struct DatastoreNodeTests {
    @Test("a datastore registers with the broker, keeps its id, and registers again when forgotten")
    func registration() async throws {
        try await withTemporaryFolder { folder in
            try await withBroker { broker, address in
                try await withDatastoreNode(broker: address, rootdir: folder + "/ds") { base in
                    try await eventually("the datastore registers") { try broker.store.datastores().count == 1 }
                    let id = try #require(try broker.store.datastores().first?.id)
                    let (_, ping) = try await send(.GET, base + "/ping")
                    #expect(ping.contains(id.ucpString))
                    try await eventually("the datastore beats") {
                        try await send(.GET, "http://\(address)/metrics").1.contains(
                            #"ucp_heartbeats_total{role="datastore"}"#)
                    }
                    try broker.store.failDatastores([id])
                    try await eventually("the forgotten datastore registers again") {
                        try broker.store.datastores().count == 1
                    }
                }
                let stored = try String(contentsOfFile: folder + "/ds/datastore.id", encoding: .utf8)
                #expect(UUID(uuidString: stored.trimmingCharacters(in: .whitespacesAndNewlines)) != nil)
            }
        }
    }

    @Test("data put, get, list and glob through the broker; unknown data is 404; no datastore is 503")
    func data() async throws {
        try await withTemporaryFolder { folder in
            try await withBroker { broker, address in
                let base = "http://\(address)"
                let (upload, contentType) = multipart(Array("hello".utf8))
                let (refused, reason, _) = try await call(
                    .PUT, base + "/data/a.txt", body: upload, contentType: contentType)
                #expect(refused == .serviceUnavailable)
                #expect(String(buffer: reason).contains("No capable datastore"))

                try await withDatastoreNode(broker: address, rootdir: folder + "/ds") { _ in
                    var status: HTTPResponseStatus
                    var body: ByteBuffer
                    try await eventually("the datastore registers") { try broker.store.datastores().count == 1 }
                    for name in ["set/one.txt", "set/two.txt", "other.txt"] {
                        let (part, type) = multipart(Array("content of \(name)".utf8))
                        (status, body, _) = try await call(.PUT, base + "/data/\(name)", body: part, contentType: type)
                        #expect(status == .ok, "\(String(buffer: body))")
                    }
                    (status, body, _) = try await call(.GET, base + "/data/set/two.txt")
                    #expect(status == .ok)
                    #expect(String(buffer: body) == "content of set/two.txt")
                    (status, body, _) = try await call(.GET, base + "/data/missing.txt")
                    #expect(status == .notFound)
                    (_, body, _) = try await call(.GET, base + "/list/data/set/*")
                    #expect(String(buffer: body) == #"["set/one.txt","set/two.txt"]"#)
                    (_, body, _) = try await call(.GET, base + "/list/data/set/")
                    #expect(String(buffer: body) == #"["set/one.txt","set/two.txt"]"#)
                    (_, body, _) = try await call(.GET, base + "/list/data/*")
                    #expect(String(buffer: body) == #"["other.txt","set/one.txt","set/two.txt"]"#)
                }
            }
        }
    }

    @Test("names with .. or absolute are 400 and nothing is written; oversized uploads are 413")
    func badNames() async throws {
        try await withTemporaryFolder { folder in
            try await withBroker({ $0.maxUploadBytes = 1000 }) { broker, address in
                let base = "http://\(address)"
                try await withDatastoreNode(broker: address, rootdir: folder + "/ds") { _ in
                    try await eventually("the datastore registers") { try broker.store.datastores().count == 1 }
                    let (part, type) = multipart(Array("x".utf8))
                    for name in ["a/../../escape.txt", "%2Fetc%2Fescape.txt", "a/%2E%2E/%2E%2E/escape.txt", "/abs.txt"]
                    {
                        let (status, body, _) = try await call(
                            .PUT, base + "/data/\(name)", body: part, contentType: type)
                        #expect(status == .badRequest, "\(name): \(String(buffer: body))")
                    }
                    let (big, bigType) = multipart(Array(repeating: 7, count: 5000))
                    let (status, _, _) = try await call(.PUT, base + "/data/big.bin", body: big, contentType: bigType)
                    #expect(status == .payloadTooLarge)
                    let (listed, body, _) = try await call(.GET, base + "/list/data/*")
                    #expect(listed == .ok)
                    #expect(String(buffer: body) == "[]")
                }
                let everything = FileManager.default.enumerator(atPath: folder)?.allObjects as? [String] ?? []
                #expect(
                    !everything.contains {
                        $0.hasSuffix("escape.txt") || $0.hasSuffix("abs.txt") || $0.hasSuffix("big.bin")
                    }, "\(everything)")
            }
        }
    }

    @Test("a result goes to the job's result_addr, or is stored as <job_id>/result; unknown job is 404")
    func results() async throws {
        let executor = FakeExecutor()
        let received = Locked<[String]>([])
        @Sendable func clientRouter() -> Router<BasicRequestContext> {
            let client = Router()
            client.put("result/:job_id") { request, context in
                let id = UUID(uuidString: try context.parameters.require("job_id"))!
                let text = String(buffer: try await request.body.collect(upTo: 1 << 20))
                received.update { $0.append("\(id.ucpString) \(text)") }
                return "null"
            }
            return client
        }
        try await withTemporaryFolder { folder in
            try await withBroker { broker, address in
                let base = "http://\(address)"
                let result = try resultZip("PK-result")
                let (zip, type) = multipart(result)
                let (unknown, _, _) = try await call(.PUT, base + "/result/\(UUID())", body: zip, contentType: type)
                #expect(unknown == .notFound)
                try await withServer(executor.router()) { executorPort in
                    try await withServer(clientRouter()) { clientPort in
                        try await withDatastoreNode(broker: address, rootdir: folder + "/ds") { _ in
                            try await eventually("the datastore registers") { try broker.store.datastores().count == 1 }
                            _ = try await send(
                                .PUT, base + "/executors/register", json: executor.registration(port: executorPort))
                            let forwarded = UUID()
                            let stored = UUID()
                            var (s, b) = try await send(
                                .PUT, base + "/job/submit/\(forwarded)",
                                json: submission(resultAddr: #"{"host":"127.0.0.1","port":\#(clientPort)}"#))
                            #expect(s == .ok, "\(b)")
                            (s, b) = try await send(.PUT, base + "/job/submit/\(stored)", json: submission())
                            #expect(s == .ok, "\(b)")

                            var (status, body, _) = try await call(
                                .PUT, base + "/result/\(forwarded)", body: zip, contentType: type)
                            #expect(status == .ok, "\(String(buffer: body))")
                            let got = received.value
                            #expect(got.count == 1)
                            #expect(got.first?.hasPrefix(forwarded.ucpString) == true)
                            #expect(got.first?.contains("PK-result") == true)

                            (status, body, _) = try await call(
                                .PUT, base + "/result/\(stored)", body: zip, contentType: type)
                            #expect(status == .ok, "\(String(buffer: body))")
                            let name = "\(stored.ucpString)/result"
                            (status, body, _) = try await call(.GET, base + "/data/\(name)?job_id=\(stored)")
                            #expect(status == .ok)
                            #expect(Array(buffer: body) == result)
                            #expect(try broker.store.events(of: stored).map(\.kind).contains(.resultStored))
                            #expect(try broker.store.events(of: forwarded).map(\.kind).contains(.resultForwarded))
                        }
                    }
                }
                // The client is gone now: the failure reaches the executor as an error.
                let gone = UUID()
                _ = try await send(
                    .PUT, base + "/job/submit/\(gone)",
                    json: submission(resultAddr: #"{"host":"127.0.0.1","port":1}"#, waitFor: []))
                let (status, body, _) = try await call(.PUT, base + "/result/\(gone)", body: zip, contentType: type)
                #expect(status == .badGateway, "\(String(buffer: body))")
            }
        }
    }
}
