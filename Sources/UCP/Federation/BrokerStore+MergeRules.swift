import Causal
import Foundation
import GRDB

/// The merge rules: which of two writes of a replicated row wins (see
/// ``applyReplica(_:selfID:stamp:)``).
extension BrokerStore {
    /// Applies an executor, datastore or data location row when its version is larger than
    /// the one here; false when it lost.
    static func applyLatest(_ db: Database, _ row: ReplicaRow, selfID: String) throws -> Bool {
        if let current = try version(db, row.table, row.key), current >= row.version { return false }
        try write(db, row.table, key: row.key, values: row.values, selfID: selfID)
        try setVersion(db, row.table, row.key, row.version)
        return true
    }

    /// A job row's rank: live < done < deleted < removed.
    private static func rank(_ values: [String: ReplicaValue]?) -> Int {
        guard let values else { return 3 }
        if values["state"] == .text(JobState.deleted.rawValue) { return 2 }
        if values["state"] == .text(JobState.done.rawValue) { return 1 }
        return 0
    }

    /// Applies a job row; returns the jobs it made ready here, or nil when the row lost.
    static func applyJob(_ db: Database, _ row: ReplicaRow, selfID: String, stamp: () -> ClockStamp) throws
        -> [UUID]?
    {
        let current = try replicaValues(db, .jobs, key: row.key, selfID: selfID)
        let currentVersion = try version(db, .jobs, row.key) ?? RowVersion(sum: 0, origin: "")
        if current != nil, (rank(row.values), row.version) <= (rank(current), currentVersion) { return nil }
        guard var values = row.values else {
            // Only a job refused at submission (never given to an executor) is removed outright.
            try write(db, .jobs, key: row.key, values: nil, selfID: selfID)
            try db.execute(sql: "DELETE FROM job_waits WHERE job_id = ?", arguments: [row.key])
            try setVersion(db, .jobs, row.key, row.version)
            return []
        }
        // A done stamp, once known, is kept (a concurrent delete may not carry it).
        if values["done"] == .null, let done = current?["done"], done != .null { values["done"] = done }
        let wasDone = current.map { $0["done"] != .null } ?? false
        let wasOwned = current.map { $0["owner"] == .text(selfID) && $0["state"] == .text("queued") } ?? false
        try write(db, .jobs, key: row.key, values: values, selfID: selfID)
        try setVersion(db, .jobs, row.key, row.version)
        var ready: [UUID] = []
        if case .text(let waits) = values["wait_for"], current == nil {
            for id in (try? decode([String].self, waits)) ?? [] {
                try db.execute(
                    sql: "INSERT OR IGNORE INTO job_waits (job_id, waits_for) VALUES (?, ?)", arguments: [row.key, id])
            }
        }
        if values["owner"] == .text(selfID), values["state"] == .text("queued"), !wasOwned,
            let id = UUID(uuidString: row.key)
        {
            try log(db, JobEvent(jobID: id, kind: .delegated, stamp: stamp()))
            ready.append(id)
        }
        if values["done"] != .null, !wasDone {
            ready += try releaseWaiters(of: row.key, db, stamp: stamp)
        }
        return ready
    }

    /// What ``applyAccepted(_:_:)`` did with a peer's accepted result.
    enum AcceptedOutcome { case taken, kept, replaced }

    /// Applies a peer's accepted result: the earlier of it and the local one wins, the other
    /// becomes a rejection.
    static func applyAccepted(_ db: Database, _ row: ReplicaRow) throws -> AcceptedOutcome {
        guard let values = row.values, let id = UUID(uuidString: row.key) else { return .kept }
        guard try Bool.fetchOne(db, sql: "SELECT COUNT(*) > 0 FROM jobs WHERE id = ?", arguments: [row.key]) == true
        else { return .kept }
        let incoming = try ledgerEntry(
            id, Row(values.mapValues { $0.databaseValue as (any DatabaseValueConvertible)? }))
        guard
            let local = try Row.fetchOne(
                db, sql: "SELECT * FROM ledger_accepted WHERE job_id = ?", arguments: [row.key]
            )
            .map({ try ledgerEntry(id, $0) })
        else {
            try write(db, .ledgerAccepted, key: row.key, values: values, selfID: "")
            return .taken
        }
        if local.executor == incoming.executor && local.dot == incoming.dot { return .kept }
        let (winner, loser) = ResultLedger.earlier(local, incoming) ? (local, incoming) : (incoming, local)
        try insertRejection(
            db, loser,
            reason:
                "superseded: broker decisions merged, \(winner.executor.map { $0.ucpString } ?? "a client")'s result came first"
        )
        guard winner == incoming else { return .kept }
        try write(db, .ledgerAccepted, key: row.key, values: values, selfID: "")
        return .replaced
    }

    /// Adds a peer's rejection, once; false when it was known or its job is not.
    static func applyRejected(_ db: Database, _ row: ReplicaRow) throws -> Bool {
        guard let values = row.values, case .text(let job)? = values["job_id"], let id = UUID(uuidString: job),
            case .text(let reason)? = values["reason"]
        else { return false }
        guard try Bool.fetchOne(db, sql: "SELECT COUNT(*) > 0 FROM jobs WHERE id = ?", arguments: [job]) == true
        else { return false }
        return try insertRejection(
            db, try ledgerEntry(id, Row(values.mapValues { $0.databaseValue as (any DatabaseValueConvertible)? })),
            reason: reason)
    }

    /// Records `entry` as refused for `reason`, once; false when it was recorded already.
    @discardableResult
    private static func insertRejection(_ db: Database, _ entry: LedgerEntry, reason: String) throws -> Bool {
        try db.execute(
            sql: """
                INSERT OR IGNORE INTO ledger_rejected (job_id, executor_id, dot, stamp, reason, at)
                VALUES (?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                entry.jobID.ucpString, entry.executor.map { $0.ucpString }, entry.dot?.description,
                try json(entry.stamp), reason, entry.at,
            ])
        return db.changesCount > 0
    }
}
