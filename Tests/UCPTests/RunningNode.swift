import Foundation
import Logging
import ServiceLifecycle
import UCP

/// A node service running in a service group of its own on a free loopback port, started and
/// stopped independently of the other nodes of a test.
final class RunningNode: Sendable {
    /// The port it listens on.
    let port: Int
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    /// Its address.
    var address: Address { Address(host: "127.0.0.1", port: port) }

    /// Starts the service `make` builds (it is handed the `onListening` callback) and waits until
    /// it listens.
    static func start(
        _ name: String, _ make: (_ onListening: @escaping @Sendable (Int) async -> Void) throws -> any Service
    ) async throws -> RunningNode {
        let (ports, sink) = AsyncStream.makeStream(of: Int.self)
        let service = try make { port in
            sink.yield(port)
            sink.finish()
        }
        var logger = Logger(label: name)
        logger.logLevel = .warning
        let group = ServiceGroup(services: [service], gracefulShutdownSignals: [], logger: logger)
        // A service that fails before it listens (a port still taken, say) ends the group: that
        // ends the wait too, instead of leaving the test to its time limit.
        let task = Task {
            defer { sink.finish() }
            try await group.run()
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else {
            await group.triggerGracefulShutdown()
            let failure = await task.result
            throw APIError(.internalServerError, "\(name) did not start: \(failure)")
        }
        return RunningNode(port: port, group: group, task: task)
    }

    private init(port: Int, group: ServiceGroup, task: Task<Void, any Error>) {
        self.port = port
        self.group = group
        self.task = task
    }

    /// Asks it to stop gracefully, without waiting.
    func beginStopping() async {
        await group.triggerGracefulShutdown()
    }

    /// Stops it gracefully and waits until it has.
    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}

/// Runs the node `make` builds for the length of `body`, then stops it gracefully and waits until
/// it has, whether `body` returns or throws.
func withNode<T>(
    _ name: String, _ make: (_ onListening: @escaping @Sendable (Int) async -> Void) throws -> any Service,
    _ body: (RunningNode) async throws -> T
) async throws -> T {
    let node = try await RunningNode.start(name, make)
    do {
        let result = try await body(node)
        await node.stop()
        return result
    } catch {
        await node.stop()
        throw error
    }
}
