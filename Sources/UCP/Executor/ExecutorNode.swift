import Causal
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization

/// The executor node: serves ``ExecutorAPI``, registers with the broker and keeps beating.
///
/// `run()` starts the job runner (twice ``ExecutorConfiguration/workers`` threads, so that a
/// CRITICAL job never waits for a preempted guest to stop), serves the API
/// (with ``NodeRoutes``: `/ping` answers `_executor<id>._urban-cp._tcp.local.`, `/clock`,
/// `/metrics`), registers with the broker (`PUT /executors/register`, retried with backoff
/// until the broker answers), then sends a heartbeat (`PUT /executors/heartbeat/{id}` with
/// ``Capabilities/current(diskPath:system:)``) every ``ExecutorConfiguration/heartbeatInterval``
/// and registers again when the broker answers 404 (it forgot the executor).
///
/// On graceful shutdown (SIGTERM or SIGINT through a `ServiceGroup`) the node stops beating,
/// answers new jobs 503, hands jobs that have not started back to the broker, lets running jobs
/// finish and deliver their results for up to ``ExecutorConfiguration/shutdownGrace``, then
/// stops its server and returns. The server keeps answering during that time.
public final class ExecutorNode: Service, Sendable {
    /// The node's settings.
    public let configuration: ExecutorConfiguration
    /// The node's metrics (served at `GET /metrics`).
    public let metrics: NodeMetrics
    private let logger: Logger
    private let onListening: @Sendable (Int) async -> Void
    private let identity: Result<UUID, ExecutorError>
    private let live = Mutex<Executor?>(nil)

    /// A node with `configuration`; `onListening` is told the port once the API listens. The
    /// executor id is settled here (the configured one, or the one kept in
    /// `rootdir/executor-id`); a failure to keep it is thrown by ``run()``.
    public init(
        configuration: ExecutorConfiguration, logger: Logger,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.logger = logger
        self.onListening = onListening
        self.metrics = NodeMetrics()
        self.identity = Result { () throws(ExecutorError) in try configuration.resolveExecutorID() }
    }

    /// The executor's id, or nil when it could not be read or kept (``run()`` then throws).
    public var executorID: UUID? { try? identity.get() }

    /// The running executor, once ``run()`` has started it.
    public var executor: Executor? { live.withLock { $0 } }

