import Foundation
import Testing
@testable import UCP

@Suite("Node clocks: members tick, dotted nodes number their events")
struct NodeClockTests {
    @Test("a member ticks its own entry for events and receipts and merges by maximum")
    func member() {
        let broker = NodeClock(nodeID: "b1", role: .member)
        #expect(broker.now().clock == ["b1": 0])
        #expect(broker.event().clock == ["b1": 1])
        let after = broker.receive(["b1": 0, "b2": 7], from: .group)
        #expect(after.clock == ["b1": 2, "b2": 7])
        #expect(after.dot == nil)
        #expect(broker.width == 2)
    }

    @Test("a dotted node owns no entry: width stays the brokers' however many events it has")
    func dotted() {
        let executor = NodeClock(nodeID: "x", role: .dotted)
        executor.receive(["b1": 3], from: .group)
        let first = executor.event()
        let second = executor.event()
        #expect(first == ClockStamp(clock: ["b1": 3], dot: Dot(node: "x", seq: 1)))
        #expect(second.dot == Dot(node: "x", seq: 2))
        #expect(first.compare(second) == .before)
        #expect(executor.width == 1)
        #expect(executor.receive(["b1": 1]).clock == ["b1": 3])
    }

    @Test(
        "stamps compare as vector clocks",
        arguments: [
            (["a": 1], ["a": 2], StampOrder.before),
            (["a": 2, "b": 0], ["a": 2], StampOrder.equal),
            (["a": 3], ["a": 2, "b": 1], StampOrder.concurrent),
            (["a": 3, "b": 1], ["a": 2], StampOrder.after),
        ])
    func compare(a: [String: UInt64], b: [String: UInt64], order: StampOrder) {
        #expect(ClockStamp(clock: a).compare(ClockStamp(clock: b)) == order)
    }

    @Test("the clock header round-trips as a JSON object with sorted keys")
    func header() throws {
        let stamp = ClockStamp(clock: ["b2": 5, "b1": 18_446_744_073_709_551_615])
        #expect(stamp.clockHeaderValue == #"{"b1":18446744073709551615,"b2":5}"#)
        #expect(try ClockStamp.clock(fromHeader: stamp.clockHeaderValue) == stamp.clock)
        #expect(Dot(header: "exec-1:42") == Dot(node: "exec-1", seq: 42))
    }

    @Test(
        "malformed clock headers are refused with a reason",
        arguments: [
            "[1,2]", #"{"a":-1}"#, #"{"a":"1"}"#, "not json", #"{"":1}"#,
            "{" + (0..<1025).map { #""n\#($0)":1"# }.joined(separator: ",") + "}",
        ])
    func malformed(value: String) {
        #expect(throws: ClockHeaderError.self) { try ClockStamp.clock(fromHeader: value) }
    }

    @Test("a member takes back a few of its own ticks from a received clock, never a claim far ahead")
    func ownEntryBounded() {
        let broker = NodeClock(nodeID: "b1", role: .member, clock: ["b1": 10])
        // Restarted from a saved 10 while a client saw 20: it catches up, then ticks the receipt.
        #expect(broker.receive(["b1": 20]).clock["b1"] == 21)
        // A forged claim at the top of the range does not move the entry: the receipt ticks from 21.
        #expect(broker.receive(["b1": UInt64.max, "b2": 7], from: .group).clock == ["b1": 22, "b2": 7])
        #expect(broker.receive(["b1": 22 + NodeClock.maxOwnCatchUp + 1]).clock["b1"] == 23)
        #expect(broker.event().clock["b1"] == 24)
    }

    @Test("a peer's clock moves only the entries a node knows, each by a bounded step")
    func peerBounded() {
        let broker = NodeClock(nodeID: "b1", role: .member, clock: ["b2": 5])
        // A stranger's clock: the unknown id is ignored, the forged value becomes a bounded step.
        let after = broker.receive(["b2": UInt64.max, "stranger": 9])
        #expect(after.clock == ["b1": 1, "b2": 5 + NodeClock.maxAdvance])
        #expect(broker.receive(["b2": 7]).clock == ["b1": 2, "b2": 5 + NodeClock.maxAdvance])

        // A dotted node learns the group only from the group (its broker's answers).
        let executor = NodeClock(nodeID: "x", role: .dotted)
        #expect(executor.receive(["b1": 3]).clock.isEmpty)
        #expect(executor.receive(["b1": 3], from: .group).clock == ["b1": 3])
        #expect(executor.receive(["b1": 10, "b9": 1]).clock == ["b1": 10])
    }

    @Test("even the group cannot widen a clock past the widest accepted")
    func groupWidthBounded() {
        let executor = NodeClock(nodeID: "x", role: .dotted)
        let wide = Dictionary(uniqueKeysWithValues: (0..<(ClockStamp.maxEntries + 50)).map { ("b\($0)", UInt64(1)) })
        #expect(executor.receive(wide, from: .group).clock.count == ClockStamp.maxEntries)
    }

    @Test("the entry sum that orders concurrent writes saturates instead of wrapping")
    func entrySum() {
        #expect(ClockStamp(clock: ["a": 2, "b": 3]).entrySum == 5)
        let huge = ClockStamp(clock: ["a": UInt64.max, "b": 2])
        #expect(huge.entrySum == UInt64(Int64.max))
        #expect(ClockStamp(clock: ["a": UInt64(Int64.max), "b": 1]).entrySum == UInt64(Int64.max))
        #expect(RowVersion(stamp: huge, origin: "b1") > RowVersion(stamp: ClockStamp(clock: ["a": 9]), origin: "b9"))
    }

    @Test("malformed dots are refused", arguments: ["", "x", ":1", "x:", "x:-1", "x:1.5"])
    func malformedDot(value: String) {
        #expect(Dot(header: value) == nil)
    }
}
