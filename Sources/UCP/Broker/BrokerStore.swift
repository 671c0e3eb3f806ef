import Causal
import Foundation
import GRDB

/// The broker's state in SQLite, at `<rootdir>/broker.sqlite` (WAL journal), so that a
/// restarted broker carries on where it stopped: its id and clock, executors, datastores, jobs
/// with their assignments and stamps, where each piece of data lives, and a log of job events.
///
/// Every state change is one transaction; the event it causes is logged and the broker's clock
/// saved in the same transaction, so the saved clock is never behind a logged stamp. Stamps come
/// from the caller (``Broker`` takes them from its ``NodeClock``), which keeps this type free of
/// time and network: it is tested without sockets. Thread-safe (GRDB serialises writes).
///
/// A library user opens it and hands it to ``Broker``; its queries are the package's own, one
/// extension per concern (`BrokerStore+Jobs.swift`, `+Ledger`, ..., the federation's in
/// `Federation/`).
public final class BrokerStore: Sendable {
    /// The database file.
    public let path: String
    let pool: DatabasePool

    /// Opens (creating if needed) the store in folder `rootdir` and brings its schema up to date.
    ///
    /// - Throws: ``BrokerStoreError`` when the folder or the database cannot be opened.
    public init(rootdir: String) throws(BrokerStoreError) {
        do {
            try FileManager.default.createDirectory(atPath: rootdir, withIntermediateDirectories: true)
        } catch {
            throw .cannotOpen(rootdir, "\(error)")
        }
        path = (rootdir as NSString).appendingPathComponent("broker.sqlite")
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        // WAL with synchronous=NORMAL: a commit survives the broker's crash or kill -9 (the WAL
        // is in the kernel's hands) and the database stays consistent after a power loss, which
        // may lose the last transactions. FULL would fsync every commit: several per job.
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
        } catch {
            throw .cannotOpen(path, "\(error)")
        }
    }

    /// Closes the database; the store may not be used afterwards.
    public func close() throws(BrokerStoreError) {
        do {
            try pool.close()
        } catch {
            throw .database("\(error)")
        }
    }

    // MARK: - Identity and clock

    /// The broker's id and saved clock. A new store takes `proposed` (or a fresh id) and keeps
    /// it; an existing store keeps its id.
    ///
    /// - Throws: ``BrokerStoreError/identityMismatch(stored:proposed:)`` when `proposed` differs
    ///   from the stored id (a data folder belongs to one broker).
    func identity(proposed: UUID?) throws(BrokerStoreError) -> (id: UUID, clock: [String: UInt64]) {
        try write { db in
            let stored = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'node_id'")
            if let stored, let id = UUID(uuidString: stored) {
                if let proposed, proposed != id {
                    throw BrokerStoreError.identityMismatch(stored: id, proposed: proposed)
                }
                let clock = try Self.loadClock(db)
                return (id, clock)
            }
            let id = proposed ?? UUID()
            try db.execute(
                sql: "INSERT OR REPLACE INTO meta (key, value) VALUES ('node_id', ?)",
                arguments: [id.ucpString])
            return (id, [:])
        }
    }

    /// Saves `clock`, merged (pointwise maximum) with the saved one.
    func saveClock(_ clock: [String: UInt64]) throws(BrokerStoreError) {
        try write { db in try Self.mergeClock(db, clock) }
    }

    /// The saved clock.
    func savedClock() throws(BrokerStoreError) -> [String: UInt64] {
        try read { db in try Self.loadClock(db) }
    }

    // MARK: - Transactions and JSON

    /// Runs `body` in a write transaction; any failure but a ``BrokerStoreError`` becomes
    /// ``BrokerStoreError/database(_:)``.
    func write<T>(_ body: (Database) throws -> T) throws(BrokerStoreError) -> T {
        do {
            return try pool.write(body)
        } catch let error as BrokerStoreError {
            throw error
        } catch {
            throw .database("\(error)")
        }
    }

    /// Runs `body` in a read transaction, failures as in ``write(_:)``.
    func read<T>(_ body: (Database) throws -> T) throws(BrokerStoreError) -> T {
        do {
            return try pool.read(body)
        } catch let error as BrokerStoreError {
            throw error
        } catch {
            throw .database("\(error)")
        }
    }

    /// The saved clock, in `db`.
    static func loadClock(_ db: Database) throws -> [String: UInt64] {
        guard let text = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'clock'") else { return [:] }
        return try decode([String: UInt64].self, text)
    }

    /// Saves `clock` merged (pointwise maximum) with the saved one, in `db`.
    static func mergeClock(_ db: Database, _ clock: [String: UInt64]) throws {
        var saved = try loadClock(db)
        var changed = false
        for (id, count) in clock where count > saved[id] ?? 0 {
            saved[id] = count
            changed = true
        }
        guard changed else { return }
        try db.execute(
            sql: "INSERT OR REPLACE INTO meta (key, value) VALUES ('clock', ?)", arguments: [try json(saved)])
    }

    /// `value` as JSON text, for a TEXT column.
    static func json(_ value: some Encodable) throws -> String {
        String(decoding: try UCPJSON.encode(value), as: UTF8.self)
    }

    /// A TEXT column's JSON as `T`.
    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try UCPJSON.decode(type, from: Data(text.utf8))
    }
}
