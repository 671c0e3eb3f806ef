import Foundation
import Hummingbird
import Logging
import NetworkFaults
import Testing
import UCP

/// Every node's HTTP server closes a connection that sends nothing, or stops in the middle of
/// a request, after its idle timeout; other connections are served meanwhile.
@Suite("HTTP idle timeout: silent and stalled connections are closed", .timeLimit(.minutes(1)))
struct IdleTimeoutTests {
    @Test("silent, stalled inside a head, stalled inside a body: each closed; a fresh request served")
    func idleConnectionsClose() async throws {
        ignoreBrokenPipes()
        let router = Router()
        router.get("ping") { _, _ in "pong" }
        router.put("sink") { request, _ in
            _ = try await request.body.collect(upTo: 1 << 20)
            return "ok"
        }
        var quiet = Logger(label: "idle-test")
        quiet.logLevel = .warning
        try await withNode("idle") {
            NodeServer.application(
                router: router, host: "127.0.0.1", port: 0, logger: quiet, idleTimeout: .milliseconds(500),
                onServerRunning: $0)
        } _: { node in
            let silent = try Socket.connect(port: node.port)
            let head = try Socket.connect(port: node.port)
            Socket.send(head, Array("GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n".utf8))
            let body = try Socket.connect(port: node.port)
            Socket.send(body, Array("PUT /sink HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nabc".utf8))
            for (name, fd) in [("silent", silent), ("stalled head", head), ("stalled body", body)] {
                #expect(await Socket.closed(fd, timeout: .seconds(20)), "the \(name) connection is still open")
                close(fd)
            }
            let (status, text) = try await send(.GET, "http://127.0.0.1:\(node.port)/ping")
            #expect(status == .ok && text == "pong")
        }
    }
}
