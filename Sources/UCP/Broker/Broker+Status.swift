import Causal
import Foundation

extension Broker {
    /// The broker's state at a glance, as `GET /status` answers it; runs a failure detection
    /// pass first, so that executors silent too long show as failed.
    ///
    /// - Throws: ``BrokerStoreError`` (500) when the store cannot be read.
    public func status() async throws -> BrokerStatus {
        detectFailures()
        let moment = now()
        let executors = try store.executorSummaries().map { summary in
            ExecutorStatus(
                id: summary.entry.id.ucpString, address: summary.entry.record.address,
                state: liveness(of: summary.entry, failed: summary.failed, at: moment),
                secondsSinceHeartbeat: max(0, moment - summary.entry.lastHeartbeat),
                assignedJobs: summary.assignedJobs)
        }
        func byLevel(_ state: JobState) throws(BrokerStoreError) -> [String: Int] {
            let counts = try store.jobCounts(in: state)
            return Dictionary(uniqueKeysWithValues: EmergencyLevel.allCases.map { ($0.name, counts[$0] ?? 0) })
        }
        let ledger = try store.ledgerCounts()
        return BrokerStatus(
            broker: id.ucpString, clock: clock.now().clock, executors: executors,
            jobs: Dictionary(uniqueKeysWithValues: try store.jobCounts().map { ($0.key.rawValue, $0.value) }),
            queuedByLevel: try byLevel(.queued), assignedByLevel: try byLevel(.assigned),
            ledger: LedgerCounts(accepted: ledger.accepted, rejected: ledger.rejected),
            redeployments: try store.redeploymentCount(), peers: peerStatus(), emergency: currentEmergency(),
            federation: try await federationStatus())
    }

    /// This broker's view of the federation, for ``status()``; nil for a broker alone.
    func federationStatus() async throws(BrokerStoreError) -> FederationStatus? {
        guard let federation else { return nil }
        let rows = try store.replicaDigest(selfID: nodeID).joined(separator: "\n")
        return FederationStatus(
            slot: federation.configuration.slot, delivered: (try? await federation.node.clock())?.entries ?? [],
            replicaDigest: ContentHash(of: Array(rows.utf8)).description, outbox: try store.outboxCount())
    }

    /// The brokers this one federates with, for ``status()``: each peer's id (its slot until a
    /// message from it arrived), its HTTP address, whether the transport is connected to it, and
    /// how many of its messages were delivered here (`delivered[id]`).
    public func peerStatus() -> [BrokerPeerStatus] {
        (federation?.peers() ?? []).map { peer in
            let id = peer.id ?? "slot \(peer.slot)"
            return BrokerPeerStatus(
                id: id, address: peer.address ?? Address(host: peer.transport, port: 0), connected: peer.connected,
                delivered: [id: peer.delivered])
        }
    }

    /// The emergency notice in force at this broker (a raise, or the clear that ended the last
    /// one), for ``status()``.
    public func currentEmergency() -> EmergencyNotice? {
        emergencyMode.current
    }
}
