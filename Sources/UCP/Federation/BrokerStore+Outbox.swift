import Foundation
import GRDB

/// Rows to broadcast, read from the store's outbox.
struct ReplicaBatch: Sendable, Hashable {
    /// The rows, as they are now.
    var rows: [ReplicaRow]
    /// The last outbox entry they cover: confirm it once they are sent.
    var through: Int64
}

/// The outbox: the replicated rows changed here, waiting to be broadcast to the peers.
extension BrokerStore {
    /// Turns replication on: from now on every change to a replicated table is put in the outbox.
    /// A new federation member also puts every existing row there, so that its peers learn what it
    /// knew before it joined.
    func startReplicating() throws(BrokerStoreError) {
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
    func outboxBatch(version: RowVersion, selfID: String, limit: Int = 256) throws(BrokerStoreError)
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

    /// Forgets the outbox entries up to `seq`: their rows were sent.
    func confirmOutbox(through seq: Int64) throws(BrokerStoreError) {
        try write { db in
            try db.execute(sql: "DELETE FROM replica_outbox WHERE seq <= ?", arguments: [seq])
        }
    }

    /// Entries waiting in the outbox.
    func outboxCount() throws(BrokerStoreError) -> Int {
        try read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM replica_outbox") ?? 0 }
    }
}

extension BrokerStore {
    /// Calls `onCommit` after every committed transaction that put rows in the outbox, on the
    /// thread that committed it; keep it short (the federation's pump only takes note).
    func observeOutbox(_ onCommit: @escaping @Sendable () -> Void) {
        pool.add(transactionObserver: OutboxObserver(onCommit: onCommit), extent: .databaseLifetime)
    }
}

/// Tells the federation's pump that the outbox has rows to send: GRDB calls it for each insert
/// into `replica_outbox` (the triggers' and `startReplicating`'s), and it passes on one call per
/// committed transaction.
private final class OutboxObserver: TransactionObserver {
    let onCommit: @Sendable () -> Void
    private var inserted = false

    init(onCommit: @escaping @Sendable () -> Void) {
        self.onCommit = onCommit
    }

    func observes(eventsOfKind eventKind: DatabaseEventKind) -> Bool {
        if case .insert(let table) = eventKind { return table == "replica_outbox" }
        return false
    }

    func databaseDidChange(with event: DatabaseEvent) {
        inserted = true
        stopObservingDatabaseChangesUntilNextTransaction()
    }

    func databaseDidCommit(_ db: Database) {
        guard inserted else { return }
        inserted = false
        onCommit()
    }

    func databaseDidRollback(_ db: Database) {
        inserted = false
    }
}
