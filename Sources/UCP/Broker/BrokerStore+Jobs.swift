import Causal
import Foundation
import GRDB

/// Jobs: submission, waits, assignment, done and deletion, with their event log.
extension BrokerStore {
    /// The jobs among `ids` that the broker has never accepted.
    func unknownJobs(_ ids: [UUID]) throws(BrokerStoreError) -> [UUID] {
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
    func submit(_ job: JobRecord, cause: Dot?) throws(BrokerStoreError) -> JobState {
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
    func job(_ id: UUID) throws(BrokerStoreError) -> JobRecord? {
        try read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM jobs WHERE id = ?", arguments: [id.ucpString]).map(
                Self.job(from:))
        }
    }

    /// The queued jobs this broker dispatches (not those a peer broker owns), most urgent first,
    /// then in the order they were accepted; with `minimumLevel`, only jobs at that level or above
    /// (an emergency mode holds the others back).
    func queuedJobs(limit: Int = 1000, minimumLevel: EmergencyLevel? = nil) throws(BrokerStoreError)
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
    func assign(_ id: UUID, to executor: UUID, stamp: ClockStamp) throws(BrokerStoreError) -> Bool {
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
    func refuse(_ id: UUID, stamp: ClockStamp) throws(BrokerStoreError) {
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
    struct DoneOutcome: Sendable, Hashable {
        /// False when the job was already done (nothing changed).
        var changed: Bool
        /// Waiting jobs released to the queue because their last `wait_for` job is now done.
        var released: [UUID]
    }

    /// Marks a job done (a deleted job keeps its state but counts as done from now on), logs
    /// `done`, and releases every waiting job whose `wait_for` jobs are now all done (logging
    /// `released` for each). Doing it twice changes nothing.
    ///
    /// - Throws: ``BrokerStoreError/unknownJob(_:)`` for a job never accepted.
    func markDone(_ id: UUID, stamp: () -> ClockStamp, cause: Dot?) throws(BrokerStoreError) -> DoneOutcome {
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
    func delete(_ id: UUID, stamp: ClockStamp, cause: Dot?) throws(BrokerStoreError) -> JobRecord {
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
    func log(_ event: JobEvent) throws(BrokerStoreError) {
        try write { db in
            try Self.log(db, event)
            try Self.mergeClock(db, event.stamp.clock)
        }
    }

    /// True when the result of job `id` was delivered: forwarded to its `result_addr` or stored
    /// on a datastore (a `result_forwarded` or `result_stored` event is logged).
    func resultDelivered(_ id: UUID) throws(BrokerStoreError) -> Bool {
        try read { db in
            try Bool.fetchOne(
                db, sql: "SELECT EXISTS (SELECT 1 FROM events WHERE job_id = ? AND kind IN (?, ?))",
                arguments: [
                    id.ucpString, JobEvent.Kind.resultForwarded.rawValue, JobEvent.Kind.resultStored.rawValue,
                ]) ?? false
        }
    }

    /// The events of job `id`, oldest first.
    func events(of id: UUID) throws(BrokerStoreError) -> [JobEvent] {
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
    func jobCounts() throws(BrokerStoreError) -> [JobState: Int] {
        try read { db in
            var counts = Dictionary(uniqueKeysWithValues: JobState.allCases.map { ($0, 0) })
            for row in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM jobs GROUP BY state") {
                if let state = JobState(rawValue: row["state"]) { counts[state] = row["n"] as Int }
            }
            return counts
        }
    }

    // MARK: - Counts for the dispatch window

    /// How many jobs are assigned to executor `id` now (one indexed count, for the dispatch
    /// window's check).
    func assignedCount(of id: UUID) throws(BrokerStoreError) -> Int {
        try read { db in
            try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM jobs WHERE executor_id = ? AND state = 'assigned'",
                arguments: [id.ucpString]) ?? 0
        }
    }

    /// How many jobs are assigned to each executor now.
    func assignedCounts() throws(BrokerStoreError) -> [UUID: Int] {
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

    // MARK: - Rows

    /// The job in a `jobs` row.
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

    /// Appends `event` to the job event log, in `db`.
    static func log(_ db: Database, _ event: JobEvent) throws {
        try db.execute(
            sql: "INSERT INTO events (job_id, kind, stamp, dot) VALUES (?, ?, ?, ?)",
            arguments: [
                event.jobID.ucpString, event.kind.rawValue, try json(event.stamp), event.cause?.description,
            ])
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