    /// Serves the executor until a graceful shutdown (or cancellation), as described above.
    ///
    /// - Throws: ``ExecutorError/identity(path:problem:)``, ``ExecutorError/configuration(_:)``, the runner's set-up errors, or the
    ///   server's (a port in use, for example).
    public func run() async throws {
        let id = try identity.get()
        try configuration.validate()
        let name = id.ucpString
        var nodeLogger = self.logger
        nodeLogger[metadataKey: "executor"] = "\(name)"
        let logger = nodeLogger
        let clock = NodeClock(nodeID: name, role: .dotted)
        let http = NodeHTTPClient(clock: clock, auth: configuration.auth)
        let runner: JobRunner
        do {
            runner = try JobRunner(
                rootdir: configuration.rootdir,
                // Twice the workers: a CRITICAL job starts at once on the worker a preempted job
                // frees, while that job's guest may still run until its next WASI call.
                configuration: JobRunnerConfiguration(
                    workers: configuration.workers * 2, defaultTimeLimit: configuration.timeLimit,
                    fuelRate: configuration.fuelRate))
        } catch {
            await http.shutdown()
            throw error
        }
        let executor = Executor(
            id: id, configuration: configuration, runner: runner, http: http, metrics: metrics, logger: logger)
        live.withLock { $0 = executor }
        let routes = NodeRoutes(
            clock: clock, metrics: metrics, instanceName: NodeRoutes.instanceName(role: "executor", id: name),
            auth: configuration.auth)
        let router = Router()
        ExecutorAPI(executor: executor, node: routes).addRoutes(to: router)
        let (ports, portSink) = AsyncStream.makeStream(of: Int.self)
        let onListening = self.onListening
        let app = NodeServer.application(
            router: router, host: configuration.host, port: configuration.port, logger: logger
        ) { port in
            portSink.yield(port)
            portSink.finish()
            await onListening(port)
        }
        // The server runs in its own group, detached so that it does not inherit this service's
        // graceful shutdown: it must keep answering (503 for new jobs) while jobs drain.
        let server = ServiceGroup(services: [app], gracefulShutdownSignals: [], logger: logger)
        let serverTask = Task.detached { try await server.run() }
        defer { serverTask.cancel() }
        let configuration = self.configuration
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await withTaskCancellationHandler {
                        try await serverTask.value
                    } onCancel: {
                        serverTask.cancel()
                    }
                }
                group.addTask {
                    var iterator = ports.makeAsyncIterator()
                    guard let port = await iterator.next() else { return }
                    logger.info("executor listening", metadata: ["port": "\(port)"])
                    _ = try? await cancelWhenGracefulShutdown {
                        await self.keepRegistered(executor, port: port, logger: logger)
                    }
                    await executor.shutdown(grace: configuration.shutdownGrace)
                    await server.triggerGracefulShutdown()
                }
                while try await group.next() != nil {}
            }
        } catch {
            runner.shutdown()
            await http.shutdown()
            throw error
        }
        await http.shutdown()
        logger.info("executor stopped")
    }

    /// Registers, then beats until cancelled; registers again whenever the broker forgot us.
    private func keepRegistered(_ executor: Executor, port: Int, logger: Logger) async {
        while !Task.isCancelled {
            await register(executor, port: port, logger: logger)
            while !Task.isCancelled {
                do {
                    try await Task.sleep(for: configuration.heartbeatInterval)
                } catch {
                    return
                }
                let capabilities = (try? executor.capabilities()) ?? Capabilities()
                do {
                    try await executor.http.call(
                        .PUT, configuration.broker, UCPPaths.heartbeat(executor.id), json: capabilities,
                        timeout: .seconds(10))
                    executor.metrics.heartbeatsOK.increment()
                    executor.metrics.clockWidth.record(executor.clock.width)
                } catch let error as NodeCallError where error.status == 404 {
                    executor.metrics.heartbeatsFailed.increment()
                    logger.warning("the broker does not know this executor; registering again")
                    break
                } catch {
                    executor.metrics.heartbeatsFailed.increment()
                    logger.warning("heartbeat failed: \(error)")
                }
            }
        }
    }

    /// Registers with the broker, retrying with backoff (up to 10 s apart) until it answers or
    /// the task is cancelled.
    private func register(_ executor: Executor, port: Int, logger: Logger) async {
        var delay = Duration.milliseconds(100)
        while !Task.isCancelled {
            let capabilities = (try? executor.capabilities()) ?? Capabilities()
            let body = RegistrationBody(
                hosts: configuration.advertisedHosts,
                executor: ExecutorRecord(
                    address: Address(host: "", port: port), id: executor.id, curCaps: capabilities,
                    lastUpdate: Date().timeIntervalSince1970))
            do {
                // The broker's clock first (its answer to a call teaches this executor the broker
                // group): the broker pushes the emergency notice in force as soon as it has
                // registered us, possibly before its answer to the registration arrives, and a
                // notice from a broker this executor does not know is refused.
                try await executor.http.call(.GET, configuration.broker, "/ping", timeout: .seconds(30))
                try await executor.http.call(.PUT, configuration.broker, UCPPaths.register, json: body, timeout: .seconds(30))
                executor.metrics.registrationsOK.increment()
                executor.metrics.clockWidth.record(executor.clock.width)
                logger.info("registered with the broker", metadata: ["broker": "\(configuration.broker)"])
                return
            } catch {
                executor.metrics.registrationsFailed.increment()
                logger.warning("registration failed, retrying in \(delay): \(error)")
                do {
                    try await Task.sleep(for: delay)
                } catch {
                    return
                }
                delay = min(delay * 2, .seconds(10))
            }
        }
    }
}
