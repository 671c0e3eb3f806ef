import Foundation
import GRDB

/// The federation's schema: home and owner columns, the outbox and its triggers, row versions.
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
}
