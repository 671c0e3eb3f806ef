import Causal
import Foundation

/// One change of the platform's emergency mode: raised at a level, or cleared.
///
/// A broker issues a notice when a client raises or clears the mode through its API, stamps it
/// with its clock (its own entry ticked), sends it to the other brokers over the causal
/// transport and pushes it to its executors (`PUT /emergency`). Every node keeps the mode in an
/// ``EmergencyMode``, which applies notices in causal order. JSON:
/// `{"id": uuid, "level": "HIGH" | null, "reason": "...", "origin": "<broker id>", "stamp": ClockStamp}`.
public struct EmergencyNotice: Sendable, Hashable, Codable {
    /// The notice's id.
    public var id: UUID
    /// The level raised, or nil when the notice clears the mode.
    public var level: EmergencyLevel?
    /// Why, as the client said it.
    public var reason: String
    /// The broker that issued it (its clock entry name).
    public var origin: String
    /// The issuing broker's clock when it issued the notice.
    public var stamp: ClockStamp

    /// A notice.
    public init(id: UUID = UUID(), level: EmergencyLevel?, reason: String, origin: String, stamp: ClockStamp) {
        self.id = id
        self.level = level
        self.reason = reason
        self.origin = origin
        self.stamp = stamp
    }

    /// Longest reason accepted.
    public static let maxReasonLength = 1024

    private enum CodingKeys: String, CodingKey { case id, level, reason, origin, stamp }

    /// Encodes `level` as null when cleared (rather than leaving it out).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id.ucpString, forKey: .id)
        try c.encode(level, forKey: .level)
        try c.encode(reason, forKey: .reason)
        try c.encode(origin, forKey: .origin)
        try c.encode(stamp, forKey: .stamp)
    }

    /// Decodes a notice; `level` may be null or missing (cleared).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(UUID.self, forKey: .id)
        level = try c.decodeIfPresent(EmergencyLevel.self, forKey: .level)
        reason = try c.decode(String.self, forKey: .reason)
        origin = try c.decode(String.self, forKey: .origin)
        stamp = try c.decode(ClockStamp.self, forKey: .stamp)
    }

    /// True when this notice wins over `other` in the emergency mode's order: it happened after
    /// it, or the two are concurrent and this one's `(origin, id)` is the larger (a rule every
    /// node applies alike, so all of them settle on the same notice).
    public func supersedes(_ other: EmergencyNotice) -> Bool {
        switch stamp.compare(other.stamp) {
        case .after: return true
        case .before: return false
        case .equal, .concurrent:
            if origin != other.origin { return origin > other.origin }
            return id.ucpString > other.id.ucpString
        }
    }
}

/// The emergency mode as one node knows it: the winning notice so far, and the notices it
/// applied, in the order it applied them.
///
/// Notices may arrive in any order and more than once; ``apply(_:)`` takes a notice only when it
/// supersedes the current one (``EmergencyNotice/supersedes(_:)``), so a node never goes back to
/// a notice that happened before the one it holds, and every node that saw the same notices
/// holds the same one.
public struct EmergencyMode: Sendable, Hashable {
    /// The notice in force, nil before any.
    public private(set) var current: EmergencyNotice?
    /// Every notice applied, oldest first (at most ``historyLimit``).
    public private(set) var applied: [EmergencyNotice] = []

    /// Most applied notices kept.
    public static let historyLimit = 256

    /// No emergency.
    public init() {}

    /// The level in force, nil when no emergency is raised.
    public var level: EmergencyLevel? { current?.level }

    /// Applies `notice` when it supersedes the current one; returns whether it did.
    @discardableResult
    public mutating func apply(_ notice: EmergencyNotice) -> Bool {
        if let current, current.id == notice.id || !notice.supersedes(current) { return false }
        current = notice
        applied.append(notice)
        if applied.count > Self.historyLimit { applied.removeFirst(applied.count - Self.historyLimit) }
        return true
    }
}

/// The answer of `GET /emergency` on a broker or an executor: the notice in force and every notice
/// applied, in the order the node applied them (see ``EmergencyMode``):
/// `{"current": notice | null, "applied": [notice, ...]}`.
public struct EmergencyView: Sendable, Hashable, Codable {
    /// The notice in force (a raise, or the clear that ended the last one); nil before any.
    public var current: EmergencyNotice?
    /// Every notice applied, oldest first (at most ``EmergencyMode/historyLimit``).
    public var applied: [EmergencyNotice]

    /// A view of `mode`.
    public init(_ mode: EmergencyMode) {
        current = mode.current
        applied = mode.applied
    }

    private enum CodingKeys: String, CodingKey { case current, applied }

    /// Decodes the JSON form.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        current = try c.decodeIfPresent(EmergencyNotice.self, forKey: .current)
        applied = try c.decode([EmergencyNotice].self, forKey: .applied)
    }

    /// Encodes `current` as null when there is none.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(current, forKey: .current)
        try c.encode(applied, forKey: .applied)
    }
}
