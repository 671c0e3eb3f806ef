/// What went wrong when the outside world handed this module a bad value:
/// a level name no one knows, a node id outside the group, a clock wider than its group.
///
/// Each case carries the failing value. Programmer errors (a negative slot or width)
/// are preconditions, not errors. Delivery and inbox failures are `CausalDeliveryError`.
public enum CausalError: Error, Hashable, CustomStringConvertible {
    /// The text names no emergency level (neither LOW...CRITICAL nor 1...4).
    case unknownEmergencyLevel(String)
    /// The node id is not a member of the group.
    case unknownNode(String)
    /// The clock has a nonzero entry at a slot that no member holds, so it cannot be named.
    case nonzeroEntryOutsideMembership(slot: Int, value: UInt64)

    /// A one-line explanation that quotes the failing value.
    public var description: String {
        switch self {
        case .unknownEmergencyLevel(let text):
            "unknown emergency level \"\(text)\" (expected LOW, MEDIUM, HIGH, CRITICAL or 1...4)"
        case .unknownNode(let id):
            "unknown node \"\(id)\""
        case .nonzeroEntryOutsideMembership(let slot, let value):
            "clock entry \(value) at slot \(slot) belongs to no member of the group"
        }
    }
}
