import Causal
import Foundation
import GRDB

/// A broker's metadata as it travels between federated brokers: one row of a replicated table,
/// or its deletion, with the version that orders it against other writes of the same row.
public struct ReplicaRow: Sendable, Hashable, Codable {
    /// The table.
    public var table: ReplicaTable
    /// The row's key (its id, or a data name).
    public var key: String
    /// The replicated columns, or nil when the row was deleted.
    public var values: [String: ReplicaValue]?
    /// The write's version.
    public var version: RowVersion

    /// A row.
    public init(table: ReplicaTable, key: String, values: [String: ReplicaValue]?, version: RowVersion) {
        self.table = table
        self.key = key
        self.values = values
        self.version = version
    }
}

/// The tables brokers replicate to each other. The job event log is not among them: it is each
/// broker's own record of what it did.
public enum ReplicaTable: String, Sendable, Hashable, Codable, CaseIterable {
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

/// One SQLite value in a ``ReplicaRow``: JSON null, a string, an integer or a real.
public enum ReplicaValue: Sendable, Hashable, Codable {
    /// NULL.
    case null
    /// TEXT.
    case text(String)
    /// INTEGER.
    case integer(Int64)
    /// REAL.
    case real(Double)

    init(_ value: DatabaseValue) {
        switch value.storage {
        case .null: self = .null
        case .int64(let i): self = .integer(i)
        case .double(let d): self = .real(d)
        case .string(let s): self = .text(s)
        case .blob(let b): self = .text(String(decoding: b, as: UTF8.self))
        }
    }

    var databaseValue: DatabaseValue {
        switch self {
        case .null: .null
        case .text(let s): s.databaseValue
        case .integer(let i): i.databaseValue
        case .real(let d): d.databaseValue
        }
    }

    /// Decodes a JSON scalar.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let i = try? c.decode(Int64.self) {
            self = .integer(i)
        } else if let d = try? c.decode(Double.self) {
            self = .real(d)
        } else {
            self = .text(try c.decode(String.self))
        }
    }

    /// Encodes a JSON scalar.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .text(let s): try c.encode(s)
        case .integer(let i): try c.encode(i)
        case .real(let d): try c.encode(d)
        }
    }
}

/// The version of a replicated write: the sum of the writing broker's clock entries when it sent
/// the write (``ClockStamp/entrySum``, which never wraps), then that broker's id.
///
/// Ordered by `(sum, origin)`. A write that happened after another (its broker had seen the
/// other's clock) has a larger sum, so the order extends the causal order to a total one: every
/// broker resolves concurrent writes of one row alike (last writer wins in that order).
public struct RowVersion: Sendable, Hashable, Codable, Comparable {
    /// Sum of the clock's entries.
    public var sum: UInt64
    /// The broker that wrote.
    public var origin: String

    /// A version.
    public init(sum: UInt64, origin: String) {
        self.sum = sum
        self.origin = origin
    }

    /// The version of a write stamped `stamp` by `origin`.
    public init(stamp: ClockStamp, origin: String) {
        self.init(sum: stamp.entrySum, origin: origin)
    }

    /// `(sum, origin)` order.
    public static func < (a: RowVersion, b: RowVersion) -> Bool {
        (a.sum, a.origin) < (b.sum, b.origin)
    }
}

/// Rows to broadcast, read from the store's outbox.
public struct ReplicaBatch: Sendable, Hashable {
    /// The rows, as they are now.
    public var rows: [ReplicaRow]
    /// The last outbox entry they cover: confirm it once they are sent.
    public var through: Int64
}

/// What applying a peer's rows changed here.
public struct ReplicaOutcome: Sendable, Hashable {
    /// Rows taken.
    public var applied = 0
    /// Rows refused by the merge rules (an older or losing write).
    public var superseded = 0
    /// Jobs that became this broker's to dispatch, or were released by a peer's `done`.
    public var readyJobs: [UUID] = []
    /// Ledger decisions replaced by a peer's earlier one (the local winner became a rejection).
    public var ledgerReversals: [UUID] = []
}

