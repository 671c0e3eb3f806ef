import Foundation

/// The tables brokers replicate to each other. The job event log is not among them: it is each
/// broker's own record of what it did.
enum ReplicaTable: String, Sendable, Hashable, Codable, CaseIterable {
    /// Executors, with their home broker.
    case executors
    /// Datastores, with their home broker.
    case datastores
    /// Jobs, with their owner (the broker that dispatches them).
    case jobs
    /// Where each piece of data is.
    case dataLocations = "data_locations"
    /// Accepted results.
    case ledgerAccepted = "ledger_accepted"
    /// Refused results.
    case ledgerRejected = "ledger_rejected"

    /// The key column.
    var keyColumn: String {
        switch self {
        case .executors, .datastores, .jobs, .ledgerRejected: "id"
        case .dataLocations: "name"
        case .ledgerAccepted: "job_id"
        }
    }

    /// The columns sent, the key excluded.
    var columns: [String] {
        switch self {
        case .executors: ["record", "hosts", "last_heartbeat", "state", "home"]
        case .datastores: ["address", "hosts", "last_seen", "state", "home"]
        case .jobs: ["info", "wait_for", "state", "executor_id", "emergency", "submitted", "assigned", "done", "owner"]
        case .dataLocations: ["datastore_id"]
        case .ledgerAccepted: ["executor_id", "dot", "stamp", "at"]
        case .ledgerRejected: ["job_id", "executor_id", "dot", "stamp", "reason", "at"]
        }
    }

    /// The column naming the broker a row belongs to, stored NULL for "this broker": executors
    /// and datastores registered here, jobs dispatched from here.
    var homeColumn: String? {
        switch self {
        case .executors, .datastores: "home"
        case .jobs: "owner"
        case .dataLocations, .ledgerAccepted, .ledgerRejected: nil
        }
    }

    /// Columns that change without being replicated (a datastore's heartbeat), left out of
    /// comparisons between brokers.
    var localColumns: Set<String> {
        self == .datastores ? ["last_seen"] : []
    }
}
