import Causal
import Foundation
import Logging
import Synchronization

/// A broker's membership in the federation of brokers: the brokers form one causal group over
/// the causal transport (``CausalNode``) and replicate their metadata to each other.
///
/// What travels: every change to the replicated tables (executors, datastores, jobs with their
/// assignments and completions, data locations, ledger decisions; see ``ReplicaTable``) is put
/// in the store's outbox by SQLite triggers, in the transaction that makes it; a pump sends the
/// changed rows, as they are when sent, stamped with the broker's clock, and confirms the outbox
/// once the transport took them. Emergency notices travel the same way. Every broker applies
/// what it receives with the store's merge rules (``BrokerStore/applyReplica(_:selfID:stamp:)``)
/// in the transport's causal delivery order, and merges the sender's clock into its own: the
/// brokers' clocks cover each other.
///
/// Partitions: while a peer is unreachable, each side carries on with what it has; the transport
/// keeps every unacknowledged message (on disk, in `<rootdir>/federation`) and resends it when
/// the connection comes back, so both sides apply everything the other did and converge to equal
/// tables and clocks.
///
/// Delegation: a broker whose executors cannot run a job gives it to a connected peer broker
/// with a capable executor (``delegationTarget(for:)``).
///
/// Thread-safe.
public final class BrokerFederation: Sendable {
    /// How it is set up.
    public let configuration: FederationConfiguration
    /// The transport.
    public let node: CausalNode
    let broker: Broker
    let logger: Logger
    private let state = Mutex(State())
    private let wake = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))

    private struct State {
        var address: Address?
        var peers: [Int: FederationPeer] = [:]
        var stopped = false
    }

    /// Joins the group: starts the transport (listening at once; connections come up in the
    /// background) and turns on the store's replication.
    ///
    /// - Throws: ``CausalNodeError`` when the transport cannot start, ``BrokerStoreError`` when
    ///   the store cannot replicate.
    public init(broker: Broker, configuration: FederationConfiguration, httpAddress: Address?, logger: Logger) throws {
        self.configuration = configuration
        self.broker = broker
        state.withLock { $0.address = httpAddress }
        self.logger = logger
        var options = configuration.options
        options.stateDirectory = (broker.configuration.rootdir as NSString).appendingPathComponent("federation")
        // A peer's message counts as handed over once its rows are in the store, so that one still
        // in the delivery stream when the broker dies is delivered again after its restart.
        options.confirmsDeliveries = true
        node = try CausalNode(
            slot: configuration.slot, width: configuration.width,
            listen: (configuration.listenHost, configuration.listenPort), peers: configuration.peers,
            key: configuration.key, options: options)
        state.withLock { s in
            for peer in configuration.peers {
                s.peers[peer.slot] = FederationPeer(
                    slot: peer.slot, transport: peer.description, id: nil, address: nil, connected: false,
                    delivered: 0)
            }
        }
        // Event-driven: the pump wakes when a transaction put rows in the outbox.
        let wake = self.wake
        broker.store.observeOutbox { wake.continuation.yield() }
        try broker.store.startReplicating()
    }

    /// Where this broker's HTTP API listens, as its messages tell the peers (set once the server
    /// listens, when it picked its port).
    public var address: Address? {
        get { state.withLock { $0.address } }
        set { state.withLock { $0.address = newValue } }
    }

    /// The port the transport listens on.
    public var port: Int { node.port }

    /// The peers as this broker knows them, by slot.
    public func peers() -> [FederationPeer] {
        state.withLock { $0.peers.values.sorted { $0.slot < $1.slot } }
    }

    /// Asks the pump to send what changed.
    public func poke() {
        wake.continuation.yield()
    }

    /// Runs the pump, the delivery and the event loops until the task is cancelled or
    /// ``close()`` is called.
    public func run() async {
        poke()
        await withDiscardingTaskGroup { group in
            group.addTask { await self.pump() }
            group.addTask { await self.receive() }
            group.addTask { await self.watch() }
        }
    }

    /// Stops the loops and closes the transport (after giving it up to `grace` to have peers
    /// acknowledge what was sent; what is not acknowledged is kept on disk and resent after a
    /// restart).
    public func close(grace: Duration = .seconds(1)) async {
        await node.waitUntilAllAcknowledged(deadline: .now + grace)
        state.withLock { $0.stopped = true }
        wake.continuation.finish()
        await node.close()
    }

    /// Broadcasts an emergency notice to every broker (this one included: it is applied when
    /// delivered, in causal order with everything else).
    public func broadcast(_ notice: EmergencyNotice) async throws {
        let message = FederationMessage(
            origin: broker.nodeID, address: address, stamp: notice.stamp, emergency: notice)
        try await node.broadcast(
            try message.encoded(), emergency: notice.level ?? .low, kind: FederationMessage.kind,
            waitingUntil: .now + .seconds(10))
    }

    /// A connected peer broker with a live executor able to run `job`, chosen at random; nil when
    /// none.
    public func delegationTarget(for job: JobRecord) -> String? {
        let connected = Set(state.withLock { s in s.peers.values.filter(\.connected).compactMap(\.id) })
        guard !connected.isEmpty, let executors = try? broker.store.peerExecutors() else { return nil }
        return executors.filter { connected.contains($0.home) && $0.entry.record.curCaps.canRun(job.info.capabilities) }
            .map(\.home).randomElement()
    }

    // MARK: - Loops

    /// Sends the outbox whenever a transaction put rows in it (the store's outbox observer) or
    /// someone pokes; a wake-up that comes while it sends is kept (the stream buffers one), so no
    /// change waits for another.
    private func pump() async {
        for await _ in wake.stream {
            if Task.isCancelled || isStopped { break }
            await sendOutbox()
        }
    }

    private var isStopped: Bool { state.withLock { $0.stopped } }

    private func sendOutbox() async {
        while !isStopped {
            do {
                guard try broker.store.outboxCount() > 0 else { return }
                let stamp = broker.clock.event()
                guard
                    let batch = try broker.store.outboxBatch(
                        version: RowVersion(stamp: stamp, origin: broker.nodeID), selfID: broker.nodeID)
                else { return }
                try await send(batch.rows, stamp: stamp)
                try broker.store.confirmOutbox(through: batch.through)
            } catch {
                // A timer for the retry, not a poll: the outbox still holds the rows.
                logger.error("federation: could not send changes; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(200))
                poke()
                return
            }
        }
    }

    /// Sends `rows` in as few messages as fit the transport's payload limit.
    private func send(_ rows: [ReplicaRow], stamp: ClockStamp) async throws {
        let message = FederationMessage(
            origin: broker.nodeID, address: address, stamp: stamp, rows: rows)
        let payload = try message.encoded()
        if payload.count <= node.options.maxPayload {
            try await node.broadcast(payload, kind: FederationMessage.kind, waitingUntil: .now + .seconds(10))
            return
        }
        guard rows.count > 1 else {
            logger.error(
                "federation: a row is larger than the transport's payload limit and is not replicated",
                metadata: ["table": "\(rows[0].table)", "key": "\(rows[0].key)", "bytes": "\(payload.count)"])
            return
        }
        try await send(Array(rows[..<(rows.count / 2)]), stamp: stamp)
        try await send(Array(rows[(rows.count / 2)...]), stamp: stamp)
    }

    private func receive() async {
        for await message in node.deliveries {
            // Applying a message again is harmless (rows merge by their rules), losing one is not:
            // confirmed only once handled, whatever the outcome.
            defer { try? node.confirm(message) }
            guard message.kind == FederationMessage.kind else { continue }
            let decoded: FederationMessage
            do {
                decoded = try FederationMessage.decode(message.payload)
            } catch {
                logger.error(
                    "federation: undecodable message dropped",
                    metadata: ["slot": "\(message.sender)", "error": "\(error)"])
                continue
            }
            state.withLock { s in
                s.peers[message.sender]?.id = decoded.origin
                s.peers[message.sender]?.address = decoded.address
                s.peers[message.sender]?.delivered = message.sequence
            }
            // The clock first: the notice is pushed to this broker's executors with this
            // broker's clock, which must not be behind the notice's stamp (they refuse a notice
            // stamped ahead of what they have seen).
            if decoded.origin != broker.nodeID {
                _ = broker.clock.receive(decoded.stamp.clock, from: .group)
            }
            if let notice = decoded.emergency {
                await broker.applyEmergency(notice)
            }
            guard decoded.origin != broker.nodeID else { continue }
            guard !decoded.rows.isEmpty else { continue }
            do {
                let outcome = try broker.store.applyReplica(decoded.rows, selfID: broker.nodeID) {
                    broker.clock.event()
                }
                if !outcome.readyJobs.isEmpty || outcome.applied > 0 { broker.markDirty() }
                for job in outcome.ledgerReversals {
                    logger.warning(
                        "federation: a peer accepted a result for this job first; this broker's decision became a rejection",
                        metadata: ["job": "\(job.ucpString)"])
                }
            } catch {
                logger.error("federation: could not apply a peer's changes", metadata: ["error": "\(error)"])
            }
        }
    }

    private func watch() async {
        for await event in node.events {
            switch event {
            case .peerUp(let slot):
                state.withLock { $0.peers[slot]?.connected = true }
                logger.info("federation: peer broker up", metadata: ["slot": "\(slot)"])
                broker.markDirty()
            case .peerDown(let slot, let reason):
                state.withLock { $0.peers[slot]?.connected = false }
                logger.info("federation: peer broker down", metadata: ["slot": "\(slot)", "reason": "\(reason)"])
            case .refused, .protocolError:
                logger.warning("federation: \(event)")
            case .listening, .memberAdded:
                logger.debug("federation: \(event)")
            }
        }
    }
}
