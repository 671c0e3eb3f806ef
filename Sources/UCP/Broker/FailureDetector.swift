import Foundation

/// What the broker believes of a node from its heartbeats.
///
/// `active` → `suspected` (silent longer than ``FailureDetector/suspectAfter``) → `failed`
/// (silent longer than ``FailureDetector/failAfter``). A heartbeat makes a suspected node active
/// again; a failed one must register again.
public enum NodeLiveness: String, Sendable, Hashable, Codable, CaseIterable {
    /// Heard of recently: it may be given jobs.
    case active
    /// Silent for a while: it keeps its jobs but is given no new ones.
    case suspected
    /// Silent too long: forgotten until it registers again; its jobs are redeployed.
    case failed
}

/// The failure detector's rule, without time or storage: the liveness of a node from when it was
/// last heard of, the time now, and when the broker started.
///
/// A broker cannot hear heartbeats while it is down, so silence is counted from the later of the
/// last heartbeat and the broker's start: a restarted broker gives every node a fresh
/// `failAfter`. A `suspectAfter` longer than `failAfter` counts as `failAfter` (no suspicion).
///
/// A value type; thread-safe. O(1).
public struct FailureDetector: Sendable, Hashable {
    /// Silence after which a node is suspected.
    public var suspectAfter: Duration
    /// Silence after which a node is failed.
    public var failAfter: Duration
    /// When the broker started, in seconds since 1970.
    public var startedAt: Double

    /// A detector with these thresholds, for a broker started at `startedAt`.
    public init(suspectAfter: Duration, failAfter: Duration, startedAt: Double) {
        self.suspectAfter = suspectAfter
        self.failAfter = failAfter
        self.startedAt = startedAt
    }

    /// Seconds a node last heard of at `lastHeard` has been silent at `now`, counted from the
    /// broker's start at the earliest (never negative).
    public func silence(lastHeard: Double, at now: Double) -> Double {
        max(0, now - max(lastHeard, startedAt))
    }

    /// The liveness at `now` of a node last heard of at `lastHeard`.
    public func liveness(lastHeard: Double, at now: Double) -> NodeLiveness {
        let silent = silence(lastHeard: lastHeard, at: now)
        if silent > failAfter.seconds { return .failed }
        if silent > min(suspectAfter, failAfter).seconds { return .suspected }
        return .active
    }
}
