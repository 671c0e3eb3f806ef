import Causal
import Foundation

/// What `GET /job/{job_id}` answers: `{"id", "state", "executor", "wait_for", "emergency",
/// "submitted", "assigned", "done"}`, the stamps as ``ClockStamp`` JSON (null when not yet).
public struct JobView: Sendable, Hashable, Codable {
    /// The job's id.
    public var id: String
    /// Where it is.
    public var state: JobState
    /// The executor it was given to, if any.
    public var executor: String?
    /// The jobs it waits for.
    public var waitFor: [String]
    /// Its emergency level.
    public var emergency: EmergencyLevel
    /// When the broker accepted it.
    public var submitted: ClockStamp
    /// When an executor accepted it.
    public var assigned: ClockStamp?
    /// When it was reported done.
    public var done: ClockStamp?

    /// The view of `job`.
    public init(_ job: JobRecord) {
        id = job.id.ucpString
        state = job.state
        executor = job.executorID.map { $0.ucpString }
        waitFor = job.waitFor.map { $0.ucpString }
        emergency = job.info.emergency
        submitted = job.submitted
        assigned = job.assigned
        done = job.done
    }

    private enum CodingKeys: String, CodingKey {
        case id, state, executor
        case waitFor = "wait_for"
        case emergency, submitted, assigned, done
    }

    /// Encodes every field, nulls included.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(state, forKey: .state)
        try c.encode(executor, forKey: .executor)
        try c.encode(waitFor, forKey: .waitFor)
        try c.encode(emergency, forKey: .emergency)
        try c.encode(submitted, forKey: .submitted)
        try c.encode(assigned, forKey: .assigned)
        try c.encode(done, forKey: .done)
    }
}
