import Foundation
import Logging
import ServiceLifecycle

extension ResultListener {
    /// Runs a listener that saves results into `folder`, on a free port of `host`, for the length
    /// of `body`, which gets it and its address (the `result_addr` of the jobs); then shuts it
    /// down gracefully. With `auth`, only results a member sends with its proof are taken.
    ///
    /// - Throws: ``UnsafePath`` when the folder cannot be made; what the server or `body` threw.
    public static func serving<T: Sendable>(
        folder: String, host: String = "127.0.0.1", clock: NodeClock? = nil, auth: ClusterAuth? = nil, logger: Logger,
        _ body: (ResultListener, Address) async throws -> T
    ) async throws -> T {
        let (ports, sink) = AsyncStream.makeStream(of: Int.self)
        let listener = try ResultListener(folder: folder, host: host, port: 0, clock: clock, auth: auth, logger: logger) {
            port in
            sink.yield(port)
            sink.finish()
        }
        let services = ServiceGroup(services: [listener], gracefulShutdownSignals: [], logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await services.run() }
            let result: T
            do {
                var iterator = ports.makeAsyncIterator()
                guard let port = await iterator.next() else { throw ListenerDidNotStart() }
                result = try await body(listener, Address(host: host, port: port))
            } catch {
                await services.triggerGracefulShutdown()
                throw error
            }
            await services.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        }
    }
}

/// A result listener stopped before it listened.
public struct ListenerDidNotStart: Error, CustomStringConvertible {
    /// One line.
    public var description: String { "the result listener stopped before it listened" }
}
