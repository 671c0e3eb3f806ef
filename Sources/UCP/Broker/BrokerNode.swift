import Foundation
import Logging
import ServiceLifecycle

/// A broker node: ``BrokerAPI`` on HTTP and the broker's background loop (dispatch, pruning),
/// over the state in `<rootdir>/broker.sqlite`.
///
/// Run it in a `ServiceGroup` with `gracefulShutdownSignals: [.sigterm, .sigint]`: on shutdown
/// the server stops taking requests and finishes those under way, the loop stops after the
/// dispatches under way, the clock is saved and the database closed, in that order, so files
/// and database are left consistent (every state change is a transaction anyway).
public struct BrokerNode: Service {
    /// How it runs.
    public let configuration: BrokerConfiguration
    let logger: Logger
    let onListening: @Sendable (Int) async -> Void

    /// A broker node; `onListening` is told the port once the server listens.
    public init(
        configuration: BrokerConfiguration, logger: Logger = Logger(label: "ucp.broker"),
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
    /// - Throws: ``BrokerStoreError`` when the data folder cannot be opened, or the server's
    ///   error when it cannot listen.
    public func run() async throws {
        let store = try BrokerStore(rootdir: configuration.rootdir)
        let broker: Broker
        do {
            broker = try Broker(configuration: configuration, store: store, logger: logger)
        } catch {
            try? store.close()
            throw error
        }
        logger.info(
            "broker starting",
            metadata: [
                "id": "\(broker.nodeID)", "rootdir": "\(configuration.rootdir)", "port": "\(configuration.port)",
            ])
        var federation: BrokerFederation?
        if let settings = configuration.federation {
            do {
                let joined = try BrokerFederation(
                    broker: broker, configuration: settings,
                    httpAddress: Address(host: configuration.host, port: configuration.port), logger: logger)
                broker.attach(joined)
                federation = joined
                logger.info(
                    "federation joined",
                    metadata: ["slot": "\(settings.slot)", "port": "\(joined.port)", "peers": "\(settings.peers)"])
            } catch {
                try? store.close()
                throw error
            }
        }
        let app = BrokerAPI(broker: broker).application(
            host: configuration.host, port: configuration.port, logger: logger
        ) { [onListening, federation] port in
            federation?.address = Address(host: configuration.host, port: port)
            await onListening(port)
        }
        let outcome: Result<Void, any Error> = await withTaskGroup(of: Void.self) { group in
            group.addTask { await broker.runMaintenance() }
            if let federation { group.addTask { await federation.run() } }
            // The server returns once shutdown began and its requests are answered (or when it
            // fails); the loop stops on the same shutdown, or is cancelled when the server failed.
            let outcome: Result<Void, any Error>
            do {
                try await app.run()
                outcome = .success(())
            } catch {
                outcome = .failure(error)
                group.cancelAll()
            }
            await federation?.close()
            await group.waitForAll()
            return outcome
        }
        await broker.shutdown()
        try store.close()
        logger.info("broker stopped", metadata: ["id": "\(broker.nodeID)"])
        try outcome.get()
    }
}
