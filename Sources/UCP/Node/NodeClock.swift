import Foundation
import Synchronization

/// A node's vector clock, named by node ids.
///
/// Clock width follows the brokers, not the executors: a broker is a **member** and owns an
/// entry, which it ticks for each of its events; an executor, datastore or client is **dotted**:
/// it owns no entry, keeps the largest broker clock it has seen and numbers its own events
/// (``Dot``). A platform of `b` brokers and any number of executors has clocks of width `b`.
///
/// Thread-safe; every operation is O(width).
public final class NodeClock: Sendable {
    /// Whether a node owns a clock entry.
    public enum Role: String, Sendable, Hashable, Codable {
        /// Owns an entry (brokers).
        case member
        /// Owns no entry; stamps its events with a ``Dot`` (executors, datastores, clients).
        case dotted
    }

    private struct State {
        var clock: [String: UInt64]
        var seq: UInt64
    }

    /// The node's id.
    public let nodeID: String
    /// Whether the node owns an entry.
    public let role: Role
    private let state: Mutex<State>

    /// A clock for node `nodeID`, starting from `clock` (a member's own entry is added at 0) and
    /// dot sequence `seq`.
    public init(nodeID: String, role: Role, clock: [String: UInt64] = [:], seq: UInt64 = 0) {
        precondition(!nodeID.isEmpty, "a node id is not empty")
        var start = clock
        if role == .member, start[nodeID] == nil { start[nodeID] = 0 }
        self.nodeID = nodeID
        self.role = role
        self.state = Mutex(State(clock: start, seq: seq))
    }

    /// Records a local event and returns its stamp: a member ticks its entry, a dotted node
    /// takes the next dot.
    @discardableResult
    public func event() -> ClockStamp {
        state.withLock { s in
            switch role {
            case .member:
                s.clock[nodeID, default: 0] += 1
                return ClockStamp(clock: s.clock)
            case .dotted:
                s.seq += 1
                return ClockStamp(clock: s.clock, dot: Dot(node: nodeID, seq: s.seq))
            }
        }
    }

    /// Where a received clock comes from, which decides how much of it a node takes.
    public enum Source: Sendable, Hashable {
        /// A node this one has reason to believe about the broker group: a broker of the same
        /// federation (over the authenticated causal transport), or, for a dotted node, the
        /// answer of a node it chose to call (its broker, a datastore). Such a clock may name
        /// brokers this node has not heard of yet.
        case group
        /// Anyone else: the clock of a request (proven or not), or of a node a member called.
        /// Only entries this node already has move, each by at most ``NodeClock/maxAdvance``.
        case peer
    }

    /// Merges what another node knew (pointwise maximum, within the bounds below). A member then
    /// records the receipt as an event of its own and returns that stamp; a dotted node returns
    /// its merged clock.
    ///
    /// What a node takes from a clock depends on its `source`:
    /// - From a ``Source/peer``, entries for ids this node has no entry for are ignored (a
    ///   stranger cannot widen the clock), and each known entry moves forward by at most
    ///   ``maxAdvance`` (so a forged value near 2^64 becomes an ordinary one).
    /// - From the ``Source/group``, new broker ids are taken, up to ``ClockStamp/maxEntries``.
    /// - In both cases a member's own entry moves forward by at most ``maxOwnCatchUp``: a member
    ///   restarted from a saved clock may have handed out a few ticks it had not saved, and takes
    ///   them back from the clocks it receives; a claim further ahead (forged, or passed on from a
    ///   forger) is ignored for that entry. No one else can bring a member's next tick near
    ///   overflow.
    @discardableResult
    public func receive(_ clock: [String: UInt64], from source: Source = .peer) -> ClockStamp {
        state.withLock { s in
            for (id, count) in clock {
                let current: UInt64
                if let known = s.clock[id] {
                    current = known
                } else {
                    guard source == .group, s.clock.count < ClockStamp.maxEntries else { continue }
                    current = 0
                }
                guard count > current else { continue }
                let ahead = count - current
                if role == .member && id == nodeID {
                    if ahead > Self.maxOwnCatchUp { continue }
                    s.clock[id] = count
                } else {
                    s.clock[id] = source == .group ? count : current + min(ahead, Self.maxAdvance)
                }
            }
            if role == .member {
                s.clock[nodeID, default: 0] += 1
            }
            return ClockStamp(clock: s.clock, dot: role == .dotted && s.seq > 0 ? Dot(node: nodeID, seq: s.seq) : nil)
        }
    }

    /// The clock now, without recording an event.
    public func now() -> ClockStamp {
        state.withLock { s in
            ClockStamp(clock: s.clock, dot: role == .dotted && s.seq > 0 ? Dot(node: nodeID, seq: s.seq) : nil)
        }
    }

    /// How far a member's own entry may move forward on one received clock: far more ticks than
    /// a member makes between two saves of its clock, far fewer than could bring it near 2^64.
    public static let maxOwnCatchUp: UInt64 = 1 << 16

    /// How far an entry may move forward on one clock from a ``Source/peer``: more events than
    /// a broker makes between two calls that reach a node from the group (heartbeats answer
    /// every few seconds), far fewer than could bring an entry near 2^64.
    public static let maxAdvance: UInt64 = 1 << 20

    /// The number of entries (the brokers this node has heard of).
    public var width: Int { state.withLock { $0.clock.count } }
}
