import Causal
import Testing

@Suite("CausalMessage")
struct CausalMessageTests {
    @Test(
        "sequence is the sender's own clock entry",
        arguments: [
            (0, [3, 1, 2], UInt64(3)), (1, [3, 1, 2], 1), (2, [3, 1, 2], 2), (5, [3, 1, 2], 0), (0, [], 0),
        ] as [(Int, [UInt64], UInt64)])
    func sequence(sender: Int, entries: [UInt64], sequence: UInt64) {
        #expect(CausalMessage(sender: sender, clock: VectorClock(entries)).sequence == sequence)
    }

    @Test("a send's sequence counts the sender's messages")
    func sequenceFollowsTicks() {
        var clock = VectorClock(width: 3)
        var sequences: [UInt64] = []
        for _ in 0..<3 {
            clock.tick(1)
            sequences.append(CausalMessage(sender: 1, clock: clock).sequence)
        }
        #expect(sequences == [1, 2, 3])
    }

    @Test("defaults: LOW, kind 0, empty payload")
    func defaults() {
        let message = CausalMessage(sender: 0, clock: [1])
        #expect(message.level == .low)
        #expect(message.kind == 0)
        #expect(message.payload.isEmpty)
    }

    @Test("messages are equal when every field is, with clocks compared as padded")
    func equality() {
        let message = CausalMessage(sender: 1, clock: [0, 2], level: .high, kind: 7, payload: [1, 2])
        #expect(message == CausalMessage(sender: 1, clock: [0, 2, 0], level: .high, kind: 7, payload: [1, 2]))
        #expect(message != CausalMessage(sender: 1, clock: [0, 2], level: .critical, kind: 7, payload: [1, 2]))
        #expect(message != CausalMessage(sender: 1, clock: [0, 2], level: .high, kind: 8, payload: [1, 2]))
        #expect(message != CausalMessage(sender: 1, clock: [0, 2], level: .high, kind: 7, payload: [1]))
        #expect(message != CausalMessage(sender: 0, clock: [0, 2], level: .high, kind: 7, payload: [1, 2]))
        #expect(message != CausalMessage(sender: 1, clock: [1, 2], level: .high, kind: 7, payload: [1, 2]))
    }
}
