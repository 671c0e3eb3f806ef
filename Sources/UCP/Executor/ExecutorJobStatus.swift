import Causal
import Foundation

/// Where a job is on an executor.
public enum ExecutorJobState: String, Sendable, Hashable, Codable, CaseIterable {
    /// Its binary, stdin and data are being downloaded.
    case fetching
    /// Ready, waiting for a worker.
    case queued
    /// Its guest is running.
    case running
    /// Its named results and result are being sent.
    case delivering
    /// Its result is delivered and the broker told it is done.
    case done
    /// Its result or its "done" could not be delivered within the retry window; the result zip
    /// is kept in the job's folder and the failure is logged.
    case undelivered
    /// Deleted (`DELETE /job/{job_id}`) before it finished; no result is sent.
    case discarded
    /// Given back to the broker (`PUT /job/submit/{job_id}`) because the executor shut down
    /// before it started.
    case handedBack = "handed_back"
    /// The broker refused its result (409): another executor's result for the job was accepted
    /// first (the broker's first-come-first-served ledger). No "done" is reported; the refusal
    /// is the event `result_refused`, which names the accepted executor.
    case superseded

    /// True when nothing more happens to the job.
    public var isSettled: Bool {
        switch self {
        case .fetching, .queued, .running, .delivering: false
        case .done, .undelivered, .discarded, .handedBack, .superseded: true
        }
    }
}

/// One stamped event in a job's life on an executor.
public struct ExecutorJobEvent: Sendable, Hashable, Codable {
    /// What happened: `accepted`, `fetched`, `queued`, `started`, `preempted` (a CRITICAL job
    /// took its worker), `requeued` (stopped and back in the queue, to run again from the start),
    /// `finished`, `named_result`, `result_sent`, `result_stored`, `result_refused` (another
    /// executor's result was accepted), `done`, `deleted`, `discarded`, `handed_back`, or a
    /// `..._failed` variant.
    public var event: String
    /// When, by the executor's clock (its dot orders the executor's own events).
    public var stamp: ClockStamp
    /// More about it (an outcome, a data name, an error), if anything.
    public var detail: String?
    /// The executor's wall-clock time, in seconds since 1970 (for latency measurements on one
    /// machine; clocks order events, this does not).
    public var at: Double?

    /// An event, timed now.
    public init(event: String, stamp: ClockStamp, detail: String? = nil, at: Double? = Date().timeIntervalSince1970) {
        self.event = event
        self.stamp = stamp
        self.detail = detail
        self.at = at
    }
}

/// The answer of `GET /job/{job_id}` (a CausalUCP extension): the job's state, its outcome once
/// it ran, and every stamped event.
public struct ExecutorJobStatus: Sendable, Hashable, Codable {
    /// The job's id.
    public var id: UUID
    /// Where it is.
    public var state: ExecutorJobState
    /// How its guest ended (``JobOutcome``'s description), once it ran.
    public var outcome: String?
    /// Its emergency level.
    public var emergency: EmergencyLevel
    /// Its events, oldest first.
    public var events: [ExecutorJobEvent]

    /// A status.
    public init(
        id: UUID, state: ExecutorJobState, outcome: String?, emergency: EmergencyLevel, events: [ExecutorJobEvent]
    ) {
        self.id = id
        self.state = state
        self.outcome = outcome
        self.emergency = emergency
        self.events = events
    }

    private enum CodingKeys: String, CodingKey { case id, state, outcome, emergency, events }

    /// Decodes the JSON form.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(UUID.self, forKey: .id)
        state = try c.decode(ExecutorJobState.self, forKey: .state)
        outcome = try c.decodeIfPresent(String.self, forKey: .outcome)
        emergency = try c.decodeIfPresent(EmergencyLevel.self, forKey: .emergency) ?? .low
        events = try c.decode([ExecutorJobEvent].self, forKey: .events)
    }

    /// Encodes the JSON form, the id lowercased as UCP writes ids.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id.ucpString, forKey: .id)
        try c.encode(state, forKey: .state)
        try c.encodeIfPresent(outcome, forKey: .outcome)
        try c.encode(emergency, forKey: .emergency)
        try c.encode(events, forKey: .events)
    }
}
