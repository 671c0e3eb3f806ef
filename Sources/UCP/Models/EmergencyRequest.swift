import Causal
import Foundation

/// The body of `PUT /emergency`: `{"level": "HIGH", "reason": "..."}`.
public struct EmergencyRequest: Sendable, Hashable, Codable {
    /// The level to raise.
    public var level: EmergencyLevel
    /// Why.
    public var reason: String

    /// A request.
    public init(level: EmergencyLevel, reason: String) {
        self.level = level
        self.reason = reason
    }
}
