import Causal
import Foundation
import Hummingbird
import Logging
import NetworkFaults
import Testing
@testable import UCP

/// One broker of a test federation: the broker, its HTTP address and its membership.
struct FederatedBroker: Sendable {
    let broker: Broker
    let address: Address
    let federation: BrokerFederation

    var base: String { "http://\(address)" }

    /// Its replicated tables, one line per row.
    func digest() throws -> [String] {
        try broker.store.replicaDigest(selfID: broker.nodeID)
    }

    /// True while the transport to every peer is up.
    var connected: Bool { federation.peers().allSatisfy(\.connected) }
}

/// Runs two federated brokers, each with its API on a loopback port, its background loop and its
/// causal transport, for the length of `body`. Broker 0 reaches broker 1's transport through
/// `proxy`, so a test can cut the link between them (``DelayProxy/partition()``) and heal it.
func withFederation(
    _ adjust: @escaping @Sendable (inout BrokerConfiguration) -> Void = { _ in },
    _ body: @Sendable ([FederatedBroker], DelayProxy) async throws -> Void
) async throws {
    try await withTemporaryFolder { folder in
        let key = ClusterKey.random()
        let proxy = try DelayProxy(maxDelay: .milliseconds(1))
        defer { proxy.close() }
        var made: [(Broker, BrokerStore)] = []
        for index in 0..<2 {
            var configuration = BrokerConfiguration(
                host: "127.0.0.1", port: 0, rootdir: folder + "/broker-\(index)",
                heartbeatInterval: .milliseconds(500), failAfter: .seconds(120), tickInterval: .milliseconds(50),
                callTimeout: .seconds(5), logLevel: .warning)
            adjust(&configuration)
            let store = try BrokerStore(rootdir: configuration.rootdir)
            var logger = Logger(label: "broker-\(index)")
            logger.logLevel = .warning
            made.append((try Broker(configuration: configuration, store: store, logger: logger), store))
        }
        let brokers = made
        let second = Router(context: BrokerRequestContext.self)
        BrokerAPI(broker: brokers[1].0).addRoutes(to: second)
        var logger = Logger(label: "federation")
        logger.logLevel = .warning
        let federationLogger = logger
        func shutdown() async {
            for (broker, store) in brokers {
                await broker.shutdown()
                try? store.close()
            }
        }
        do {
            try await withServer(second) { port1 in
                let second = try BrokerFederation(
                    broker: brokers[1].0,
                    configuration: FederationConfiguration(
                        slot: 1, listenPort: 0, peers: [.init(slot: 0, host: "127.0.0.1", port: 1)], key: key),
                    httpAddress: Address(host: "127.0.0.1", port: port1), logger: federationLogger)
                proxy.setTarget(second.port)
                let first = Router(context: BrokerRequestContext.self)
                BrokerAPI(broker: brokers[0].0).addRoutes(to: first)
                try await withServer(first) { port0 in
                    let first = try BrokerFederation(
                        broker: brokers[0].0,
                        configuration: FederationConfiguration(
                            slot: 0, listenPort: 0, peers: [.init(slot: 1, host: "127.0.0.1", port: proxy.port)],
                            key: key),
                        httpAddress: Address(host: "127.0.0.1", port: port0), logger: federationLogger)
                    let members = [
                        FederatedBroker(
                            broker: brokers[0].0, address: Address(host: "127.0.0.1", port: port0), federation: first),
                        FederatedBroker(
                            broker: brokers[1].0, address: Address(host: "127.0.0.1", port: port1), federation: second),
                    ]
                    for member in members { member.broker.attach(member.federation) }
                    let loops = members.map { member in
                        Task {
                            await withDiscardingTaskGroup { group in
                                group.addTask { await member.broker.runMaintenance() }
                                group.addTask { await member.federation.run() }
                            }
                        }
                    }
                    func stop() async {
                        for member in members { await member.federation.close(grace: .zero) }
                        for loop in loops { loop.cancel() }
                        for loop in loops { _ = await loop.value }
                    }
                    do {
                        try await eventually("the brokers connected") { members.allSatisfy(\.connected) }
                        try await body(members, proxy)
                    } catch {
                        await stop()
                        throw error
                    }
                    await stop()
                }
            }
        } catch {
            await shutdown()
            throw error
        }
        await shutdown()
    }
}
