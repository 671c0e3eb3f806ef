import Causal
import Foundation
import GRDB

/// Datastores and where each piece of data lives.
extension BrokerStore {
    /// Records (or replaces) a datastore that passed its ping check.
    func registerDatastore(_ entry: DatastoreEntry) throws(BrokerStoreError) {
        try write { db in
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO datastores (id, address, hosts, last_seen, state)
                    VALUES (?, ?, ?, ?, 'active')
                    """,
                arguments: [
                    entry.id.ucpString, try Self.json(entry.address), try Self.json(entry.hosts),
                    entry.lastSeen,
                ])
        }
    }

    /// Records a heartbeat of an active datastore; false when no active datastore has that id.
    func heartbeatDatastore(_ id: UUID, at time: Double) throws(BrokerStoreError) -> Bool {
        try write { db in
            try db.execute(
                sql: "UPDATE datastores SET last_seen = ? WHERE id = ? AND state = 'active'",
                arguments: [time, id.ucpString])
            return db.changesCount > 0
        }
    }

    /// The active datastores.
    func datastores() throws(BrokerStoreError) -> [DatastoreEntry] {
        try read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT id, address, hosts, CASE WHEN home IS NULL THEN last_seen ELSE 1e308 END AS last_seen
                    FROM datastores WHERE state = 'active' ORDER BY id
                    """
            ).map { row in
                DatastoreEntry(
                    id: UUID(uuidString: row["id"])!, address: try Self.decode(Address.self, row["address"]),
                    hosts: try Self.decode([String].self, row["hosts"]), lastSeen: row["last_seen"])
            }
        }
    }

    /// Marks the datastores `ids` failed: they must register again (their data locations are
    /// kept: a datastore that comes back still holds its files).
    func failDatastores(_ ids: [UUID]) throws(BrokerStoreError) {
        guard !ids.isEmpty else { return }
        try write { db in
            for id in ids {
                try db.execute(
                    sql: "UPDATE datastores SET state = 'failed' WHERE id = ?", arguments: [id.ucpString])
            }
        }
    }

    // MARK: - Data locations

    /// Records that `name` is stored on datastore `datastore`.
    func setLocation(_ name: String, datastore: UUID) throws(BrokerStoreError) {
        try write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO data_locations (name, datastore_id) VALUES (?, ?)",
                arguments: [name, datastore.ucpString])
        }
    }

    /// The datastore that holds `name`, if known.
    func location(_ name: String) throws(BrokerStoreError) -> UUID? {
        try read { db in
            try String.fetchOne(db, sql: "SELECT datastore_id FROM data_locations WHERE name = ?", arguments: [name])
                .flatMap(UUID.init(uuidString:))
        }
    }

    /// Forgets where `name` is.
    func removeLocation(_ name: String) throws(BrokerStoreError) {
        try write { db in
            try db.execute(sql: "DELETE FROM data_locations WHERE name = ?", arguments: [name])
        }
    }

    /// Forgets where the data of job `jobID` is, except `<job_id>/result`.
    func removeJobDataLocations(_ jobID: UUID) throws(BrokerStoreError) {
        let prefix = jobID.ucpString + "/"
        try write { db in
            try db.execute(
                sql: "DELETE FROM data_locations WHERE substr(name, 1, ?) = ? AND name <> ?",
                arguments: [prefix.count, prefix, prefix + "result"])
        }
    }
}
