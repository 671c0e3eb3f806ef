import Causal
import Foundation
import Logging
import ServiceLifecycle

/// How a datastore node runs: `ucp datastore --host ... --port ... --rootdir ... --broker host:port`.
public struct DatastoreConfiguration: Sendable, Hashable {
    /// The address to listen on.
    public var host: String
    /// The port to listen on (0 picks a free one).
    public var port: Int
    /// The data folder (UCP's default `datastore.d`).
    public var rootdir: String
    /// The broker to register with (UCP finds it by zeroconf; an address is enough here).
    public var broker: Address
    /// The node's id; nil takes the one stored in `rootdir`, or a fresh one that is then stored.
    public var id: UUID?
    /// The hosts the broker may reach this node on; empty means `[host]`.
    public var advertisedHosts: [String]
    /// Largest data item accepted, in bytes.
    public var maxItemBytes: Int64
    /// How often the node beats at the broker (UCP: 60 s).
    public var heartbeatInterval: Duration
    /// The longest wait between two registration attempts while the broker does not answer.
    public var maxRetryInterval: Duration
    /// The log level.
    public var logLevel: Logger.Level
    /// The cluster's key: when set, the node proves membership on its calls and requires proof
    /// on state-changing calls it serves (``ClusterAuth``). Default none, as UCP.
    public var auth: ClusterAuth? = nil

    /// A configuration with UCP's defaults (port 8002, `datastore.d`, 60 s beats).
    public init(
        host: String = "127.0.0.1", port: Int = 8002, rootdir: String = "datastore.d",
        broker: Address = Address(host: "127.0.0.1", port: 8000), id: UUID? = nil, advertisedHosts: [String] = [],
        maxItemBytes: Int64 = 1 << 30, heartbeatInterval: Duration = .seconds(60),
        maxRetryInterval: Duration = .seconds(10), logLevel: Logger.Level = .info
    ) {
        self.host = host
        self.port = port
        self.rootdir = rootdir
        self.broker = broker
        self.id = id
        self.advertisedHosts = advertisedHosts
        self.maxItemBytes = maxItemBytes
        self.heartbeatInterval = heartbeatInterval
        self.maxRetryInterval = maxRetryInterval
        self.logLevel = logLevel
    }
}

/// A datastore node: ``DatastoreAPI`` over a ``Datastore`` in `rootdir`, registered with its
/// broker (`PUT /datastores/register`, retried with backoff until the broker answers) and
/// beating there (`PUT /datastores/heartbeat/{id}`; a 404 means the broker forgot it, and it
/// registers again).
///
/// Its id is kept in `<rootdir>/datastore.id`, so a restarted node is the same node. Its clock
/// is dotted (it owns no clock entry) and named by its id.
public struct DatastoreNode: Service {
    /// How it runs.
    public let configuration: DatastoreConfiguration
    let logger: Logger
    let onListening: @Sendable (Int) async -> Void

    /// A datastore node; `onListening` is told the port once the server listens.
    public init(
        configuration: DatastoreConfiguration, logger: Logger = Logger(label: "ucp.datastore"),
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        self.configuration = configuration
        var logger = logger
        logger.logLevel = configuration.logLevel
        self.logger = logger
        self.onListening = onListening
    }

