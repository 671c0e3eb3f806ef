import Causal
import Testing

/// The README's Swift example, kept compiling and true.
@Suite("README example")
struct ReadmeExampleTests {
    @Test("clocks")
    func clocks() {
        var a = VectorClock(width: 3)
        a.tick(0)
        #expect(a == [1, 0, 0])
        var b = a
        b.tick(1)
        #expect(b == [1, 1, 0])
        #expect(a.compare(b) == .before)
        #expect(a.happened(before: b))
        a.merge(VectorClock([0, 0, 5]))
        #expect(a == [1, 0, 5])
        #expect(a.isConcurrent(with: b))
    }

    @Test("causal delivery on a loop thread", .timeLimit(.minutes(1)))
    func inbox() async throws {
        let (delivered, sink) = AsyncStream<[UInt64]>.makeStream()
        let loop = try CausalLoop()
        let inbox = try CausalInbox(
            loop: loop, width: 3, slot: 2,
            onDeliver: { message in
                sink.yield(Array(message.clock))  // runs on the loop thread, in causal order
            })
        try inbox.post(CausalMessage(sender: 1, clock: VectorClock([1, 1, 0]), payload: Array("after".utf8)))
        try inbox.post(CausalMessage(sender: 0, clock: VectorClock([1, 0, 0]), payload: Array("first".utf8)))
        var order: [[UInt64]] = []
        for await clock in delivered {
            order.append(clock)
            if order.count == 2 { break }
        }
        #expect(order == [[1, 0, 0], [1, 1, 0]])
        await inbox.close()
        loop.shutdown()
    }
}
