import ArgumentParser
import Causal
import Foundation
import Logging
import ServiceLifecycle
import UCP

/// Options every serving node takes: where it listens, how much it logs, the cluster key.
struct ServeOptions: ParsableArguments {
    @Option(
        name: .customLong("host"),
        help: "Address to listen on; repeat to announce more addresses (the first is bound).")
    var hosts: [String] = ["127.0.0.1"]
    @Option(help: "TCP port; 0 picks a free one (printed on standard output).") var port: Int
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel: String = "info"
    @Option(help: "Cluster key file (64 hex digits); state-changing calls between nodes must then prove membership.")
    var keyFile: String?

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        guard !hosts.isEmpty, hosts.allSatisfy({ !$0.isEmpty }) else { throw ValidationError("--host may not be empty") }
    }

    /// The address bound.
    var host: String { hosts[0] }

    /// The cluster key's proofs, when a key file is given.
    func auth() throws -> ClusterAuth? {
        guard let keyFile else { return nil }
        do {
            return ClusterAuth(key: try ClusterKey(contentsOfFile: keyFile))
        } catch {
            throw ValidationError("\(error)")
        }
    }

    /// A logger labelled `label` at the chosen level, writing to standard error.
    func logger(_ label: String) -> Logger {
        Self.bootstrap
        var logger = Logger(label: label)
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        return logger
    }

    private static let bootstrap: Void = LoggingSystem.bootstrap(StreamLogHandler.standardError)
}

/// Parses `HOST:PORT` (or `[IPv6]:PORT`) into an ``Address``.
func parseAddress(_ text: String, option: String) throws -> Address {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
        (1...65535).contains(port)
    else { throw ValidationError("\(option) must be HOST:PORT, not \(text)") }
    var host = String(text[..<colon])
    if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    guard !host.isEmpty else { throw ValidationError("\(option) must be HOST:PORT, not \(text)") }
    return Address(host: host, port: port)
}

/// Runs `services` until SIGINT or SIGTERM, then stops them gracefully.
func runUntilSignalled(_ services: [any Service], logger: Logger) async throws {
    // A peer that goes away mid-write must cost an error code, not the process.
    signal(SIGPIPE, SIG_IGN)
    let group = ServiceGroup(
        configuration: .init(
            services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
    try await group.run()
}

/// Prints the line the demo and scripts wait for, and flushes it.
func announceListening(role: String, host: String, port: Int) {
    print("ucp \(role) listening on \(host):\(port)")
    fflush(nil)
}
