import Foundation

/// The answer of the executor's `PUT /emergency`: `{"applied": true|false, "current": notice|null}`.
public struct EmergencyApplyAnswer: Sendable, Hashable, Codable {
    /// Whether the notice sent was applied (false for a stale notice, or one already applied).
    public var applied: Bool
    /// The notice in force afterwards, nil when none was ever applied.
    public var current: EmergencyNotice?

    /// An answer.
    public init(applied: Bool, current: EmergencyNotice?) {
        self.applied = applied
        self.current = current
    }

    private enum CodingKeys: String, CodingKey { case applied, current }

    /// Encodes `current` as null when there is none (rather than leaving it out).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(applied, forKey: .applied)
        try c.encode(current, forKey: .current)
    }
}
