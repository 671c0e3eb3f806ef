import CCausal
import Testing

import Causal

/// SplitMix64: a seeded generator, so a failing case can be replayed from its seed.
struct SeededClockGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A clock of random width in `0...maxWidth` with entries in `0...maxValue`.
    mutating func clock(maxWidth: Int = 6, maxValue: UInt64 = 3) -> VectorClock {
        let width = Int.random(in: 0...maxWidth, using: &self)
        return VectorClock((0..<width).map { _ in UInt64.random(in: 0...maxValue, using: &self) })
    }

    /// A clock related to `base` in a random way: independent, raised, lowered, mixed,
    /// or the same entries with zero padding added or trailing zeros removed.
    mutating func clock(near base: VectorClock, maxWidth: Int = 6, maxValue: UInt64 = 3) -> VectorClock {
        var entries = base.entries
        switch Int.random(in: 0..<6, using: &self) {
        case 0:
            return clock(maxWidth: maxWidth, maxValue: maxValue)
        case 1:
            raise(&entries)
        case 2:
            lower(&entries)
        case 3:
            raise(&entries)
            lower(&entries)
        case 4:
            entries += Array(repeating: 0, count: Int.random(in: 0...3, using: &self))
        default:
            while entries.last == 0 { entries.removeLast() }
        }
        return VectorClock(entries)
    }

    /// Increments one or two random slots, possibly just past the end.
    private mutating func raise(_ entries: inout [UInt64]) {
        for _ in 0..<Int.random(in: 1...2, using: &self) {
            let slot = Int.random(in: 0...entries.count, using: &self)
            if slot == entries.count { entries.append(0) }
            entries[slot] += 1
        }
    }

    /// Decrements one or two random nonzero slots, if there are any.
    private mutating func lower(_ entries: inout [UInt64]) {
        for _ in 0..<Int.random(in: 1...2, using: &self) {
            if let slot = entries.indices.filter({ entries[$0] > 0 }).randomElement(using: &self) {
                entries[slot] -= 1
            }
        }
    }
}
/// The clock operations written out in plain Swift, straight from the definitions.
enum ReferenceClock {
    static func entry(_ clock: [UInt64], _ slot: Int) -> UInt64 {
        slot < clock.count ? clock[slot] : 0
    }

    static func compare(_ a: [UInt64], _ b: [UInt64]) -> ClockOrder {
        var less = false
        var greater = false
        for slot in 0..<max(a.count, b.count) {
            let x = entry(a, slot)
            let y = entry(b, slot)
            if x < y { less = true }
            if x > y { greater = true }
        }
        switch (less, greater) {
        case (false, false): return .equal
        case (true, false): return .before
        case (false, true): return .after
        case (true, true): return .concurrent
        }
    }

    static func merge(_ a: [UInt64], _ b: [UInt64]) -> [UInt64] {
        (0..<max(a.count, b.count)).map { max(entry(a, $0), entry(b, $0)) }
    }

    static func dominates(_ a: [UInt64], _ b: [UInt64]) -> Bool {
        (0..<max(a.count, b.count)).allSatisfy { entry(a, $0) >= entry(b, $0) }
    }
}

@Suite("Clock algebra")
struct ClockAlgebraTests {
    static let seeds: [UInt64] = Array(1...40)

    @Test("operations agree with the pure-Swift reference", arguments: seeds)
    func agreesWithReference(seed: UInt64) {
        var rng = SeededClockGenerator(seed: seed)
        for _ in 0..<50 {
            let a = rng.clock()
            let b = rng.clock(near: a)
            let order = ReferenceClock.compare(a.entries, b.entries)
            #expect(a.compare(b) == order, "\(a) vs \(b)")
            #expect(a.happened(before: b) == (order == .before), "\(a) vs \(b)")
            #expect(a.isConcurrent(with: b) == (order == .concurrent), "\(a) vs \(b)")
            #expect((a == b) == (order == .equal), "\(a) vs \(b)")
            #expect(a.dominates(b) == ReferenceClock.dominates(a.entries, b.entries), "\(a) vs \(b)")
            let merged = a.merging(b)
            #expect(merged.entries == ReferenceClock.merge(a.entries, b.entries), "\(a) merging \(b)")
            #expect(merged.width == max(a.width, b.width))
        }
    }

