import Causal
import CoreMetrics
import Foundation

/// One result for one job as the ledger sees it: who sent it, with which dot, and the broker's
/// stamp when it decided. The accepted entry of a job is the ledger's decision, a plain value
/// so that it can be replicated to other brokers.
///
/// Encodes as `{"job_id", "executor", "dot": "node:seq", "stamp": {"clock": {...}}, "at"}`
/// (`executor` and `dot` null when unknown).
public struct LedgerEntry: Sendable, Hashable, Codable {
    /// The job.
    public var jobID: UUID
    /// The executor that sent the result: the node of the request's dot, or, for a request
    /// without one (a plain UCP executor), the executor the job was assigned to; nil when
    /// neither tells.
    public var executor: UUID?
    /// The dot of the request that carried the result.
    public var dot: Dot?
    /// The broker's clock when it decided (its own entry ticked for the decision).
    public var stamp: ClockStamp
    /// The broker's wall-clock time when it decided, in seconds since 1970 (informative only).
    public var at: Double

    /// An entry.
    public init(jobID: UUID, executor: UUID?, dot: Dot?, stamp: ClockStamp, at: Double) {
        self.jobID = jobID
        self.executor = executor
        self.dot = dot
        self.stamp = stamp
        self.at = at
    }

    private enum CodingKeys: String, CodingKey {
        case jobID = "job_id"
        case executor, dot, stamp, at
    }

    /// Decodes the JSON form.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        jobID = try c.decode(UUID.self, forKey: .jobID)
        executor = try c.decodeIfPresent(UUID.self, forKey: .executor)
        dot = try c.decodeIfPresent(String.self, forKey: .dot).flatMap { Dot(header: $0) }
        stamp = try c.decode(ClockStamp.self, forKey: .stamp)
        at = try c.decode(Double.self, forKey: .at)
    }

    /// Encodes the JSON form, nulls included.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(jobID.ucpString, forKey: .jobID)
        try c.encode(executor.map { $0.ucpString }, forKey: .executor)
        try c.encode(dot?.description, forKey: .dot)
        try c.encode(stamp, forKey: .stamp)
        try c.encode(at, forKey: .at)
    }
}

/// A result the ledger turned down, as it is recorded: the rejected sender, the broker's stamp
/// of the rejection and why.
///
/// Encodes as `{"executor", "dot": "node:seq", "stamp": {...}, "reason", "at"}`.
public struct LedgerRejection: Sendable, Hashable, Codable {
    /// The result turned down.
    public var entry: LedgerEntry
    /// Why, for the log and the `detail` of the 409.
    public var reason: String

    /// A rejection.
    public init(_ entry: LedgerEntry, reason: String) {
        self.entry = entry
        self.reason = reason
    }

    private enum CodingKeys: String, CodingKey { case executor, dot, stamp, reason, at }

    /// Decodes the JSON form; the job id is not part of it: it is the nil UUID.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        entry = LedgerEntry(
            jobID: UUID(uuidString: "00000000-0000-0000-0000-000000000000")!,
            executor: try c.decodeIfPresent(UUID.self, forKey: .executor),
            dot: try c.decodeIfPresent(String.self, forKey: .dot).flatMap { Dot(header: $0) },
            stamp: try c.decode(ClockStamp.self, forKey: .stamp), at: try c.decode(Double.self, forKey: .at))
        reason = try c.decode(String.self, forKey: .reason)
    }

    /// Encodes the JSON form, nulls included.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(entry.executor.map { $0.ucpString }, forKey: .executor)
        try c.encode(entry.dot?.description, forKey: .dot)
        try c.encode(entry.stamp, forKey: .stamp)
        try c.encode(reason, forKey: .reason)
        try c.encode(entry.at, forKey: .at)
    }
}

/// What the ledger decided about one result.
public enum LedgerVerdict: Sendable, Hashable {
    /// The first result for the job: it is the job's result from now on.
    case accepted(LedgerEntry)
    /// The executor whose result was accepted sent it again (it retries after a failed
    /// delivery): treated as the accepted result once more. Carries the accepted entry.
    case retried(LedgerEntry)
    /// Another executor's result was accepted first; this one is recorded and turned down.
    case rejected(LedgerRejection, accepted: LedgerEntry)

    /// The job's accepted result, whatever the verdict.
    public var accepted: LedgerEntry {
        switch self {
        case .accepted(let entry), .retried(let entry), .rejected(_, accepted: let entry): entry
        }
    }
}