    /// Runs the node until the service group shuts down gracefully (or the task is cancelled).
    ///
    /// - Throws: ``UnsafePath`` or ``DatastoreNodeError`` when the data folder cannot be used,
    ///   or the server's error when it cannot listen.
    public func run() async throws {
        let store = try Datastore(rootdir: configuration.rootdir, maxItemBytes: configuration.maxItemBytes)
        let id = try Self.identity(in: store.root.path, proposed: configuration.id)
        let nodeID = id.ucpString
        let clock = NodeClock(nodeID: nodeID, role: .dotted)
        let routes = NodeRoutes(
            clock: clock, metrics: NodeMetrics(), instanceName: NodeRoutes.instanceName(role: "datastore", id: nodeID),
            auth: configuration.auth)
        let api = DatastoreAPI(store: store, id: id, node: routes)
        let client = NodeHTTPClient(clock: clock, auth: configuration.auth, defaultTimeout: .seconds(10))
        let (ports, portSink) = AsyncStream.makeStream(of: Int.self)
        let onListening = self.onListening
        let app = api.application(host: configuration.host, port: configuration.port, logger: logger) { port in
            portSink.yield(port)
            portSink.finish()
            await onListening(port)
        }
        let outcome: Result<Void, any Error> = await withTaskGroup(of: Void.self) { group in
            group.addTask {
                var iterator = ports.makeAsyncIterator()
                guard let port = await iterator.next() else { return }
                await self.keepRegistered(id: id, port: port, client: client)
            }
            let outcome: Result<Void, any Error>
            do {
                try await app.run()
                outcome = .success(())
            } catch {
                outcome = .failure(error)
            }
            portSink.finish()
            group.cancelAll()
            await group.waitForAll()
            return outcome
        }
        await client.shutdown()
        logger.info("datastore stopped", metadata: ["id": "\(nodeID)"])
        try outcome.get()
    }

    /// Registers with the broker (retrying with backoff until it answers), then beats every
    /// heartbeat interval, registering again when the broker answers 404; until shutdown.
    func keepRegistered(id: UUID, port: Int, client: NodeHTTPClient) async {
        let hosts = configuration.advertisedHosts.isEmpty ? [configuration.host] : configuration.advertisedHosts
        let registration = DatastoreRegistration(
            hosts: hosts, datastore: .init(address: Address(host: "", port: port), id: id))
        let broker = configuration.broker
        var registered = false
        var backoff = Duration.milliseconds(100)
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            if !registered {
                do {
                    try await client.call(.PUT, broker, "/datastores/register", json: registration)
                    registered = true
                    backoff = .milliseconds(100)
                    logger.info("registered with the broker", metadata: ["broker": "\(broker)"])
                } catch {
                    logger.info("broker did not accept the registration", metadata: ["error": "\(error)"])
                    await Self.pause(backoff)
                    backoff = min(backoff * 2, configuration.maxRetryInterval)
                    continue
                }
            }
            await Self.pause(configuration.heartbeatInterval)
            guard !Task.isCancelled && !Task.isShuttingDownGracefully else { return }
            do {
                try await client.call(.PUT, broker, "/datastores/heartbeat/\(id.ucpString)")
            } catch let error as NodeCallError where error.status == 404 {
                logger.info("the broker forgot this datastore; registering again")
                registered = false
            } catch {
                logger.info("heartbeat failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Sleeps `duration`, waking early on graceful shutdown or cancellation.
    static func pause(_ duration: Duration) async {
        try? await cancelWhenGracefulShutdown { try await Task.sleep(for: duration) }
    }

    /// The node's id: the one in `<root>/datastore.id`, else `proposed` or a fresh one, written
    /// there.
    ///
    /// - Throws: ``DatastoreNodeError`` when the file holds another id than `proposed`, or
    ///   cannot be written.
    static func identity(in root: String, proposed: UUID?) throws(DatastoreNodeError) -> UUID {
        let path = root + "/datastore.id"
        if let text = try? String(contentsOfFile: path, encoding: .utf8),
            let stored = UUID(uuidString: text.trimmingCharacters(in: .whitespacesAndNewlines))
        {
            if let proposed, proposed != stored {
                throw .identityMismatch(path: path, stored: stored, proposed: proposed)
            }
            return stored
        }
        let id = proposed ?? UUID()
        do {
            try Data((id.ucpString + "\n").utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw .cannotStoreIdentity(path: path, "\(error)")
        }
        return id
    }
}

/// A datastore node could not use its data folder.
public enum DatastoreNodeError: Error, Hashable, CustomStringConvertible {
    /// The folder belongs to another datastore.
    case identityMismatch(path: String, stored: UUID, proposed: UUID)
    /// The id file could not be written.
    case cannotStoreIdentity(path: String, String)

    /// One line naming the file.
    public var description: String {
        switch self {
        case .identityMismatch(let path, let stored, let proposed):
            "\(path) names datastore \(stored.ucpString), not \(proposed.ucpString)"
        case .cannotStoreIdentity(let path, let why): "cannot write the datastore id to \(path): \(why)"
        }
    }
}
