#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The members of a group in join order: maps node ids to the dense clock slots
/// `0..<count`, so that a `VectorClock` can be read and written by node id.
///
/// Ids are opaque, case-sensitive strings.
///
/// A member keeps its slot for the life of the group; members only join. Lookups are O(1).
/// `Membership` is a value; values may be sent between threads.
///
/// Encodes as the array of ids in slot order, e.g. `["a","b"]`.
public struct Membership: Sendable {
    private var order: [String]
    private var slots: [String: Int]

    /// A membership of `ids`, which take slots `0, 1, ...` in order.
    /// A repeated id keeps its first slot.
    public init(_ ids: [String] = []) {
        order = []
        slots = [:]
        order.reserveCapacity(ids.count)
        for id in ids { add(id) }
    }

    /// The ids in slot order: `ids[slot]` is the member at `slot`.
    public var ids: [String] { order }

    /// The number of members; also the width of the group's clocks.
    public var count: Int { order.count }

    /// Adds `id` in the next free slot unless it is already a member, and returns its slot.
    @discardableResult
    public mutating func add(_ id: String) -> Int {
        if let slot = slots[id] { return slot }
        let slot = order.count
        order.append(id)
        slots[id] = slot
        return slot
    }

    /// The slot of `id`, or nil when it is not a member.
    public func slot(of id: String) -> Int? {
        slots[id]
    }

    /// The id of the member at `slot`, or nil when no member holds it.
    public func id(at slot: Int) -> String? {
        order.indices.contains(slot) ? order[slot] : nil
    }
}

extension Membership: Hashable {
    /// True when both hold the same ids in the same slots.
    public static func == (lhs: Membership, rhs: Membership) -> Bool {
        lhs.order == rhs.order
    }

    /// Hashes the ids in slot order.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(order)
    }
}

extension Membership: Codable {
    /// Decodes the array of ids in slot order. A repeated id is a `DecodingError`.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let ids = try container.decode([String].self)
        self.init(ids)
        guard count == ids.count else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "a node id appears twice")
        }
    }

    /// Encodes the ids in slot order.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(order)
    }
}