/// What `GET /ledger/{job_id}` answers: the accepted result (null while none) and every
/// rejected one, oldest first.
public struct LedgerView: Sendable, Hashable, Codable {
    /// The accepted result, if any.
    public var accepted: LedgerEntry?
    /// The results turned down, oldest first.
    public var rejected: [LedgerRejection]

    /// A view.
    public init(accepted: LedgerEntry?, rejected: [LedgerRejection]) {
        self.accepted = accepted
        self.rejected = rejected
    }

    private enum CodingKeys: String, CodingKey { case accepted, rejected }

    /// Encodes both fields, `accepted` as null while there is none.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(accepted, forKey: .accepted)
        try c.encode(rejected, forKey: .rejected)
    }
}

/// The broker's first-come-first-served result ledger.
///
/// The first result for a job is accepted; every later one is recorded as rejected (with the
/// sender's dot and the broker's stamp) and answered 409. A result sent again by the executor
/// whose result was accepted is that result retried, not a rejection. The decision, and the
/// record it leaves, is one SQLite transaction (``BrokerStore/decideResult(_:)``): concurrent
/// results are serialised by the database's single writer, and the first to commit wins. The
/// ledger is durable, so it holds across a broker restart and against an executor declared
/// dead that comes back late.
///
/// When brokers replicate their ledgers, two brokers may each accept a result for one job;
/// their accepted entries will then be ordered by the broker stamp, and concurrent stamps by
/// executor id.
///
/// Thread-safe.
public struct ResultLedger: Sendable {
    /// Where the ledger is kept.
    let store: BrokerStore
    private let acceptedCounter: CoreMetrics.Counter
    private let rejectedCounter: CoreMetrics.Counter

    /// A ledger over `store`, counting first acceptances in `ucp_ledger_accepted_total` and
    /// rejections in `ucp_ledger_rejected_total` of `metrics`.
    init(store: BrokerStore, metrics: NodeMetrics) {
        self.store = store
        acceptedCounter = metrics.counter("ucp_ledger_accepted_total")
        rejectedCounter = metrics.counter("ucp_ledger_rejected_total")
    }

    /// The rule, without storage: `claim` against the job's accepted entry, if any.
    ///
    /// A claim with no known executor never counts as a retry: nothing proves it comes from the
    /// accepted executor.
    public static func decide(_ claim: LedgerEntry, given accepted: LedgerEntry?) -> LedgerVerdict {
        guard let accepted else { return .accepted(claim) }
        if let executor = claim.executor, executor == accepted.executor { return .retried(accepted) }
        let winner = accepted.executor.map { $0.ucpString } ?? "an unknown executor"
        let reason =
            "the result of job \(claim.jobID.ucpString) was already accepted from executor \(winner)"
            + " at broker clock \(accepted.stamp.description)"
        return .rejected(LedgerRejection(claim, reason: reason), accepted: accepted)
    }

    /// True when `a` was decided before `b` in the order that settles two brokers' concurrent
    /// decisions for one job: a decision that happened before the other comes first; otherwise
    /// the smaller sum of the deciding broker's clock, then the smaller executor id.
    public static func earlier(_ a: LedgerEntry, _ b: LedgerEntry) -> Bool {
        switch a.stamp.compare(b.stamp) {
        case .before: return true
        case .after: return false
        case .equal, .concurrent:
            let sa = a.stamp.entrySum
            let sb = b.stamp.entrySum
            if sa != sb { return sa < sb }
            return (a.executor.map { $0.ucpString } ?? "") < (b.executor.map { $0.ucpString } ?? "")
        }
    }

    /// Decides about `claim` and records the decision durably, in one transaction.
    ///
    /// - Throws: ``BrokerStoreError/unknownJob(_:)`` for a job never submitted, or a database
    ///   failure.
    public func decide(_ claim: LedgerEntry) throws(BrokerStoreError) -> LedgerVerdict {
        let verdict = try store.decideResult(claim)
        switch verdict {
        case .accepted: acceptedCounter.increment()
        case .retried: break
        case .rejected: rejectedCounter.increment()
        }
        return verdict
    }

    /// The ledger of job `id`.
    ///
    /// - Throws: ``BrokerStoreError/unknownJob(_:)`` for a job never submitted.
    public func view(of id: UUID) throws(BrokerStoreError) -> LedgerView {
        try store.ledger(of: id)
    }
}
