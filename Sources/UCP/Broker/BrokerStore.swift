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

    // MARK: - Identity and clock

    /// The broker's id and saved clock. A new store takes `proposed` (or a fresh id) and keeps
    /// it; an existing store keeps its id.
    ///
    /// - Throws: ``BrokerStoreError/identityMismatch(stored:proposed:)`` when `proposed` differs
    ///   from the stored id (a data folder belongs to one broker).
    public func identity(proposed: UUID?) throws(BrokerStoreError) -> (id: UUID, clock: [String: UInt64]) {
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
    public func saveClock(_ clock: [String: UInt64]) throws(BrokerStoreError) {
        try write { db in try Self.mergeClock(db, clock) }
    }

    /// The saved clock.
    public func savedClock() throws(BrokerStoreError) -> [String: UInt64] {
        try read { db in try Self.loadClock(db) }
    }

    // MARK: - Executors

    /// Records (or replaces) an executor that passed its ping check, as active.
    public func registerExecutor(_ entry: ExecutorEntry, clock: [String: UInt64]) throws(BrokerStoreError) {
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
    public func heartbeatExecutor(_ id: UUID, capabilities: Capabilities, at time: Double) throws(BrokerStoreError)
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
    public func executors() throws(BrokerStoreError) -> [ExecutorEntry] {
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
    public struct FailOutcome: Sendable, Hashable {
        /// Jobs put back in the queue, for other executors.
        public var redeployed: [UUID] = []
        /// Jobs left assigned because the ledger already accepted their result from the failed
        /// executor itself: only its `done` is missing, which the caller records
        /// (``markDone(_:stamp:cause:)``).
        public var finished: [UUID] = []
    }

    /// Marks the executors `ids` failed (they must register again; their heartbeats are
    /// refused) and puts their assigned jobs back in the queue, logging a `redeployed` event
    /// stamped by `stamp()` for each, except the jobs whose result the ledger accepted from that
    /// executor. One transaction.
    public func failExecutors(_ ids: [UUID], stamp: () -> ClockStamp) throws(BrokerStoreError) -> FailOutcome {
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

    // MARK: - Datastores

    /// Records (or replaces) a datastore that passed its ping check.
    public func registerDatastore(_ entry: DatastoreEntry) throws(BrokerStoreError) {
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
    public func heartbeatDatastore(_ id: UUID, at time: Double) throws(BrokerStoreError) -> Bool {
        try write { db in
            try db.execute(
                sql: "UPDATE datastores SET last_seen = ? WHERE id = ? AND state = 'active'",
                arguments: [time, id.ucpString])
            return db.changesCount > 0
        }
    }

    /// The active datastores.
    public func datastores() throws(BrokerStoreError) -> [DatastoreEntry] {
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
    public func failDatastores(_ ids: [UUID]) throws(BrokerStoreError) {
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
    public func setLocation(_ name: String, datastore: UUID) throws(BrokerStoreError) {
        try write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO data_locations (name, datastore_id) VALUES (?, ?)",
                arguments: [name, datastore.ucpString])
        }
    }

    /// The datastore that holds `name`, if known.
    public func location(_ name: String) throws(BrokerStoreError) -> UUID? {
        try read { db in
            try String.fetchOne(db, sql: "SELECT datastore_id FROM data_locations WHERE name = ?", arguments: [name])
                .flatMap(UUID.init(uuidString:))
        }
    }

    /// Forgets where `name` is.
    public func removeLocation(_ name: String) throws(BrokerStoreError) {
        try write { db in
            try db.execute(sql: "DELETE FROM data_locations WHERE name = ?", arguments: [name])
        }
    }

    /// Forgets where the data of job `jobID` is, except `<job_id>/result`.
    public func removeJobDataLocations(_ jobID: UUID) throws(BrokerStoreError) {
        let prefix = jobID.ucpString + "/"
        try write { db in
            try db.execute(
                sql: "DELETE FROM data_locations WHERE substr(name, 1, ?) = ? AND name <> ?",
                arguments: [prefix.count, prefix, prefix + "result"])
        }
    }

    // MARK: - Jobs

    /// The jobs among `ids` that the broker has never accepted.
    public func unknownJobs(_ ids: [UUID]) throws(BrokerStoreError) -> [UUID] {
        try read { db in
            try ids.filter { id in
                try Bool.fetchOne(
                    db, sql: "SELECT COUNT(*) > 0 FROM jobs WHERE id = ?", arguments: [id.ucpString])
                    != true
            }
        }
    }

    /// Records a new job, `waiting` when some job in its `wait_for` is not done yet and `queued`
    /// otherwise (the state in `job` is ignored), and logs `submitted`; returns the state given.
    ///
    /// A job submitted again while it is `assigned` is being handed back by its executor (which
    /// is shutting down and hands back what it has not started): it goes back to the queue, as a
    /// failed executor's jobs do, with a `requeued` event, and `queued` is returned.
    ///
    /// - Throws: ``BrokerStoreError/duplicateJob(_:)`` when a job with that id exists (unless it
    ///   was deleted before it ran, which frees the id, or is handed back);
    ///   ``BrokerStoreError/unknownJobs(_:)`` when `wait_for` names jobs never submitted.
    @discardableResult
    public func submit(_ job: JobRecord, cause: Dot?) throws(BrokerStoreError) -> JobState {
        try write { db in
            let key = job.id.ucpString
            if let row = try Row.fetchOne(db, sql: "SELECT state, done FROM jobs WHERE id = ?", arguments: [key]) {
                let state: String = row["state"]
                let done: String? = row["done"]
                if state == JobState.assigned.rawValue, done == nil {
                    try db.execute(
                        sql: "UPDATE jobs SET state = 'queued', executor_id = NULL, assigned = NULL WHERE id = ?",
                        arguments: [key])
                    try Self.log(db, JobEvent(jobID: job.id, kind: .requeued, stamp: job.submitted, cause: cause))
                    try Self.mergeClock(db, job.submitted.clock)
                    return .queued
                }
                guard state == JobState.deleted.rawValue, done == nil else {
                    throw BrokerStoreError.duplicateJob(job.id)
                }
                try db.execute(sql: "DELETE FROM jobs WHERE id = ?", arguments: [key])
                try db.execute(sql: "DELETE FROM job_waits WHERE job_id = ?", arguments: [key])
            }
            let waits = Array(Set(job.waitFor.map { $0.ucpString })).sorted()
            var unknown: [UUID] = []
            var pending = false
            for id in waits {
                guard let row = try Row.fetchOne(db, sql: "SELECT done FROM jobs WHERE id = ?", arguments: [id])
                else {
                    unknown.append(UUID(uuidString: id)!)
                    continue
                }
                if (row["done"] as String?) == nil { pending = true }
            }
            if !unknown.isEmpty { throw BrokerStoreError.unknownJobs(unknown) }
            let state: JobState = pending ? .waiting : .queued
            try db.execute(
                sql: """
                    INSERT INTO jobs (id, info, wait_for, state, executor_id, emergency, submitted, assigned, done)
                    VALUES (?, ?, ?, ?, NULL, ?, ?, NULL, NULL)
                    """,
                arguments: [
                    key, try Self.json(job.info), try Self.json(waits), state.rawValue,
                    Int(job.info.emergency.rawValue), try Self.json(job.submitted),
                ])
            for id in waits {
                try db.execute(sql: "INSERT INTO job_waits (job_id, waits_for) VALUES (?, ?)", arguments: [key, id])
            }
            try Self.log(db, JobEvent(jobID: job.id, kind: .submitted, stamp: job.submitted, cause: cause))
            return state
        }
    }

    /// A job, or nil when the broker never accepted it.
    public func job(_ id: UUID) throws(BrokerStoreError) -> JobRecord? {
        try read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM jobs WHERE id = ?", arguments: [id.ucpString]).map(
                Self.job(from:))
        }
    }

    /// The queued jobs this broker dispatches (not those a peer broker owns), most urgent first,
    /// then in the order they were accepted; with `minimumLevel`, only jobs at that level or above
    /// (an emergency mode holds the others back).
    public func queuedJobs(limit: Int = 1000, minimumLevel: EmergencyLevel? = nil) throws(BrokerStoreError)
        -> [JobRecord]
    {
        try read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM jobs WHERE state = 'queued' AND owner IS NULL AND emergency >= ?
                    ORDER BY emergency DESC, seq LIMIT ?
                    """,
                arguments: [Int(minimumLevel?.rawValue ?? 0), limit]
            ).map(Self.job(from:))
        }
    }

    /// Gives a queued job to `executor`, logging `assigned`; false (and nothing changed) when
    /// the job is no longer queued (done, deleted or assigned meanwhile) or the executor is no
    /// longer active (failed while the job was being sent to it). Both are checked in the same
    /// transaction as the assignment, so a job is never assigned to a failed executor.
    public func assign(_ id: UUID, to executor: UUID, stamp: ClockStamp) throws(BrokerStoreError) -> Bool {
        try write { db in
            try db.execute(
                sql: """
                    UPDATE jobs SET state = 'assigned', executor_id = ?1, assigned = ?2 WHERE id = ?3 AND state = 'queued'
                    AND EXISTS (SELECT 1 FROM executors WHERE id = ?1 AND state = 'active')
                    """,
                arguments: [executor.ucpString, try Self.json(stamp), id.ucpString])
            guard db.changesCount > 0 else { return false }
            try Self.log(db, JobEvent(jobID: id, kind: .assigned, stamp: stamp))
            try Self.mergeClock(db, stamp.clock)
            return true
        }
    }

    /// Drops a job that no executor took at submission (UCP answers 503 and keeps nothing),
    /// logging `refused`, unless it changed state meanwhile.
    public func refuse(_ id: UUID, stamp: ClockStamp) throws(BrokerStoreError) {
        try write { db in
            let key = id.ucpString
            try db.execute(sql: "DELETE FROM jobs WHERE id = ? AND state = 'queued'", arguments: [key])
            guard db.changesCount > 0 else { return }
            try db.execute(sql: "DELETE FROM job_waits WHERE job_id = ?", arguments: [key])
            try Self.log(db, JobEvent(jobID: id, kind: .refused, stamp: stamp))
            try Self.mergeClock(db, stamp.clock)
        }
    }

    /// What ``markDone(_:stamp:cause:)`` did.
    public struct DoneOutcome: Sendable, Hashable {
        /// False when the job was already done (nothing changed).
        public var changed: Bool
        /// Waiting jobs released to the queue because their last `wait_for` job is now done.
        public var released: [UUID]
    }

    /// Marks a job done (a deleted job keeps its state but counts as done from now on), logs
    /// `done`, and releases every waiting job whose `wait_for` jobs are now all done (logging
    /// `released` for each). Doing it twice changes nothing.
    ///
    /// - Throws: ``BrokerStoreError/unknownJob(_:)`` for a job never accepted.
    public func markDone(_ id: UUID, stamp: () -> ClockStamp, cause: Dot?) throws(BrokerStoreError) -> DoneOutcome {
        try write { db in
            let key = id.ucpString
            guard let row = try Row.fetchOne(db, sql: "SELECT state, done FROM jobs WHERE id = ?", arguments: [key])
            else { throw BrokerStoreError.unknownJob(id) }
            if (row["done"] as String?) != nil { return DoneOutcome(changed: false, released: []) }
            let now = stamp()
            var last = now
            try db.execute(
                sql: """
                    UPDATE jobs SET done = ?, state = CASE WHEN state = 'deleted' THEN 'deleted' ELSE 'done' END
                    WHERE id = ?
                    """,
                arguments: [try Self.json(now), key])
            try Self.log(db, JobEvent(jobID: id, kind: .done, stamp: now, cause: cause))
            let released = try Self.releaseWaiters(of: key, db) {
                last = stamp()
                return last
            }
            try Self.mergeClock(db, last.clock)
            return DoneOutcome(changed: true, released: released)
        }
    }

    /// Marks a job deleted and logs `deleted`; returns the job as it was. Deleting it again
    /// changes nothing.
    ///
    /// - Throws: ``BrokerStoreError/unknownJob(_:)`` for a job never accepted.
    public func delete(_ id: UUID, stamp: ClockStamp, cause: Dot?) throws(BrokerStoreError) -> JobRecord {
        try write { db in
            let key = id.ucpString
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM jobs WHERE id = ?", arguments: [key]) else {
                throw BrokerStoreError.unknownJob(id)
            }
            let job = try Self.job(from: row)
            guard job.state != .deleted else { return job }
            try db.execute(sql: "UPDATE jobs SET state = 'deleted' WHERE id = ?", arguments: [key])
            try Self.log(db, JobEvent(jobID: id, kind: .deleted, stamp: stamp, cause: cause))
            try Self.mergeClock(db, stamp.clock)
            return job
        }
    }

    /// Logs an event that changes no state (results forwarded or stored).
    public func log(_ event: JobEvent) throws(BrokerStoreError) {
        try write { db in
            try Self.log(db, event)
            try Self.mergeClock(db, event.stamp.clock)
        }
    }

    /// True when the result of job `id` was delivered: forwarded to its `result_addr` or stored
    /// on a datastore (a `result_forwarded` or `result_stored` event is logged).
    public func resultDelivered(_ id: UUID) throws(BrokerStoreError) -> Bool {
        try read { db in
            try Bool.fetchOne(
                db, sql: "SELECT EXISTS (SELECT 1 FROM events WHERE job_id = ? AND kind IN (?, ?))",
                arguments: [
                    id.ucpString, JobEvent.Kind.resultForwarded.rawValue, JobEvent.Kind.resultStored.rawValue,
                ]) ?? false
        }
    }

    /// The events of job `id`, oldest first.
    public func events(of id: UUID) throws(BrokerStoreError) -> [JobEvent] {
        try read { db in
            try Row.fetchAll(
                db, sql: "SELECT kind, stamp, dot FROM events WHERE job_id = ? ORDER BY seq",
                arguments: [id.ucpString]
            ).map { row in
                guard let kind = JobEvent.Kind(rawValue: row["kind"]) else {
                    throw BrokerStoreError.database("unknown event kind \(row["kind"] as String)")
                }
                return JobEvent(
                    jobID: id, kind: kind, stamp: try Self.decode(ClockStamp.self, row["stamp"]),
                    cause: (row["dot"] as String?).flatMap { Dot(header: $0) })
            }
        }
    }

    /// How many jobs are in each state (every state present, 0 when none).
    public func jobCounts() throws(BrokerStoreError) -> [JobState: Int] {
        try read { db in
            var counts = Dictionary(uniqueKeysWithValues: JobState.allCases.map { ($0, 0) })
            for row in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM jobs GROUP BY state") {
                if let state = JobState(rawValue: row["state"]) { counts[state] = row["n"] as Int }
            }
            return counts
        }
    }

    // MARK: - Result ledger

    /// Decides about a result with ``ResultLedger/decide(_:given:)`` and records the decision,
    /// in one transaction: the first claim becomes the job's accepted entry, a rejected one is
    /// added to the rejections; a retry by the accepted executor records nothing. The claim's
    /// stamp is merged into the saved clock. Writes are serialised, so of two concurrent claims
    /// the first to commit wins.
    ///
    /// - Throws: ``BrokerStoreError/unknownJob(_:)`` for a job never accepted.
    public func decideResult(_ claim: LedgerEntry) throws(BrokerStoreError) -> LedgerVerdict {
        try write { db in
            let key = claim.jobID.ucpString
            guard try Bool.fetchOne(db, sql: "SELECT COUNT(*) > 0 FROM jobs WHERE id = ?", arguments: [key]) == true
            else { throw BrokerStoreError.unknownJob(claim.jobID) }
            let accepted = try Row.fetchOne(db, sql: "SELECT * FROM ledger_accepted WHERE job_id = ?", arguments: [key])
                .map { try Self.ledgerEntry(claim.jobID, $0) }
            let verdict = ResultLedger.decide(claim, given: accepted)
            switch verdict {
            case .accepted(let entry):
                try db.execute(
                    sql: "INSERT INTO ledger_accepted (job_id, executor_id, dot, stamp, at) VALUES (?, ?, ?, ?, ?)",
                    arguments: [
                        key, entry.executor.map { $0.ucpString }, entry.dot?.description,
                        try Self.json(entry.stamp), entry.at,
                    ])
            case .retried:
                break
            case .rejected(let rejection, _):
                let entry = rejection.entry
                try db.execute(
                    sql: """
                        INSERT INTO ledger_rejected (job_id, executor_id, dot, stamp, reason, at)
                        VALUES (?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        key, entry.executor.map { $0.ucpString }, entry.dot?.description,
                        try Self.json(entry.stamp), rejection.reason, entry.at,
                    ])
            }
            try Self.mergeClock(db, claim.stamp.clock)
            return verdict
        }
    }

    /// The accepted result of job `id`, if any.
    public func acceptedResult(of id: UUID) throws(BrokerStoreError) -> LedgerEntry? {
        try read { db in
            try Row.fetchOne(
                db, sql: "SELECT * FROM ledger_accepted WHERE job_id = ?", arguments: [id.ucpString]
            ).map { try Self.ledgerEntry(id, $0) }
        }
    }

    /// The ledger of job `id`: its accepted result and its rejections, oldest first.
    ///
    /// - Throws: ``BrokerStoreError/unknownJob(_:)`` for a job never accepted.
    public func ledger(of id: UUID) throws(BrokerStoreError) -> LedgerView {
        try read { db in
            let key = id.ucpString
            guard try Bool.fetchOne(db, sql: "SELECT COUNT(*) > 0 FROM jobs WHERE id = ?", arguments: [key]) == true
            else { throw BrokerStoreError.unknownJob(id) }
            let accepted = try Row.fetchOne(db, sql: "SELECT * FROM ledger_accepted WHERE job_id = ?", arguments: [key])
                .map { try Self.ledgerEntry(id, $0) }
            let rejected = try Row.fetchAll(
                db, sql: "SELECT * FROM ledger_rejected WHERE job_id = ? ORDER BY id", arguments: [key]
            ).map { LedgerRejection(try Self.ledgerEntry(id, $0), reason: $0["reason"]) }
            return LedgerView(accepted: accepted, rejected: rejected)
        }
    }

    // MARK: - Status

    /// An executor as `GET /status` shows it: its entry, whether it was declared failed, and how
    /// many jobs are assigned to it.
    public struct ExecutorSummary: Sendable, Hashable {
        /// The executor as last registered or heard of.
        public var entry: ExecutorEntry
        /// True when it was declared failed (it must register again).
        public var failed: Bool
        /// How many jobs are `assigned` to it.
        public var assignedJobs: Int
    }

    /// Every executor ever registered with this broker (not a peer broker's), active or failed,
    /// with its assigned job count, by id.
    public func executorSummaries() throws(BrokerStoreError) -> [ExecutorSummary] {
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
    public func jobCounts(in state: JobState) throws(BrokerStoreError) -> [EmergencyLevel: Int] {
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
    public func ledgerCounts() throws(BrokerStoreError) -> (accepted: Int, rejected: Int) {
        try read { db in
            let accepted = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM ledger_accepted") ?? 0
            let rejected = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM ledger_rejected") ?? 0
            return (accepted, rejected)
        }
    }

    /// How many times a job was redeployed because its executor failed (`redeployed` events).
    public func redeploymentCount() throws(BrokerStoreError) -> Int {
        try read { db in
            try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM events WHERE kind = ?", arguments: [JobEvent.Kind.redeployed.rawValue])
                ?? 0
        }
    }

    // MARK: - Internals

    static func ledgerEntry(_ id: UUID, _ row: Row) throws -> LedgerEntry {
        LedgerEntry(
            jobID: id, executor: (row["executor_id"] as String?).flatMap(UUID.init(uuidString:)),
            dot: (row["dot"] as String?).flatMap { Dot(header: $0) }, stamp: try decode(ClockStamp.self, row["stamp"]),
            at: row["at"])
    }

    func write<T>(_ body: (Database) throws -> T) throws(BrokerStoreError) -> T {
        do {
            return try pool.write(body)
        } catch let error as BrokerStoreError {
            throw error
        } catch {
            throw .database("\(error)")
        }
    }

    func read<T>(_ body: (Database) throws -> T) throws(BrokerStoreError) -> T {
        do {
            return try pool.read(body)
        } catch let error as BrokerStoreError {
            throw error
        } catch {
            throw .database("\(error)")
        }
    }

    static func job(from row: Row) throws -> JobRecord {
        let assigned: String? = row["assigned"]
        let done: String? = row["done"]
        let executor: String? = row["executor_id"]
        guard let state = JobState(rawValue: row["state"]) else {
            throw BrokerStoreError.database("unknown job state \(row["state"] as String)")
        }
        return JobRecord(
            id: UUID(uuidString: row["id"])!, info: try decode(JobInfo.self, row["info"]),
            waitFor: try decode([String].self, row["wait_for"]).compactMap(UUID.init(uuidString:)), state: state,
            executorID: executor.flatMap(UUID.init(uuidString:)),
            submitted: try decode(ClockStamp.self, row["submitted"]),
            assigned: try assigned.map { try decode(ClockStamp.self, $0) },
            done: try done.map { try decode(ClockStamp.self, $0) })
    }

    static func log(_ db: Database, _ event: JobEvent) throws {
        try db.execute(
            sql: "INSERT INTO events (job_id, kind, stamp, dot) VALUES (?, ?, ?, ?)",
            arguments: [
                event.jobID.ucpString, event.kind.rawValue, try json(event.stamp), event.cause?.description,
            ])
    }

    static func loadClock(_ db: Database) throws -> [String: UInt64] {
        guard let text = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'clock'") else { return [:] }
        return try decode([String: UInt64].self, text)
    }

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

    static func json(_ value: some Encodable) throws -> String {
        String(decoding: try UCPJSON.encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try UCPJSON.decode(type, from: Data(text.utf8))
    }
}

/// A failure of the broker's database, or a state change it refuses.
public enum BrokerStoreError: Error, Hashable, CustomStringConvertible {
    /// The folder or database file could not be opened.
    case cannotOpen(String, String)
    /// SQLite failed.
    case database(String)
    /// The data folder belongs to another broker.
    case identityMismatch(stored: UUID, proposed: UUID)
    /// A job with that id was already submitted.
    case duplicateJob(UUID)
    /// No job with that id was ever submitted.
    case unknownJob(UUID)
    /// A `wait_for` names jobs never submitted.
    case unknownJobs([UUID])

    /// One line naming what failed.
    public var description: String {
        switch self {
        case .cannotOpen(let path, let why): "cannot open the broker database at \(path): \(why)"
        case .database(let why): "broker database failure: \(why)"
        case .identityMismatch(let stored, let proposed):
            "the data folder belongs to broker \(stored.ucpString), not \(proposed.ucpString)"
        case .duplicateJob(let id): "job \(id.ucpString) was already submitted"
        case .unknownJob(let id): "no job \(id.ucpString)"
        case .unknownJobs(let ids):
            "wait_for names unknown jobs: \(ids.map { $0.ucpString }.joined(separator: ", "))"
        }
    }
}