extension BrokerStore {
    /// The migration that adds federation: home and owner columns, the outbox that triggers fill
    /// while replication is on, and the versions of replicated rows.
    static func registerReplication(in migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v3-federation") { db in
            try db.execute(
                sql: """
                    ALTER TABLE executors ADD COLUMN home TEXT;
                    ALTER TABLE datastores ADD COLUMN home TEXT;
                    ALTER TABLE jobs ADD COLUMN owner TEXT;
                    CREATE TABLE replica_outbox (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, key TEXT NOT NULL);
                    CREATE TABLE replica_versions (
                        tbl TEXT NOT NULL, key TEXT NOT NULL, sum INTEGER NOT NULL, origin TEXT NOT NULL,
                        PRIMARY KEY (tbl, key));
                    CREATE UNIQUE INDEX ledger_rejected_claim
                        ON ledger_rejected(job_id, IFNULL(executor_id, ''), IFNULL(dot, ''), stamp);
                    """)
            let on = "(SELECT value FROM meta WHERE key = 'replicating') = '1'"
            for table in ReplicaTable.allCases {
                let t = table.rawValue
                let k = table.keyColumn
                let updateOf =
                    table.localColumns.isEmpty
                    ? "" : " OF " + table.columns.filter { !table.localColumns.contains($0) }.joined(separator: ", ")
                try db.execute(
                    sql: """
                        CREATE TRIGGER replicate_\(t)_insert AFTER INSERT ON \(t) WHEN \(on)
                        BEGIN INSERT INTO replica_outbox (tbl, key) VALUES ('\(t)', NEW.\(k)); END;
                        CREATE TRIGGER replicate_\(t)_update AFTER UPDATE\(updateOf) ON \(t) WHEN \(on)
                        BEGIN INSERT INTO replica_outbox (tbl, key) VALUES ('\(t)', NEW.\(k)); END;
                        CREATE TRIGGER replicate_\(t)_delete AFTER DELETE ON \(t) WHEN \(on)
                        BEGIN INSERT INTO replica_outbox (tbl, key) VALUES ('\(t)', OLD.\(k)); END;
                        """)
            }
        }
    }

    /// Turns replication on: from now on every change to a replicated table is put in the outbox.
    /// A new federation member also puts every existing row there, so that its peers learn what it
    /// knew before it joined.
    public func startReplicating() throws(BrokerStoreError) {
        try write { db in
            let was = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'replicating'")
            guard was != "1" else { return }
            try db.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES ('replicating', '1')")
            for table in ReplicaTable.allCases {
                try db.execute(
                    sql:
                        "INSERT INTO replica_outbox (tbl, key) SELECT '\(table.rawValue)', \(table.keyColumn) FROM \(table.rawValue)"
                )
            }
        }
    }

    /// Up to `limit` changed rows from the outbox, read as they are now, with `version` recorded
    /// as theirs (a deleted row keeps its version as a tombstone); nil when the outbox is empty.
    /// `selfID` is written where a row says "this broker".
    public func outboxBatch(version: RowVersion, selfID: String, limit: Int = 256) throws(BrokerStoreError)
        -> ReplicaBatch?
    {
        try write { db in
            let entries = try Row.fetchAll(
                db, sql: "SELECT seq, tbl, key FROM replica_outbox ORDER BY seq LIMIT ?", arguments: [limit])
            guard let last = entries.last else { return nil }
            var seen: Set<[String]> = []
            var rows: [ReplicaRow] = []
            for entry in entries {
                guard let table = ReplicaTable(rawValue: entry["tbl"]) else { continue }
                let key: String = entry["key"]
                guard seen.insert([table.rawValue, key]).inserted else { continue }
                let values = try Self.replicaValues(db, table, key: key, selfID: selfID)
                rows.append(ReplicaRow(table: table, key: key, values: values, version: version))
                if table != .ledgerAccepted && table != .ledgerRejected {
                    try Self.setVersion(db, table, key, version)
                }
            }
            return ReplicaBatch(rows: rows, through: last["seq"])
        }
    }

    /// Saves the emergency notice in force, so that a restarted broker keeps the mode.
    public func saveEmergencyNotice(_ notice: EmergencyNotice) throws(BrokerStoreError) {
        try write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO meta (key, value) VALUES ('emergency', ?)",
                arguments: [try Self.json(notice)])
        }
    }

    /// The emergency notice saved last, if any.
    public func emergencyNotice() throws(BrokerStoreError) -> EmergencyNotice? {
        try read { db in
            try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'emergency'").map {
                try Self.decode(EmergencyNotice.self, $0)
            }
        }
    }

    /// Forgets the outbox entries up to `seq`: their rows were sent.
    public func confirmOutbox(through seq: Int64) throws(BrokerStoreError) {
        try write { db in
            try db.execute(sql: "DELETE FROM replica_outbox WHERE seq <= ?", arguments: [seq])
        }
    }

    /// Entries waiting in the outbox.
    public func outboxCount() throws(BrokerStoreError) -> Int {
        try read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM replica_outbox") ?? 0 }
    }

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
    public func applyReplica(_ rows: [ReplicaRow], selfID: String, stamp: () -> ClockStamp) throws(BrokerStoreError)
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

    /// Gives queued job `id` to peer broker `peer` to dispatch (its owner from now on), logging
    /// `delegated`; false when the job is no longer queued here.
    public func delegate(_ id: UUID, to peer: String, stamp: ClockStamp) throws(BrokerStoreError) -> Bool {
        try write { db in
            try db.execute(
                sql: "UPDATE jobs SET owner = ? WHERE id = ? AND state = 'queued' AND owner IS NULL",
                arguments: [peer, id.ucpString])
            guard db.changesCount > 0 else { return false }
            try Self.log(db, JobEvent(jobID: id, kind: .delegated, stamp: stamp))
            try Self.mergeClock(db, stamp.clock)
            return true
        }
    }

    /// The active executors of peer brokers, with their home broker's id.
    public func peerExecutors() throws(BrokerStoreError) -> [(home: String, entry: ExecutorEntry)] {
        try read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT record, hosts, last_heartbeat, home FROM executors
                    WHERE state = 'active' AND home IS NOT NULL ORDER BY id
                    """
            ).map { row in
                (
                    row["home"],
                    ExecutorEntry(
                        record: try Self.decode(ExecutorRecord.self, row["record"]),
                        hosts: try Self.decode([String].self, row["hosts"]), lastHeartbeat: row["last_heartbeat"])
                )
            }
        }
    }

    /// How many jobs are assigned to executor `id` now (one indexed count, for the dispatch
    /// window's check).
    public func assignedCount(of id: UUID) throws(BrokerStoreError) -> Int {
        try read { db in
            try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM jobs WHERE executor_id = ? AND state = 'assigned'",
                arguments: [id.ucpString]) ?? 0
        }
    }

    /// How many jobs are assigned to each executor now.
    public func assignedCounts() throws(BrokerStoreError) -> [UUID: Int] {
        try read { db in
            var counts: [UUID: Int] = [:]
            for row in try Row.fetchAll(
                db,
                sql: "SELECT executor_id, COUNT(*) AS n FROM jobs WHERE state = 'assigned' GROUP BY executor_id")
            {
                if let id = (row["executor_id"] as String?).flatMap(UUID.init(uuidString:)) { counts[id] = row["n"] }
            }
            return counts
        }
    }

    /// Every replicated row, one line each, sorted, with "this broker" written as `selfID` and
    /// local-only columns left out: two brokers that converged give equal lists.
    public func replicaDigest(selfID: String) throws(BrokerStoreError) -> [String] {
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

    // MARK: - Merge rules

    private static func replicaValues(_ db: Database, _ table: ReplicaTable, key: String, selfID: String) throws
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

    private static func version(_ db: Database, _ table: ReplicaTable, _ key: String) throws -> RowVersion? {
        try Row.fetchOne(
            db, sql: "SELECT sum, origin FROM replica_versions WHERE tbl = ? AND key = ?",
            arguments: [table.rawValue, key]
        ).map { RowVersion(sum: UInt64(bitPattern: $0["sum"] as Int64), origin: $0["origin"]) }
    }

    private static func setVersion(_ db: Database, _ table: ReplicaTable, _ key: String, _ version: RowVersion) throws {
        try db.execute(
            sql: "INSERT OR REPLACE INTO replica_versions (tbl, key, sum, origin) VALUES (?, ?, ?, ?)",
            arguments: [table.rawValue, key, Int64(bitPattern: version.sum), version.origin])
    }

    /// Writes `values` (nil: deletes) as row `key` of `table`, keeping columns not replicated.
    private static func write(
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

    private static func applyLatest(_ db: Database, _ row: ReplicaRow, selfID: String) throws -> Bool {
        if let current = try version(db, row.table, row.key), current >= row.version { return false }
        try write(db, row.table, key: row.key, values: row.values, selfID: selfID)
        try setVersion(db, row.table, row.key, row.version)
        return true
    }

    private static func rank(_ values: [String: ReplicaValue]?) -> Int {
        guard let values else { return 3 }
        if values["state"] == .text(JobState.deleted.rawValue) { return 2 }
        if values["state"] == .text(JobState.done.rawValue) { return 1 }
        return 0
    }

    /// Applies a job row; returns the jobs it made ready here, or nil when the row lost.
    private static func applyJob(_ db: Database, _ row: ReplicaRow, selfID: String, stamp: () -> ClockStamp) throws
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

    private enum AcceptedOutcome { case taken, kept, replaced }

    private static func applyAccepted(_ db: Database, _ row: ReplicaRow) throws -> AcceptedOutcome {
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

    private static func applyRejected(_ db: Database, _ row: ReplicaRow) throws -> Bool {
        guard let values = row.values, case .text(let job)? = values["job_id"], let id = UUID(uuidString: job),
            case .text(let reason)? = values["reason"]
        else { return false }
        guard try Bool.fetchOne(db, sql: "SELECT COUNT(*) > 0 FROM jobs WHERE id = ?", arguments: [job]) == true
        else { return false }
        return try insertRejection(
            db, try ledgerEntry(id, Row(values.mapValues { $0.databaseValue as (any DatabaseValueConvertible)? })),
            reason: reason)
    }

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

    /// Moves to the queue every waiting job whose `wait_for` jobs are now all done, once job `key`
    /// is done, logging `released` for each; returns them.
    static func releaseWaiters(of key: String, _ db: Database, stamp: () -> ClockStamp) throws -> [UUID] {
        let ready = try String.fetchAll(
            db,
            sql: """
                SELECT j.id FROM jobs j JOIN job_waits w ON w.job_id = j.id
                WHERE w.waits_for = ? AND j.state = 'waiting'
                AND NOT EXISTS (
                    SELECT 1 FROM job_waits w2 JOIN jobs d ON d.id = w2.waits_for
                    WHERE w2.job_id = j.id AND d.done IS NULL)
                ORDER BY j.seq
                """, arguments: [key])
        var released: [UUID] = []
        for job in ready {
            let at = stamp()
            try db.execute(sql: "UPDATE jobs SET state = 'queued' WHERE id = ?", arguments: [job])
            try log(db, JobEvent(jobID: UUID(uuidString: job)!, kind: .released, stamp: at))
            try mergeClock(db, at.clock)
            released.append(UUID(uuidString: job)!)
        }
        return released
    }
}
