import Causal
import Foundation
import Testing
import UCP

@Suite("EmergencyMode applies notices in causal order")
struct EmergencyModeTests {
    static func notice(_ level: EmergencyLevel?, origin: String, _ clock: [String: UInt64]) -> EmergencyNotice {
        EmergencyNotice(level: level, reason: "test", origin: origin, stamp: ClockStamp(clock: clock))
    }

    /// Every order of `items`.
    static func permutations<T>(_ items: [T]) -> [[T]] {
        guard items.count > 1 else { return [items] }
        return items.indices.flatMap { i in
            var rest = items
            let first = rest.remove(at: i)
            return permutations(rest).map { [first] + $0 }
        }
    }

    @Test("concurrent notices converge on the same one whatever the order of arrival")
    func concurrentConverge() {
        let a = Self.notice(.high, origin: "b1", ["b1": 1])
        let b = Self.notice(.critical, origin: "b2", ["b2": 1])
        let c = Self.notice(.medium, origin: "b3", ["b3": 1])
        var winners: Set<EmergencyNotice> = []
        for order in Self.permutations([a, b, c]) {
            var mode = EmergencyMode()
            for notice in order { mode.apply(notice) }
            winners.insert(try! #require(mode.current))
        }
        #expect(winners.count == 1)
        // The tie-break between concurrent notices: the larger origin.
        #expect(winners.first == c)
    }

    @Test("a notice after every other wins, in any order of arrival; duplicates change nothing")
    func causalOrder() {
        let a = Self.notice(.high, origin: "b1", ["b1": 1])
        let b = Self.notice(.critical, origin: "b2", ["b2": 1])
        let clear = Self.notice(nil, origin: "b1", ["b1": 2, "b2": 1])
        for order in Self.permutations([a, b, clear, a, clear]) {
            var mode = EmergencyMode()
            for notice in order { mode.apply(notice) }
            #expect(mode.current == clear)
            #expect(mode.level == nil)
            #expect(mode.applied.last == clear)
            #expect(Set(mode.applied.map(\.id)).count == mode.applied.count)
        }
    }

    @Test("a stale notice, causally before the current one, is dropped")
    func staleDropped() {
        let early = Self.notice(.critical, origin: "b1", ["b1": 1])
        let late = Self.notice(.low, origin: "b1", ["b1": 2])
        var mode = EmergencyMode()
        let first = mode.apply(late)
        let stale = mode.apply(early)
        let again = mode.apply(late)
        #expect(first)
        #expect(!stale)
        #expect(!again)
        #expect(mode.current == late)
        #expect(mode.level == .low)
        #expect(mode.applied == [late])
    }
}
