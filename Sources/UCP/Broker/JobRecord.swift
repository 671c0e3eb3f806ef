import Causal
import Foundation

/// Where a job is in its life at a broker.
///
/// `waiting` (its `wait_for` jobs are not all done) → `queued` (ready, looking for an executor)
/// → `assigned` (an executor accepted it) → `done` (the executor said so); `deleted` from any
/// state. A failed executor's `assigned` jobs go back to `queued` (redeployed).
public enum JobState: String, Sendable, Hashable, Codable, CaseIterable {
    /// Waits for the jobs in its `wait_for` to be done.
    case waiting
    /// Ready to run; the broker is looking for a capable executor.
    case queued
    /// Sent to an executor, which accepted it.
    case assigned
    /// Reported done by its executor.
    case done
    /// Deleted by a client or its executor.
    case deleted
}

/// A job as the broker keeps it.
public struct JobRecord: Sendable, Hashable, Codable {
    /// The job's id, chosen by the client.
    public var id: UUID
    /// What to run.
    public var info: JobInfo
    /// Jobs that must be done before this one runs.
    public var waitFor: [UUID]
    /// Where the job is.
    public var state: JobState
    /// The executor it was given to, while `assigned` (and kept once `done`).
    public var executorID: UUID?
    /// When the broker accepted it.
    public var submitted: ClockStamp
    /// When an executor accepted it, if one has.
    public var assigned: ClockStamp?
    /// When its executor reported it done, if it has. A done job stays done once deleted.
    public var done: ClockStamp?

    /// A job record.
    public init(
        id: UUID, info: JobInfo, waitFor: [UUID] = [], state: JobState, executorID: UUID? = nil,
        submitted: ClockStamp, assigned: ClockStamp? = nil, done: ClockStamp? = nil
    ) {
        self.id = id
        self.info = info
        self.waitFor = waitFor
        self.state = state
        self.executorID = executorID
        self.submitted = submitted
        self.assigned = assigned
        self.done = done
    }

    /// The job's emergency level (a CausalUCP extension of `JobInfo`).
    public var emergency: EmergencyLevel { info.emergency }
}

/// What happened to a job, stamped with the broker's clock: one row of the broker's event log.
public struct JobEvent: Sendable, Hashable, Codable {
    /// What kind of event.
    public enum Kind: String, Sendable, Hashable, Codable {
        /// Accepted by the broker (`waiting` or `queued`).
        case submitted
        /// Its `wait_for` jobs are all done: `waiting` → `queued`.
        case released
        /// Accepted by an executor.
        case assigned
        /// Refused at submission: no capable executor took it; the record is dropped.
        case refused
        /// Reported done.
        case done
        /// Deleted.
        case deleted
        /// Handed back by its executor (which is shutting down): back to `queued`.
        case requeued
        /// Given to a peer broker to dispatch (it had a capable executor, this broker none), or
        /// received from one.
        case delegated
        /// Its executor was declared failed: back to `queued`, for another executor.
        case redeployed
        /// Its result went to the job's `result_addr`.
        case resultForwarded = "result_forwarded"
        /// Its result was stored on a datastore as `<job_id>/result`.
        case resultStored = "result_stored"
    }

    /// The job.
    public var jobID: UUID
    /// What happened.
    public var kind: Kind
    /// The broker's clock at the event (the broker's own entry ticked for it).
    public var stamp: ClockStamp
    /// The dot of the request that caused it, when it came from a dotted node.
    public var cause: Dot?

    /// An event.
    public init(jobID: UUID, kind: Kind, stamp: ClockStamp, cause: Dot? = nil) {
        self.jobID = jobID
        self.kind = kind
        self.stamp = stamp
        self.cause = cause
    }
}
