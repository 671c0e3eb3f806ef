import Causal
import Foundation
import GRDB

/// The schema: the tables of a broker's own state and its result ledger, as migrations.
extension BrokerStore {
    /// The migrations, oldest first: the broker's state (v1), the result ledger (v2), federation (v3).
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
                    CREATE TABLE executors (
                        id TEXT PRIMARY KEY NOT NULL,
                        record TEXT NOT NULL,
                        hosts TEXT NOT NULL,
                        last_heartbeat REAL NOT NULL,
                        state TEXT NOT NULL
                    );
                    CREATE TABLE datastores (
                        id TEXT PRIMARY KEY NOT NULL,
                        address TEXT NOT NULL,
                        hosts TEXT NOT NULL,
                        last_seen REAL NOT NULL,
                        state TEXT NOT NULL
                    );
                    CREATE TABLE jobs (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT,
                        id TEXT NOT NULL UNIQUE,
                        info TEXT NOT NULL,
                        wait_for TEXT NOT NULL,
                        state TEXT NOT NULL,
                        executor_id TEXT,
                        emergency INTEGER NOT NULL,
                        submitted TEXT NOT NULL,
                        assigned TEXT,
                        done TEXT
                    );
                    CREATE INDEX jobs_state ON jobs(state, emergency);
                    CREATE INDEX jobs_executor ON jobs(executor_id);
                    CREATE TABLE job_waits (
                        job_id TEXT NOT NULL,
                        waits_for TEXT NOT NULL,
                        PRIMARY KEY (job_id, waits_for)
                    );
                    CREATE INDEX job_waits_for ON job_waits(waits_for);
                    CREATE TABLE data_locations (name TEXT PRIMARY KEY NOT NULL, datastore_id TEXT NOT NULL);
                    CREATE TABLE events (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT,
                        job_id TEXT NOT NULL,
                        kind TEXT NOT NULL,
                        stamp TEXT NOT NULL,
                        dot TEXT
                    );
                    CREATE INDEX events_job ON events(job_id);
                    """)
        }
        migrator.registerMigration("v2-result-ledger") { db in
            try db.execute(
                sql: """
                    CREATE TABLE ledger_accepted (
                        job_id TEXT PRIMARY KEY NOT NULL,
                        executor_id TEXT,
                        dot TEXT,
                        stamp TEXT NOT NULL,
                        at REAL NOT NULL
                    );
                    CREATE TABLE ledger_rejected (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        job_id TEXT NOT NULL,
                        executor_id TEXT,
                        dot TEXT,
                        stamp TEXT NOT NULL,
                        reason TEXT NOT NULL,
                        at REAL NOT NULL
                    );
                    CREATE INDEX ledger_rejected_job ON ledger_rejected(job_id);
                    """)
        }
        registerReplication(in: &migrator)
        return migrator
    }
}
