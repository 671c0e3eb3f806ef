import Causal
import Foundation
import Testing

@Suite("VectorClock")
struct VectorClockTests {
    @Test("init(width:) holds that many zeros")
    func zeros() {
        let clock = VectorClock(width: 4)
        #expect(clock.width == 4)
        #expect(clock.entries == [0, 0, 0, 0])
        #expect(VectorClock(width: 0).entries.isEmpty)
    }

    @Test("entries, subscript and copying initialiser read the same values")
    func reading() {
        let clock = VectorClock([5, 0, 9])
        #expect(clock.width == 3)
        #expect(clock.entries == [5, 0, 9])
        #expect(clock[0] == 5 && clock[1] == 0 && clock[2] == 9)
        #expect(clock[3] == 0 && clock[100] == 0, "slots past the width read 0")
        let literal: VectorClock = [5, 0, 9]
        #expect(literal.entries == clock.entries)
        let copy = [UInt64(5), 0, 9].withUnsafeBufferPointer { VectorClock(copying: $0) }
        #expect(copy.entries == [5, 0, 9])
    }

    @Test("setting a slot past the width widens the clock")
    func subscriptGrows() {
        var clock: VectorClock = [1]
        clock[3] = 7
        #expect(clock.entries == [1, 0, 0, 7])
        clock[1] = 2
        #expect(clock.entries == [1, 2, 0, 7])
    }

    @Test("tick returns the new entry and widens when needed")
    func tick() {
        var clock = VectorClock(width: 2)
        #expect(clock.tick(1) == 1)
        #expect(clock.tick(1) == 2)
        #expect(clock.tick(4) == 1)
        #expect(clock.entries == [0, 2, 0, 0, 1])
    }

    @Test("width can be set: wider pads with zeros, narrower drops entries")
    func settingWidth() {
        var clock: VectorClock = [1, 2, 3]
        clock.width = 5
        #expect(clock.entries == [1, 2, 3, 0, 0])
        #expect(clock == [1, 2, 3])
        clock.width = 1
        #expect(clock.entries == [1])
    }

    @Test("copies do not share mutations (copy-on-write)")
    func copyOnWrite() {
        let original: VectorClock = [1, 2, 3]
        var copy = original
        copy.tick(0)
        copy.merge([9, 9, 9, 9])
        copy[1] = 4
        #expect(original.entries == [1, 2, 3])
        var other = original
        other.withUnsafeMutableBufferPointer { $0[2] = 42 }
        #expect(other.entries == [1, 2, 42])
        #expect(original.entries == [1, 2, 3])
    }

    @Test("the unsafe buffers expose the stored entries")
    func unsafeBuffers() {
        var clock: VectorClock = [4, 5]
        #expect(clock.withUnsafeBufferPointer { Array($0) } == [4, 5])
        let count = clock.withUnsafeMutableBufferPointer { buffer in
            buffer[0] += 1
            return buffer.count
        }
        #expect(count == 2)
        #expect(clock.entries == [5, 5])
    }

    @Test(
        "narrower clocks compare as if padded with zeros",
        arguments: [
            ([1], [1, 0, 0], ClockOrder.equal),
            ([1], [1, 0, 1], .before),
            ([1, 0, 1], [1], .after),
            ([2], [1, 0, 1], .concurrent),
            ([], [0, 0], .equal),
            ([], [0, 3], .before),
            ([0, 0, 0, 1], [0, 1], .concurrent),
        ] as [([UInt64], [UInt64], ClockOrder)])
    func padding(a: [UInt64], b: [UInt64], order: ClockOrder) {
        let x = VectorClock(a)
        let y = VectorClock(b)
        #expect(x.compare(y) == order)
        #expect(y.compare(x) == order.reversed)
        #expect((x == y) == (order == .equal))
        #expect(x.dominates(y) == (order == .equal || order == .after))
        #expect(y.dominates(x) == (order == .equal || order == .before))
    }

    @Test("padded clocks are equal and hash alike, and merge to the wider width")
    func paddedHashing() {
        let short: VectorClock = [1]
        let long: VectorClock = [1, 0, 0]
        #expect(short == long)
        #expect(short.hashValue == long.hashValue)
        #expect(Set([short, long, [1, 0]]).count == 1)
        #expect(VectorClock([]).hashValue == VectorClock([0, 0]).hashValue)
        #expect(short != [1, 0, 1])
        #expect(short.merging(long).width == 3)
        #expect(Set<VectorClock>([[1, 2], [2, 1], [1, 2, 0]]).count == 2)
    }

    @Test(
        "description lists the entries",
        arguments: [([], "[]"), ([7], "[7]"), ([1, 0, 3], "[1, 0, 3]")] as [([UInt64], String)])
    func description(entries: [UInt64], text: String) {
        #expect(VectorClock(entries).description == text)
        #expect("\(VectorClock(entries))" == text)
    }

    @Test("encodes as a JSON array of integers")
    func exactJSON() throws {
        let data = try JSONEncoder().encode(VectorClock([1, 2, 3]))
        #expect(String(decoding: data, as: UTF8.self) == "[1,2,3]")
    }

    @Test(
        "round-trips through JSON",
        arguments: [[], [0], [1, 2, 3], [0, 0, 5, 0], [UInt64.max, 0, 1]] as [[UInt64]])
    func roundTrip(entries: [UInt64]) throws {
        let clock = VectorClock(entries)
        let decoded = try JSONDecoder().decode(VectorClock.self, from: JSONEncoder().encode(clock))
        #expect(decoded.entries == entries)
    }

    @Test(
        "decoding anything but an array of unsigned integers fails",
        arguments: ["{}", "\"[1,2]\"", "[1,-2]", "[1.5]", "[1,\"2\"]", "null", "[18446744073709551616]", "[[1]]", "7"])
    func decodingGarbage(json: String) {
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(VectorClock.self, from: Data(json.utf8))
        }
    }

    @Test(
        "ClockOrder describes itself",
        arguments: [
            (ClockOrder.before, "before"), (.after, "after"), (.equal, "equal"), (.concurrent, "concurrent"),
        ])
    func orderDescription(order: ClockOrder, text: String) {
        #expect(order.description == text)
    }
}
