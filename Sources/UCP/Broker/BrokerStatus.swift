import Causal
import Foundation

/// What `GET /status` answers: the broker's id and clock, its executors with their liveness,
/// its jobs counted by state (and the queued and assigned ones by emergency level), its result
/// ledger's counts, how many jobs were redeployed, its federation peers and the emergency in
/// force.
///
/// ```json
/// {"broker": "<uuid>", "clock": {...},
///  "executors": [{"id", "address", "state", "seconds_since_heartbeat", "assigned_jobs"}],
///  "jobs": {"waiting": 0, "queued": 0, "assigned": 0, "done": 0, "deleted": 0},
///  "queued_by_level": {"LOW": 0, ...}, "assigned_by_level": {"LOW": 0, ...},
///  "ledger": {"accepted": 0, "rejected": 0}, "redeployments": 0, "peers": [], "emergency": null}
/// ```
public struct BrokerStatus: Sendable, Hashable, Codable {
    /// The broker's id.
    public var broker: String
    /// The broker's clock.
    public var clock: [String: UInt64]
    /// Every executor ever registered, by id.
    public var executors: [ExecutorStatus]
    /// How many jobs are in each state (every state present).
    public var jobs: [String: Int]
    /// How many queued jobs there are of each emergency level (every level present).
    public var queuedByLevel: [String: Int]
    /// How many assigned jobs there are of each emergency level (every level present).
    public var assignedByLevel: [String: Int]
    /// The result ledger's counts.
    public var ledger: LedgerCounts
    /// How many times a job was redeployed because its executor failed.
    public var redeployments: Int
    /// The brokers this one federates with.
    public var peers: [BrokerPeerStatus]
    /// The emergency in force, if any.
    public var emergency: EmergencyNotice?
    /// The broker's place in the federation, nil for a broker alone.
    public var federation: FederationStatus? = nil

    /// A status.
    public init(
        broker: String, clock: [String: UInt64], executors: [ExecutorStatus], jobs: [String: Int],
        queuedByLevel: [String: Int], assignedByLevel: [String: Int], ledger: LedgerCounts, redeployments: Int,
        peers: [BrokerPeerStatus], emergency: EmergencyNotice?, federation: FederationStatus? = nil
    ) {
        self.broker = broker
        self.clock = clock
        self.executors = executors
        self.jobs = jobs
        self.queuedByLevel = queuedByLevel
        self.assignedByLevel = assignedByLevel
        self.ledger = ledger
        self.redeployments = redeployments
        self.peers = peers
        self.emergency = emergency
        self.federation = federation
    }

    private enum CodingKeys: String, CodingKey {
        case broker, clock, executors, jobs
        case queuedByLevel = "queued_by_level"
        case assignedByLevel = "assigned_by_level"
        case ledger, redeployments, peers, emergency, federation
    }

    /// Encodes every field, `emergency` as null when there is none.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(broker, forKey: .broker)
        try c.encode(clock, forKey: .clock)
        try c.encode(executors, forKey: .executors)
        try c.encode(jobs, forKey: .jobs)
        try c.encode(queuedByLevel, forKey: .queuedByLevel)
        try c.encode(assignedByLevel, forKey: .assignedByLevel)
        try c.encode(ledger, forKey: .ledger)
        try c.encode(redeployments, forKey: .redeployments)
        try c.encode(peers, forKey: .peers)
        try c.encode(emergency, forKey: .emergency)
        try c.encodeIfPresent(federation, forKey: .federation)
    }
}

/// One executor in ``BrokerStatus``: `{"id", "address", "state", "seconds_since_heartbeat",
/// "assigned_jobs"}`.
public struct ExecutorStatus: Sendable, Hashable, Codable {
    /// Its id.
    public var id: String
    /// Where the broker reaches it.
    public var address: Address
    /// What the failure detector makes of it.
    public var state: NodeLiveness
    /// Seconds since its last heartbeat (or registration).
    public var secondsSinceHeartbeat: Double
    /// How many jobs are assigned to it.
    public var assignedJobs: Int

    /// An executor's status.
    public init(id: String, address: Address, state: NodeLiveness, secondsSinceHeartbeat: Double, assignedJobs: Int) {
        self.id = id
        self.address = address
        self.state = state
        self.secondsSinceHeartbeat = secondsSinceHeartbeat
        self.assignedJobs = assignedJobs
    }

    private enum CodingKeys: String, CodingKey {
        case id, address, state
        case secondsSinceHeartbeat = "seconds_since_heartbeat"
        case assignedJobs = "assigned_jobs"
    }
}

/// The result ledger's counts in ``BrokerStatus``: `{"accepted", "rejected"}`.
public struct LedgerCounts: Sendable, Hashable, Codable {
    /// Results accepted (at most one per job).
    public var accepted: Int
    /// Results rejected because another executor's came first.
    public var rejected: Int

    /// Counts.
    public init(accepted: Int, rejected: Int) {
        self.accepted = accepted
        self.rejected = rejected
    }
}

/// A federation peer in ``BrokerStatus``: `{"id", "address", "connected", "delivered"}`, where
/// `delivered` is the clock of what this broker has delivered from that peer.
public struct BrokerPeerStatus: Sendable, Hashable, Codable {
    /// The peer broker's id.
    public var id: String
    /// Where it is reached.
    public var address: Address
    /// Whether it is connected now.
    public var connected: Bool
    /// The clock of what was delivered from it.
    public var delivered: [String: UInt64]

    /// A peer's status.
    public init(id: String, address: Address, connected: Bool, delivered: [String: UInt64]) {
        self.id = id
        self.address = address
        self.connected = connected
        self.delivered = delivered
    }
}

/// A federated broker's view of the federation, for comparing brokers: two brokers that applied the
/// same changes show equal `delivered` clocks and equal `replicaDigest`s.
public struct FederationStatus: Sendable, Hashable, Codable {
    /// This broker's slot.
    public var slot: Int
    /// The transport's delivered clock: messages delivered from each slot (including this one's own).
    public var delivered: [UInt64]
    /// A SHA-256 of every replicated row (``BrokerStore/replicaDigest(selfID:)``), hex.
    public var replicaDigest: String
    /// Changes waiting to be sent.
    public var outbox: Int

    /// A federation status.
    public init(slot: Int, delivered: [UInt64], replicaDigest: String, outbox: Int) {
        self.slot = slot
        self.delivered = delivered
        self.replicaDigest = replicaDigest
        self.outbox = outbox
    }

    private enum CodingKeys: String, CodingKey {
        case slot, delivered, outbox
        case replicaDigest = "replica_digest"
    }
}
