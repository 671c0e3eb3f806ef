import Causal
import Foundation
import GRDB

/// What applying a peer's rows changed here.
struct ReplicaOutcome: Sendable, Hashable {
    /// Rows taken.
    var applied = 0
    /// Rows refused by the merge rules (an older or losing write).
    var superseded = 0
    /// Jobs that became this broker's to dispatch, or were released by a peer's `done`.
    var readyJobs: [UUID] = []
    /// Ledger decisions replaced by a peer's earlier one (the local winner became a rejection).
    var ledgerReversals: [UUID] = []
}

/// Replicated rows: applying a peer's, reading and writing them, and the digest that compares
/// two brokers.
extension BrokerStore {
    /// Applies rows a peer sent, in one transaction, by the merge rules:
    /// - executors, datastores, data locations: the write with the larger ``RowVersion`` wins
    ///   (a deletion too: its version stays as a tombstone);
    /// - jobs: a later state in `waiting|queued|assigned` < `done` < `deleted` wins whatever the
    ///   versions, so a job never goes back from done or deleted; within a rank the larger version
    ///   wins; a job newly done releases the jobs waiting for it, as a local `done` does; a job
    ///   removed at its origin (refused at submission, it never ran) is removed;
    /// - accepted results: the earlier decision wins, by the deciding broker's stamp (clock sum),
    ///   then the executor's id; a replaced local decision becomes a rejection;
    /// - rejections: a set; every one is kept once.
    ///
    /// Nothing applied here goes back to the outbox: the peers apply the same rows themselves.
    /// `stamp` stamps the events logged (released jobs).
    func applyReplica(_ rows: [ReplicaRow], selfID: String, stamp: () -> ClockStamp) throws(BrokerStoreError)
        -> ReplicaOutcome
    {
        try write { db in
            let before = try Int64.fetchOne(db, sql: "SELECT IFNULL(MAX(seq), 0) FROM replica_outbox") ?? 0
            var outcome = ReplicaOutcome()
            for row in rows {
                switch row.table {
                case .executors, .datastores, .dataLocations:
                    if try Self.applyLatest(db, row, selfID: selfID) {
                        outcome.applied += 1
                    } else {
                        outcome.superseded += 1
                    }
                case .jobs:
                    if let ready = try Self.applyJob(db, row, selfID: selfID, stamp: stamp) {
                        outcome.applied += 1
                        outcome.readyJobs += ready
                    } else {
                        outcome.superseded += 1
                    }
                case .ledgerAccepted:
                    switch try Self.applyAccepted(db, row) {
                    case .taken: outcome.applied += 1
                    case .kept: outcome.superseded += 1
                    case .replaced:
                        outcome.applied += 1
                        if let id = UUID(uuidString: row.key) { outcome.ledgerReversals.append(id) }
                    }
                case .ledgerRejected:
                    if try Self.applyRejected(db, row) { outcome.applied += 1 } else { outcome.superseded += 1 }
                }
            }
            try db.execute(sql: "DELETE FROM replica_outbox WHERE seq > ?", arguments: [before])
            return outcome
        }
    }

    /// Every replicated row, one line each, sorted, with "this broker" written as `selfID` and
    /// local-only columns left out: two brokers that converged give equal lists.
    func replicaDigest(selfID: String) throws(BrokerStoreError) -> [String] {
        try read { db in
            var lines: [String] = []
            for table in ReplicaTable.allCases {
                let keys: [String]
                if table == .ledgerRejected {
                    keys = try String.fetchAll(db, sql: "SELECT CAST(id AS TEXT) FROM ledger_rejected")
                } else {
                    keys = try String.fetchAll(db, sql: "SELECT \(table.keyColumn) FROM \(table.rawValue)")
                }
                for key in keys {
                    guard var values = try Self.replicaValues(db, table, key: key, selfID: selfID) else { continue }
                    for column in table.localColumns { values[column] = nil }
                    let body = values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                    lines.append("\(table.rawValue) \(table == .ledgerRejected ? "" : key) \(body)")
                }
            }
            return lines.sorted()
        }
    }

    // MARK: - Rows and versions

    /// Row `key` of `table` as it is replicated ("this broker" written as `selfID`), or nil
    /// when there is no such row.
    static func replicaValues(_ db: Database, _ table: ReplicaTable, key: String, selfID: String) throws
        -> [String: ReplicaValue]?
    {
        let columns = table.columns.joined(separator: ", ")
        guard
            let row = try Row.fetchOne(
                db, sql: "SELECT \(columns) FROM \(table.rawValue) WHERE \(table.keyColumn) = ?", arguments: [key])
        else { return nil }
        var values: [String: ReplicaValue] = [:]
        for column in table.columns {
            values[column] = ReplicaValue(row[column] as DatabaseValue)
        }
        if let home = table.homeColumn, values[home] == .null { values[home] = .text(selfID) }
        return values
    }

    /// The version of the last write of row `key` of `table` taken here, if any.
    static func version(_ db: Database, _ table: ReplicaTable, _ key: String) throws -> RowVersion? {
        try Row.fetchOne(
            db, sql: "SELECT sum, origin FROM replica_versions WHERE tbl = ? AND key = ?",
            arguments: [table.rawValue, key]
        ).map { RowVersion(sum: UInt64(bitPattern: $0["sum"] as Int64), origin: $0["origin"]) }
    }

    /// Records `version` as that of row `key` of `table`.
    static func setVersion(_ db: Database, _ table: ReplicaTable, _ key: String, _ version: RowVersion) throws {
        try db.execute(
            sql: "INSERT OR REPLACE INTO replica_versions (tbl, key, sum, origin) VALUES (?, ?, ?, ?)",
            arguments: [table.rawValue, key, Int64(bitPattern: version.sum), version.origin])
    }

    /// Writes `values` (nil: deletes) as row `key` of `table`, keeping columns not replicated.
    static func write(
        _ db: Database, _ table: ReplicaTable, key: String, values: [String: ReplicaValue]?, selfID: String
    )
        throws
    {
        guard var values else {
            try db.execute(sql: "DELETE FROM \(table.rawValue) WHERE \(table.keyColumn) = ?", arguments: [key])
            return
        }
        if let home = table.homeColumn, values[home] == .text(selfID) { values[home] = .null }
        let columns = table.columns.filter { values[$0] != nil }
        let names = ([table.keyColumn] + columns).joined(separator: ", ")
        let marks = Array(repeating: "?", count: columns.count + 1).joined(separator: ", ")
        let updates = columns.map { "\($0) = excluded.\($0)" }.joined(separator: ", ")
        var arguments = StatementArguments([key])
        arguments += StatementArguments(columns.map { values[$0]!.databaseValue })
        try db.execute(
            sql: """
                INSERT INTO \(table.rawValue) (\(names)) VALUES (\(marks))
                ON CONFLICT(\(table.keyColumn)) DO UPDATE SET \(updates)
                """, arguments: arguments)
    }
}
