import Causal
import Foundation
import GRDB

/// Executors: registration, heartbeats, and failure with the redeployment of their jobs.
extension BrokerStore {
    /// Records (or replaces) an executor that passed its ping check, as active.
    func registerExecutor(_ entry: ExecutorEntry, clock: [String: UInt64]) throws(BrokerStoreError) {
        try write { db in
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO executors (id, record, hosts, last_heartbeat, state)
                    VALUES (?, ?, ?, ?, 'active')
                    """,
                arguments: [
                    entry.id.ucpString, try Self.json(entry.record), try Self.json(entry.hosts),
                    entry.lastHeartbeat,
                ])
            try Self.mergeClock(db, clock)
        }
    }

    /// Records a heartbeat of an active executor with its current capabilities; false when no
    /// active executor has that id.
    func heartbeatExecutor(_ id: UUID, capabilities: Capabilities, at time: Double) throws(BrokerStoreError)
        -> Bool
    {
        try write { db in
            guard
                let text = try String.fetchOne(
                    db, sql: "SELECT record FROM executors WHERE id = ? AND state = 'active'",
                    arguments: [id.ucpString])
            else { return false }
            var record = try Self.decode(ExecutorRecord.self, text)
            record.curCaps = capabilities
            record.lastUpdate = time
            try db.execute(
                sql: "UPDATE executors SET record = ?, last_heartbeat = ? WHERE id = ?",
                arguments: [try Self.json(record), time, id.ucpString])
            return true
        }
    }

    /// The active executors.
    func executors() throws(BrokerStoreError) -> [ExecutorEntry] {
        try read { db in
            try Row.fetchAll(
                db,
                sql:
                    "SELECT record, hosts, last_heartbeat FROM executors WHERE state = 'active' AND home IS NULL ORDER BY id"
            ).map { row in
                ExecutorEntry(
                    record: try Self.decode(ExecutorRecord.self, row["record"]),
                    hosts: try Self.decode([String].self, row["hosts"]), lastHeartbeat: row["last_heartbeat"])
            }
        }
    }

    /// What ``failExecutors(_:stamp:)`` did with the failed executors' assigned jobs.
    struct FailOutcome: Sendable, Hashable {
        /// Jobs put back in the queue, for other executors.
        var redeployed: [UUID] = []
        /// Jobs left assigned because the ledger already accepted their result from the failed
        /// executor itself: only its `done` is missing, which the caller records
        /// (``markDone(_:stamp:cause:)``).
        var finished: [UUID] = []
    }

    /// Marks the executors `ids` failed (they must register again; their heartbeats are
    /// refused) and puts their assigned jobs back in the queue, logging a `redeployed` event
    /// stamped by `stamp()` for each, except the jobs whose result the ledger accepted from that
    /// executor. One transaction.
    func failExecutors(_ ids: [UUID], stamp: () -> ClockStamp) throws(BrokerStoreError) -> FailOutcome {
        guard !ids.isEmpty else { return FailOutcome() }
        return try write { db in
            var outcome = FailOutcome()
            for id in ids {
                let key = id.ucpString
                try db.execute(sql: "UPDATE executors SET state = 'failed' WHERE id = ?", arguments: [key])
                let jobs = try String.fetchAll(
                    db,
                    sql: """
                        SELECT id FROM jobs WHERE executor_id = ?1 AND state = 'assigned'
                        AND NOT EXISTS (SELECT 1 FROM ledger_accepted a WHERE a.job_id = jobs.id AND a.executor_id = ?1)
                        ORDER BY seq
                        """,
                    arguments: [key])
                outcome.finished += try String.fetchAll(
                    db,
                    sql: """
                        SELECT id FROM jobs WHERE executor_id = ?1 AND state = 'assigned'
                        AND EXISTS (SELECT 1 FROM ledger_accepted a WHERE a.job_id = jobs.id AND a.executor_id = ?1)
                        ORDER BY seq
                        """,
                    arguments: [key]
                ).compactMap(UUID.init(uuidString:))
                for job in jobs {
                    let now = stamp()
                    try db.execute(
                        sql: "UPDATE jobs SET state = 'queued', executor_id = NULL, assigned = NULL WHERE id = ?",
                        arguments: [job])
                    try Self.log(db, JobEvent(jobID: UUID(uuidString: job)!, kind: .redeployed, stamp: now))
                    try Self.mergeClock(db, now.clock)
                    outcome.redeployed.append(UUID(uuidString: job)!)
                }
            }
            return outcome
        }
    }
}
