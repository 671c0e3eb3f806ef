/// The named form of a clock: `{"node-id": n}`, as UCP sends it in JSON.
extension Membership {
    /// The entries of `clock` keyed by member id: every member appears, members past the
    /// clock's width with 0. O(count + clock.width).
    ///
    /// - Throws: `CausalError.nonzeroEntryOutsideMembership` when the clock has a nonzero
    ///   entry at a slot no member holds (zeros there are only padding and are dropped).
    public func named(_ clock: VectorClock) throws -> [String: UInt64] {
        try clock.withUnsafeBufferPointer { entries in
            if entries.count > count {
                for slot in count..<entries.count where entries[slot] != 0 {
                    throw CausalError.nonzeroEntryOutsideMembership(slot: slot, value: entries[slot])
                }
            }
            var named = [String: UInt64](minimumCapacity: count)
            for (slot, id) in ids.enumerated() {
                named[id] = slot < entries.count ? entries[slot] : 0
            }
            return named
        }
    }

    /// The clock that `named` describes, as wide as the membership.
    ///
    /// Ids that are not members join first, in sorted order (a dictionary has no order of
    /// its own), so a clock from a larger group still maps. Members missing from `named`
    /// read 0.
    public mutating func clock(from named: [String: UInt64]) -> VectorClock {
        for id in named.keys.sorted() where slot(of: id) == nil {
            add(id)
        }
        return try! clock(fromKnown: named)
    }

    /// The clock that `named` describes, as wide as the membership; members missing from
    /// `named` read 0.
    ///
    /// - Throws: `CausalError.unknownNode` naming an id that is not a member (the first in
    ///   sorted order when there are several).
    public func clock(fromKnown named: [String: UInt64]) throws -> VectorClock {
        var clock = VectorClock(width: count)
        var unknown: String?
        for (id, value) in named {
            if let slot = slot(of: id) {
                clock[slot] = value
            } else if unknown.map({ id < $0 }) ?? true {
                unknown = id
            }
        }
        if let unknown { throw CausalError.unknownNode(unknown) }
        return clock
    }
}

extension VectorClock {
    /// This clock keyed by the ids of `membership`; see `Membership.named(_:)`.
    ///
    /// - Throws: `CausalError.nonzeroEntryOutsideMembership` when a nonzero entry has no member.
    public func named(in membership: Membership) throws -> [String: UInt64] {
        try membership.named(self)
    }
}
