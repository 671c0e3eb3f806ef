import Causal
import Foundation
import GRDB

/// Counts and summaries for `GET /status`.
extension BrokerStore {
    /// An executor as `GET /status` shows it: its entry, whether it was declared failed, and how
    /// many jobs are assigned to it.
    struct ExecutorSummary: Sendable, Hashable {
        /// The executor as last registered or heard of.
        var entry: ExecutorEntry
        /// True when it was declared failed (it must register again).
        var failed: Bool
        /// How many jobs are `assigned` to it.
        var assignedJobs: Int
    }

    /// Every executor ever registered with this broker (not a peer broker's), active or failed,
    /// with its assigned job count, by id.
    func executorSummaries() throws(BrokerStoreError) -> [ExecutorSummary] {
        try read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT e.record, e.hosts, e.last_heartbeat, e.state,
                        (SELECT COUNT(*) FROM jobs j WHERE j.executor_id = e.id AND j.state = 'assigned') AS assigned
                    FROM executors e WHERE e.home IS NULL ORDER BY e.id
                    """
            ).map { row in
                ExecutorSummary(
                    entry: ExecutorEntry(
                        record: try Self.decode(ExecutorRecord.self, row["record"]),
                        hosts: try Self.decode([String].self, row["hosts"]), lastHeartbeat: row["last_heartbeat"]),
                    failed: (row["state"] as String) != "active", assignedJobs: row["assigned"])
            }
        }
    }

    /// How many jobs of each emergency level are in `state` (levels without jobs are absent).
    func jobCounts(in state: JobState) throws(BrokerStoreError) -> [EmergencyLevel: Int] {
        try read { db in
            var counts: [EmergencyLevel: Int] = [:]
            for row in try Row.fetchAll(
                db, sql: "SELECT emergency, COUNT(*) AS n FROM jobs WHERE state = ? GROUP BY emergency",
                arguments: [state.rawValue])
            {
                if let level = EmergencyLevel(rawValue: UInt8(clamping: row["emergency"] as Int)) {
                    counts[level] = row["n"] as Int
                }
            }
            return counts
        }
    }

    /// How many results the ledger accepted (one per job at most) and rejected.
    func ledgerCounts() throws(BrokerStoreError) -> (accepted: Int, rejected: Int) {
        try read { db in
            let accepted = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM ledger_accepted") ?? 0
            let rejected = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM ledger_rejected") ?? 0
            return (accepted, rejected)
        }
    }

    /// How many times a job was redeployed because its executor failed (`redeployed` events).
    func redeploymentCount() throws(BrokerStoreError) -> Int {
        try read { db in
            try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM events WHERE kind = ?", arguments: [JobEvent.Kind.redeployed.rawValue])
                ?? 0
        }
    }
}