    @Test("the generators reach every order, so the other tests see every case")
    func generatorCoversEveryOrder() {
        var rng = SeededClockGenerator(seed: 7)
        var seen: Set<ClockOrder> = []
        var mismatchedWidths = 0
        for _ in 0..<500 {
            let a = rng.clock()
            let b = rng.clock(near: a)
            seen.insert(ReferenceClock.compare(a.entries, b.entries))
            if a.width != b.width { mismatchedWidths += 1 }
        }
        #expect(seen == [.before, .after, .equal, .concurrent])
        #expect(mismatchedWidths > 100)
    }

    @Test("merge is commutative, associative and idempotent, and dominates its operands", arguments: seeds)
    func mergeLaws(seed: UInt64) {
        var rng = SeededClockGenerator(seed: seed)
        for _ in 0..<50 {
            let a = rng.clock()
            let b = rng.clock(near: a)
            let c = rng.clock(near: b)
            #expect(a.merging(b) == b.merging(a), "\(a), \(b)")
            #expect(a.merging(b).merging(c) == a.merging(b.merging(c)), "\(a), \(b), \(c)")
            #expect(a.merging(a) == a, "\(a)")
            #expect(a.merging(a).entries == a.entries, "\(a)")
            let merged = a.merging(b)
            #expect(merged.dominates(a) && merged.dominates(b), "\(a), \(b)")
            #expect([.after, .equal].contains(merged.compare(a)), "\(a), \(b)")
            #expect(merged == b || merged.compare(b) == .after, "\(a), \(b)")
        }
    }

    @Test("merging a clock into itself leaves it unchanged")
    func mergeWithSelf() {
        var clock: VectorClock = [3, 0, 7]
        let copy = clock
        clock.merge(clock)
        #expect(clock.entries == [3, 0, 7])
        #expect(copy.entries == [3, 0, 7])
    }

