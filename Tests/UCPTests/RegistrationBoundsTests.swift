import Foundation
import Testing
import UCP

/// One registration body cannot make the broker ping without bound: the hosts it lists, their
/// length and the port are checked before any ping.
@Suite("Registration bounds: the ping fan-out of one request is bounded", .timeLimit(.minutes(1)))
struct RegistrationBoundsTests {
    @Test("100,000 hosts, an over-long host or a bad port: 400 at once, nothing pinged; 16 hosts still register")
    func bounded() async throws {
        let executor = FakeExecutor()
        try await withBroker { _, broker in
            try await withServer(executor.router()) { port in
                let base = "http://\(broker)"
                // Loopback addresses where nothing listens: the old broker pinged each in turn.
                let many = (0..<100_000).map { "127.0.\($0 / 250 % 250 + 1).\($0 % 250 + 2)" }
                let began = ContinuousClock.now
                var (status, body) = try await send(
                    .PUT, base + "/executors/register", json: executor.registration(port: port, hosts: many))
                #expect(status == .badRequest && body.contains("at most 16"), "\(body)")
                #expect(ContinuousClock.now - began < .seconds(10), "the hosts were pinged")

                let long = String(repeating: "h", count: 300)
                (status, body) = try await send(
                    .PUT, base + "/executors/register", json: executor.registration(port: port, hosts: [long]))
                #expect(status == .badRequest && body.contains("at most 253"), "\(body)")

                // A port past 65535 is refused where any address is read (422, the field named);
                // port 0 is a valid address but not a registration's (400).
                (status, body) = try await send(
                    .PUT, base + "/executors/register", json: executor.registration(port: 70_000))
                #expect(status == .unprocessableEntity && body.contains("65535"), "\(body)")
                (status, body) = try await send(
                    .PUT, base + "/executors/register", json: executor.registration(port: 0))
                #expect(status == .badRequest && body.contains("65535"), "\(body)")

                // Fifteen loopback addresses where nothing listens, then the executor's own.
                let hosts = (0..<15).map { "127.0.0.\($0 + 2)" } + ["127.0.0.1"]
                (status, body) = try await send(
                    .PUT, base + "/executors/register", json: executor.registration(port: port, hosts: hosts))
                #expect(status == .ok, "\(body)")
                (_, body) = try await send(.GET, base + "/executors/count")
                #expect(body == "1")
            }
        }
    }
}
