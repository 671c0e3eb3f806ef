import Causal
import Foundation
import GRDB

/// The result ledger's records: each job's accepted result and the results refused.
extension BrokerStore {
    /// Decides about a result with ``ResultLedger/decide(_:given:)`` and records the decision,
    /// in one transaction: the first claim becomes the job's accepted entry, a rejected one is
    /// added to the rejections; a retry by the accepted executor records nothing. The claim's
    /// stamp is merged into the saved clock. Writes are serialised, so of two concurrent claims
    /// the first to commit wins.
    ///
    /// - Throws: ``BrokerStoreError/unknownJob(_:)`` for a job never accepted.
    func decideResult(_ claim: LedgerEntry) throws(BrokerStoreError) -> LedgerVerdict {
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
    func acceptedResult(of id: UUID) throws(BrokerStoreError) -> LedgerEntry? {
        try read { db in
            try Row.fetchOne(
                db, sql: "SELECT * FROM ledger_accepted WHERE job_id = ?", arguments: [id.ucpString]
            ).map { try Self.ledgerEntry(id, $0) }
        }
    }

    /// The ledger of job `id`: its accepted result and its rejections, oldest first.
    ///
    /// - Throws: ``BrokerStoreError/unknownJob(_:)`` for a job never accepted.
    func ledger(of id: UUID) throws(BrokerStoreError) -> LedgerView {
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

    /// The ledger entry of job `id` in a `ledger_accepted` or `ledger_rejected` row.
    static func ledgerEntry(_ id: UUID, _ row: Row) throws -> LedgerEntry {
        LedgerEntry(
            jobID: id, executor: (row["executor_id"] as String?).flatMap(UUID.init(uuidString:)),
            dot: (row["dot"] as String?).flatMap { Dot(header: $0) }, stamp: try decode(ClockStamp.self, row["stamp"]),
            at: row["at"])
    }
}
