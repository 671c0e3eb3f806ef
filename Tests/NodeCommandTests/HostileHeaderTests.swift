import Causal
import Foundation
import Testing
import AsyncHTTPClient
import NIOCore
import NIOHTTP1

@testable import UCP
@testable import ucp

/// Single requests that used to stop a `ucp broker`: a clock claiming the broker's own entry at
/// its largest value (its next tick overflowed), and a proof dated at the smallest Int64 (the
/// skew check overflowed). Both are answered, and the broker carries on.
@Suite("Hostile headers: one request cannot stop a broker", .serialized, .timeLimit(.minutes(3)))
struct HostileHeaderTests {
    /// Sends `method path` with `headers` and returns the status.
    static func status(
        _ http: NodeHTTPClient, _ method: HTTPMethod, _ broker: Address, _ path: String, headers: [(String, String)],
        body: String? = nil
    ) async throws -> Int {
        var request = HTTPClientRequest(url: NodeHTTPClient.url(broker, path))
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await http.http.execute(request, timeout: .seconds(30))
        _ = try await response.body.collect(upTo: 1 << 20)
        return Int(response.status.code)
    }

    @Test("a clock claiming the broker's own entry at 2^64-1 and an unknown id, on a GET and a PUT, changes neither")
    func forgedOwnEntry() async throws {
        try await ProcessNodes.withNodes("forged-clock") { nodes in
            let broker = try nodes.broker()
            let http = NodeHTTPClient(clock: NodeClock(nodeID: "stranger", role: .dotted))
            defer { Task { await http.shutdown() } }
            let id = try await http.decode(ClockView.self, .GET, broker, "/clock").node
            let forged = [(ClockStamp.clockHeader, #"{"\#(id)": 18446744073709551615, "other": 18446744073709551615}"#)]
            #expect(try await Self.status(http, .GET, broker, "/ping", headers: forged) == 200)
            let job = UUID()
            let submitted = try await Self.status(
                http, .PUT, broker, "/job/submit/\(job.ucpString)", headers: forged,
                body: #"{"job_info": {"wasm_bin": "x.wasm"}, "wait_for": []}"#)
            #expect(submitted == 200)
            // Events after the forged requests: the broker ticks its own entry without trapping.
            for _ in 0..<3 { _ = try await http.call(.GET, broker, "/job/\(job.ucpString)") }
            let view = try await http.decode(ClockView.self, .GET, broker, "/clock")
            let own = try #require(view.stamp.clock[id])
            #expect(own < 1_000_000, "the broker's own entry is \(own)")
            // A stranger cannot add ids to the broker's clock: "other" is no broker it knows.
            #expect(view.stamp.clock.keys.sorted() == [id], "\(view.stamp)")
            #expect(nodes.isRunning("broker"))
        }
    }

    @Test("a proof dated at Int64.min or Int64.max is refused with 401 and the keyed broker carries on")
    func extremeProofTime() async throws {
        try await ProcessNodes.withNodes("proof-time") { nodes in
            let keyFile = nodes.folder + "/cluster.key"
            try ClusterKey.random().write(toFile: keyFile)
            let broker = try nodes.broker(["--key-file", keyFile])
            let http = NodeHTTPClient(clock: NodeClock(nodeID: "stranger", role: .dotted))
            defer { Task { await http.shutdown() } }
            let tag = String(repeating: "ab", count: ClusterKey.authenticatorByteCount)
            for time in ["-9223372036854775808", "9223372036854775807", "-1", "99999999999999999999"] {
                let status = try await Self.status(
                    http, .PUT, broker, "/job/done/\(UUID().ucpString)",
                    headers: [(ClusterAuth.header, "\(time):\(tag)"), (ClockStamp.clockHeader, "{}")])
                #expect(status == 401, "proof time \(time)")
                #expect(nodes.isRunning("broker"), "proof time \(time)")
            }
            _ = try await http.call(.GET, broker, "/ping")
        }
    }
}
