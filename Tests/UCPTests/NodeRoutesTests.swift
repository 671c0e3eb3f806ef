import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Testing
import Causal
import UCP

/// Serves `router` on 127.0.0.1 with a free port for the length of `body`, which gets the port.
func withServer<Context: RequestContext>(
    _ router: Router<Context>, _ body: @Sendable (Int) async throws -> Void
) async throws where Context.Source == ApplicationRequestContextSource {
    var logger = Logger(label: "test-node")
    logger.logLevel = .warning
    try await withNode("test-node") {
        NodeServer.application(router: router, host: "127.0.0.1", port: 0, logger: logger, onServerRunning: $0)
    } _: { node in
        try await body(node.port)
    }
}

@Suite("Every node's clock, ping and metrics over loopback", .timeLimit(.minutes(2)))
struct NodeRoutesTests {
    /// A member `b1` that knows the brokers in `known`.
    static func broker(known: [String: UInt64] = [:]) -> (Router<BasicRequestContext>, NodeRoutes) {
        let routes = NodeRoutes(
            clock: NodeClock(nodeID: "b1", role: .member, clock: known), metrics: NodeMetrics(),
            instanceName: NodeRoutes.instanceName(role: "broker", id: "b1"))
        let router = Router()
        routes.install(on: router)
        router.put("event") { _, _ in
            let stamp = routes.clock.event()
            return stamp.clockHeaderValue
        }
        router.get("missing") { _, _ -> String in throw APIError(.notFound, "no such thing") }
        return (router, routes)
    }

    @Test("a request's clock is merged, and every answer, errors too, carries the node's clock")
    func merge() async throws {
        let (router, routes) = Self.broker(known: ["b2": 0])
        try await withServer(router) { port in
            let caller = NodeClock(nodeID: "x", role: .dotted, clock: ["b2": 9, "b3": 4])
            let client = NodeHTTPClient(clock: caller)
            defer { Task { await client.shutdown() } }
            let address = Address(host: "127.0.0.1", port: port)
            let answer = try await client.call(.PUT, address, "/event")
            // The broker merged b2 = 9 (a broker it knows; b3 it does not), ticked for the receipt
            // (1) and for the event (2). The caller learns b1 from the answer.
            #expect(answer.text == #"{"b1":2,"b2":9}"#)
            #expect(caller.now().clock == ["b1": 2, "b2": 9, "b3": 4])
            #expect(caller.now().dot == Dot(node: "x", seq: 1))

            let error = await #expect(throws: NodeCallError.self) {
                try await client.call(.GET, address, "/missing")
            }
            #expect(error?.status == 404)
            #expect(error?.detail == "no such thing")
            #expect(caller.now().clock["b1"] == 3)

            let view = try await client.decode(ClockView.self, .GET, address, "/clock")
            #expect(view.node == "b1")
            #expect(view.role == .member)
            #expect(view.stamp.clock == routes.clock.now().clock)
        }
    }

    @Test("a plain UCP request without a clock is served; ping answers the instance name")
    func plain() async throws {
        let (router, _) = Self.broker()
        try await withServer(router) { port in
            let (status, body, headers) = try await call(.GET, "http://127.0.0.1:\(port)/ping")
            #expect(status == .ok)
            #expect(String(buffer: body) == #""_brokerb1._urban-cp._tcp.local.""#)
            #expect(headers.first(name: "X-UCP-Clock") == #"{"b1":0}"#)
        }
    }

    @Test("a malformed clock or dot header is answered 400 before the route runs")
    func malformed() async throws {
        let (router, routes) = Self.broker()
        try await withServer(router) { port in
            for (name, value) in [("X-UCP-Clock", "[1]"), ("X-UCP-Clock", #"{"a":-1}"#), ("X-UCP-Dot", "x:1")] {
                var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/event")
                request.method = .PUT
                request.headers.add(name: name, value: value)
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
                let body = String(buffer: try await response.body.collect(upTo: 1 << 16))
                #expect(response.status == .badRequest, "\(name): \(value)")
                #expect(body.contains("X-UCP-"), "\(body)")
            }
            #expect(routes.clock.now().clock == ["b1": 0], "no route ran, no clock merged")
        }
    }

    @Test("metrics count answers by method and status in Prometheus' format")
    func metrics() async throws {
        let (router, _) = Self.broker()
        try await withServer(router) { port in
            _ = try await call(.GET, "http://127.0.0.1:\(port)/missing")
            _ = try await call(.PUT, "http://127.0.0.1:\(port)/event")
            let (status, body, headers) = try await call(.GET, "http://127.0.0.1:\(port)/metrics")
            let text = String(buffer: body)
            #expect(status == .ok)
            #expect(headers.first(name: "Content-Type")?.hasPrefix("text/plain") == true)
            #expect(text.contains(#"ucp_http_requests_total{method="GET",status="4xx"} 1"#), "\(text)")
            #expect(text.contains(#"ucp_http_requests_total{method="PUT",status="2xx"} 1"#), "\(text)")
            #expect(text.contains("ucp_http_request_errors_total 1"), "\(text)")
        }
    }
}

