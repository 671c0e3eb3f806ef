import Causal
import CoreMetrics
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization

/// A job's result did not arrive in time.
public struct ResultTimeout: Error, Hashable, CustomStringConvertible {
    /// The job.
    public var jobID: UUID
    /// How long was waited.
    public var timeout: Duration

    /// One line naming the job.
    public var description: String { "no result for job \(jobID.ucpString) within \(timeout)" }
}

/// The client's result endpoint, as UCP's client serves it: `PUT /result/{job_id}` with the
/// multipart field `data` is saved as `<folder>/<job_id>.zip`.
///
/// Unlike UCP's client, which answers 404 to a result it did not expect, every result is kept:
/// a result may arrive before the client asked for it and must not be lost. A result that
/// arrives again after its first copy is answered 200 and dropped (counted in
/// `ucp_client_duplicate_results_total`): the broker sends a result twice only when it stopped
/// between delivering it and recording the delivery. Waiters are resumed
/// the moment their result is stored (no polling). Also serves `/ping`, `/clock` and `/metrics`
/// (``NodeRoutes``). Run it in a `ServiceGroup`; thread-safe.
public final class ResultListener: Service, Sendable {
    /// Where results are saved.
    public let folder: String
    /// The host it listens on.
    public let host: String
    /// The port it was asked to listen on (0: any free one; see ``port``).
    public let requestedPort: Int
    /// The listener's clock.
    public let clock: NodeClock
    /// Its metrics.
    public let metrics: NodeMetrics
    /// With a cluster key, `PUT /result` must carry a broker's proof of membership (401 otherwise).
    public let auth: ClusterAuth?
    private let logger: Logger
    private let onListening: @Sendable (Int) async -> Void
    private let state = Mutex(Waiting())
    /// Results that arrived again after their first copy, dropped: `ucp_client_duplicate_results_total`.
    let duplicates: CoreMetrics.Counter

    private struct Waiting {
        var arrived: [UUID: String] = [:]
        var waiters: [UUID: [Int: CheckedContinuation<String, any Error>]] = [:]
        var cancelled: Set<Int> = []
        var nextToken = 0
        var port: Int?
        var duplicates = 0
    }

    /// A listener saving results into `folder` (created if missing), on `host`:`port` (UCP's
    /// client uses 8004); `onListening` is told the port once it listens. With `auth` (the
    /// cluster's key), only results a member sends with its proof are taken.
    ///
    /// - Throws: ``UnsafePath`` when the folder cannot be made.
    public init(
        folder: String, host: String = "127.0.0.1", port: Int = 8004, clock: NodeClock? = nil,
        auth: ClusterAuth? = nil, logger: Logger = Logger(label: "ucp.results"),
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) throws {
        self.folder = try FileRoot(folder).path
        self.host = host
        self.requestedPort = port
        self.clock = clock ?? NodeClock(nodeID: "client-" + UUID().ucpString, role: .dotted)
        let metrics = NodeMetrics()
        self.metrics = metrics
        self.duplicates = metrics.counter("ucp_client_duplicate_results_total")
        self.auth = auth
        self.logger = logger
        self.onListening = onListening
    }

    /// How many results arrived again after their first copy and were dropped.
    public var duplicatesDropped: Int { state.withLock { $0.duplicates } }

    /// The port it listens on, once it does.
    public var port: Int? { state.withLock { $0.port } }

    /// The address to put in a job's `result_addr`, once it listens.
    public var address: Address? { port.map { Address(host: host, port: $0) } }

    /// The path a result of `jobID` is saved at.
    public func path(for jobID: UUID) -> String { folder + "/" + jobID.ucpString + ".zip" }

    /// Serves until graceful shutdown or cancellation.
    public func run() async throws {
        let router = Router()
        NodeRoutes(
            clock: clock, metrics: metrics, instanceName: NodeRoutes.instanceName(role: "client", id: clock.nodeID),
            auth: auth
        ).install(on: router)
        let listener = self
        router.put("result/:job_id") { request, context in
            let text = try context.parameters.require("job_id")
            guard let jobID = UUID(uuidString: text) else {
                throw APIError(.unprocessableContent, "job_id \"\(text.prefix(80))\" is not a UUID")
            }
            if listener.hasArrived(jobID) {
                // Sent again (its broker restarted before it recorded the delivery, say): the
                // result kept is the one delivered; the server drains this body unread.
                listener.state.withLock { $0.duplicates += 1 }
                listener.duplicates.increment()
                context.logger.info("dropped a second copy of the result of job \(jobID.ucpString)")
                return JSONResponse.null()
            }
            try await MultipartReceiver.receive(request, into: listener.path(for: jobID))
            listener.arrived(jobID)
            context.logger.info("received the result of job \(jobID.ucpString)")
            return JSONResponse.null()
        }
        let onListening = self.onListening
        let app = NodeServer.application(router: router, host: host, port: requestedPort, logger: logger) { port in
            listener.state.withLock { $0.port = port }
            await onListening(port)
        }
        try await app.run()
    }

    /// The path of `jobID`'s result zip, waiting up to `timeout` for it to arrive (at once when
    /// it already has).
    ///
    /// - Throws: ``ResultTimeout``; `CancellationError` when the calling task is cancelled.
    public func result(for jobID: UUID, timeout: Duration) async throws -> String {
        try await withThrowingTaskGroup(of: String.self) { group in
            group.addTask { try await self.arrival(of: jobID) }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw ResultTimeout(jobID: jobID, timeout: timeout)
            }
            defer { group.cancelAll() }
            guard let path = try await group.next() else { throw CancellationError() }
            return path
        }
    }

    /// True once a result of `jobID` was stored.
    func hasArrived(_ jobID: UUID) -> Bool { state.withLock { $0.arrived[jobID] != nil } }

    private func arrived(_ jobID: UUID) {
        let path = path(for: jobID)
        let waiters = state.withLock { s in
            s.arrived[jobID] = path
            return s.waiters.removeValue(forKey: jobID) ?? [:]
        }
        for waiter in waiters.values { waiter.resume(returning: path) }
    }

    private func arrival(of jobID: UUID) async throws -> String {
        let token = state.withLock { s in
            s.nextToken += 1
            return s.nextToken
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<String, any Error>) in
                enum Now { case arrived(String), cancelled, wait }
                let now: Now = state.withLock { s in
                    if let path = s.arrived[jobID] { return .arrived(path) }
                    if s.cancelled.remove(token) != nil { return .cancelled }
                    s.waiters[jobID, default: [:]][token] = continuation
                    return .wait
                }
                switch now {
                case .arrived(let path): continuation.resume(returning: path)
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .wait: break
                }
            }
        } onCancel: {
            let waiter: CheckedContinuation<String, any Error>? = state.withLock { s in
                if let waiter = s.waiters[jobID]?.removeValue(forKey: token) { return waiter }
                s.cancelled.insert(token)
                return nil
            }
            waiter?.resume(throwing: CancellationError())
        }
    }
}