    @Test("compare is antisymmetric and agrees with ==", arguments: seeds)
    func compareAntisymmetric(seed: UInt64) {
        var rng = SeededClockGenerator(seed: seed)
        for _ in 0..<50 {
            let a = rng.clock()
            let b = rng.clock(near: a)
            let forward = a.compare(b)
            let backward = b.compare(a)
            #expect(backward == forward.reversed, "\(a) vs \(b)")
            #expect((forward == .before) == (backward == .after))
            #expect((forward == .concurrent) == (backward == .concurrent))
            #expect((forward == .equal) == (a == b))
            #expect(a.compare(a) == .equal)
            if a == b { #expect(a.hashValue == b.hashValue, "\(a) vs \(b)") }
            #expect(a.dominates(b) == (forward == .after || forward == .equal), "\(a) vs \(b)")
        }
    }

    @Test("tick moves a clock strictly after its old self", arguments: seeds)
    func tickMovesForward(seed: UInt64) {
        var rng = SeededClockGenerator(seed: seed)
        for _ in 0..<50 {
            let old = rng.clock()
            let snapshot = old.entries.map { $0 }  // a deep copy, to catch a write into shared storage
            let slot = Int.random(in: 0...(old.width + 2), using: &rng)
            var new = old
            let value = new.tick(slot)
            #expect(value == old[slot] + 1)
            #expect(new[slot] == value)
            #expect(new.width == max(old.width, slot + 1))
            #expect(new.compare(old) == .after, "\(old) ticked at \(slot)")
            #expect(old.happened(before: new))
            #expect(!new.happened(before: old))
            #expect(old.entries == snapshot, "the original copy is untouched")
        }
    }

    @Test("happened(before:) is transitive along generated histories", arguments: seeds)
    func transitiveChains(seed: UInt64) {
        var rng = SeededClockGenerator(seed: seed)
        var chain = [rng.clock()]
        for _ in 0..<12 {
            var next = chain.last!
            if Bool.random(using: &rng) { next.merge(rng.clock(maxWidth: 8)) }
            next.tick(Int.random(in: 0..<8, using: &rng))
            chain.append(next)
        }
        for i in chain.indices {
            for j in chain.indices where i < j {
                #expect(chain[i].happened(before: chain[j]), "\(chain[i]) then \(chain[j])")
                #expect(chain[j].compare(chain[i]) == .after)
            }
        }
        // And on random triples, wherever the premise holds.
        for _ in 0..<200 {
            let a = rng.clock()
            let b = rng.clock(near: a)
            let c = rng.clock(near: b)
            if a.happened(before: b) && b.happened(before: c) {
                #expect(a.happened(before: c), "\(a) < \(b) < \(c)")
            }
        }
    }

    /// The classic three-process diagram (Coulouris et al., "Distributed Systems", vector
    /// timestamps): p1 does a, then b sends m1; p2 receives m1 at c, then d sends m2; p3 does
    /// e, then receives m2 at f. Receiving merges the message's clock, then ticks.
    static let textbook: [String: VectorClock] = {
        var p1 = VectorClock(width: 3)
        var p2 = VectorClock(width: 3)
        var p3 = VectorClock(width: 3)
        var events: [String: VectorClock] = [:]
        p1.tick(0)
        events["a"] = p1
        p1.tick(0)
        events["b"] = p1
        let m1 = p1
        p2.merge(m1)
        p2.tick(1)
        events["c"] = p2
        p2.tick(1)
        events["d"] = p2
        let m2 = p2
        p3.tick(2)
        events["e"] = p3
        p3.merge(m2)
        p3.tick(2)
        events["f"] = p3
        return events
    }()

    @Test(
        "the textbook diagram's events carry their known clocks",
        arguments: [
            ("a", [1, 0, 0]), ("b", [2, 0, 0]), ("c", [2, 1, 0]),
            ("d", [2, 2, 0]), ("e", [0, 0, 1]), ("f", [2, 2, 2]),
        ] as [(String, [UInt64])])
    func textbookClocks(event: String, clock: [UInt64]) {
        #expect(Self.textbook[event]?.entries == clock)
    }

    @Test(
        "the textbook diagram's events relate as the diagram shows",
        arguments: [
            ("a", "b", ClockOrder.before), ("a", "f", .before), ("b", "c", .before),
            ("c", "d", .before), ("d", "f", .before), ("e", "f", .before), ("b", "f", .before),
            ("a", "e", .concurrent), ("b", "e", .concurrent), ("c", "e", .concurrent),
            ("d", "e", .concurrent), ("f", "a", .after), ("d", "b", .after), ("c", "c", .equal),
        ])
    func textbookRelations(x: String, y: String, order: ClockOrder) throws {
        let first = try #require(Self.textbook[x])
        let second = try #require(Self.textbook[y])
        #expect(first.compare(second) == order)
        #expect(first.compare(second) == ReferenceClock.compare(first.entries, second.entries))
    }

    @Test("every C code path this CPU supports agrees with the reference")
    func everyCodePath() {
        let paths = [CC_CLOCK_PATH_PORTABLE, CC_CLOCK_PATH_AVX2, CC_CLOCK_PATH_AVX512]
        defer { _ = cc_clock_select(CC_CLOCK_PATH_AUTO) }
        var tested = 0
        for path in paths where cc_clock_path_supported(path) {
            #expect(cc_clock_select(path) == CC_OK)
            tested += 1
            // Wide clocks and small values, so vector bodies, tails and every order all occur.
            var rng = SeededClockGenerator(seed: UInt64(path.rawValue))
            for _ in 0..<2000 {
                let a = rng.clock(maxWidth: 40, maxValue: 2)
                let b = rng.clock(near: a, maxWidth: 40, maxValue: 2)
                let name = String(cString: cc_clock_path_name(path))
                #expect(a.compare(b) == ReferenceClock.compare(a.entries, b.entries), "\(name): \(a) vs \(b)")
                #expect(a.dominates(b) == ReferenceClock.dominates(a.entries, b.entries), "\(name): \(a) vs \(b)")
                #expect(a.merging(b).entries == ReferenceClock.merge(a.entries, b.entries), "\(name): \(a), \(b)")
                var ticked = a
                let slot = Int.random(in: 0..<41, using: &rng)
                #expect(ticked.tick(slot) == a[slot] + 1, "\(name)")
            }
        }
        #expect(tested >= 1)
    }
}
