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

/// The answer of the executor's `GET /emergency`: `{"current": notice|null, "applied": [notice...]}`,
/// the notices in the order the executor applied them (see ``EmergencyMode``).
public struct EmergencyModeAnswer: Sendable, Hashable, Codable {
    /// The notice in force, nil before any.
    public var current: EmergencyNotice?
    /// Every notice applied, oldest first (at most ``EmergencyMode/historyLimit``).
    public var applied: [EmergencyNotice]

    /// The answer for `mode`.
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
