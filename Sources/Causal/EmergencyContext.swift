/// What an emergency is about: its type (e.g. `"fire"`), its level and, when known, where.
///
/// Encodes as `{"type": ..., "level": "HIGH", "location": ...}`; `location` is omitted when nil.
public struct EmergencyContext: Sendable, Hashable, Codable {
    /// The kind of emergency, as the reporter names it.
    public var type: String
    /// How urgent it is.
    public var level: EmergencyLevel
    /// Where it happens, if known.
    public var location: String?

    /// An emergency context.
    public init(type: String, level: EmergencyLevel, location: String? = nil) {
        self.type = type
        self.level = level
        self.location = location
    }

    /// True when the level is `.high` or `.critical`.
    public var isCritical: Bool { level.isCritical }
}