@Suite("Proof of membership on state-changing calls", .timeLimit(.minutes(2)))
struct ClusterAuthTests {
    static func node(key: ClusterKey) -> Router<BasicRequestContext> {
        let routes = NodeRoutes(
            clock: NodeClock(nodeID: "b1", role: .member), metrics: NodeMetrics(),
            instanceName: NodeRoutes.instanceName(role: "broker", id: "b1"), auth: ClusterAuth(key: key))
        let router = Router()
        routes.install(on: router)
        router.put("data/**") { request, _ in request.uri.path }
        return router
    }

    @Test("a member's client gets in, also with percent-encoded paths and queries")
    func member() async throws {
        let key = ClusterKey.random()
        try await withServer(Self.node(key: key)) { port in
            let client = NodeHTTPClient(clock: NodeClock(nodeID: "x", role: .dotted), auth: ClusterAuth(key: key))
            defer { Task { await client.shutdown() } }
            let answer = try await client.call(
                .PUT, Address(host: "127.0.0.1", port: port), "/data/a%20b/c?job_id=1")
            #expect(answer.text == "/data/a%20b/c")
        }
    }

    @Test("no proof, a wrong key, a malformed or stale proof: 401 with the reason; GET stays open")
    func strangers() async throws {
        let key = ClusterKey.random()
        try await withServer(Self.node(key: key)) { port in
            let address = Address(host: "127.0.0.1", port: port)
            let stranger = NodeHTTPClient(
                clock: NodeClock(nodeID: "x", role: .dotted), auth: ClusterAuth(key: ClusterKey.random()))
            let plain = NodeHTTPClient(clock: NodeClock(nodeID: "y", role: .dotted))
            defer {
                Task {
                    await stranger.shutdown()
                    await plain.shutdown()
                }
            }
            let wrong = await #expect(throws: NodeCallError.self) { try await stranger.call(.PUT, address, "/data/a") }
            #expect(wrong?.status == 401)
            #expect(wrong?.detail.contains("does not match") == true)
            let missing = await #expect(throws: NodeCallError.self) { try await plain.call(.PUT, address, "/data/a") }
            #expect(missing?.status == 401)
            #expect(missing?.detail.contains("missing") == true)
            #expect(try await plain.call(.GET, address, "/ping").status == 200)

            let auth = ClusterAuth(key: key)
            for proof in ["garbage", auth.proof(method: "PUT", path: "/data/a", clock: nil, dot: nil, at: 1000)] {
                var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/data/a")
                request.method = .PUT
                request.headers.add(name: "X-UCP-Auth", value: proof)
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
                #expect(response.status == .unauthorized)
            }
        }
    }

    @Test("authenticators verify only under their key and message")
    func authenticator() {
        let key = ClusterKey.random()
        let tag = key.authenticator(for: Array("message".utf8))
        #expect(tag.count == 32)
        #expect(key.verify(tag, for: Array("message".utf8)))
        #expect(!key.verify(tag, for: Array("messagE".utf8)))
        #expect(!ClusterKey.random().verify(tag, for: Array("message".utf8)))
        #expect(!key.verify(tag.dropLast(), for: Array("message".utf8)))
    }
}
