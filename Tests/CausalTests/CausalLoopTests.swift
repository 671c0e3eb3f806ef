import Causal
import Dispatch
import Synchronization
import Testing

@Suite("CausalLoop")
struct CausalLoopTests {
    @Test("execute runs closures on the loop thread, in call order", .timeLimit(.minutes(1)))
    func executeOnLoopThread() async throws {
        let loop = try CausalLoop()
        defer { loop.shutdown() }
        #expect(!loop.isOnLoopThread)
        let (events, sink) = AsyncStream<(Int, Bool)>.makeStream()
        for i in 0..<200 {
            try loop.execute { sink.yield((i, loop.isOnLoopThread)) }
        }
        var seen: [Int] = []
        for await (i, onLoop) in events {
            #expect(onLoop)
            seen.append(i)
            if seen.count == 200 { break }
        }
        #expect(seen == Array(0..<200))
    }

    @Test("run returns the closure's value from the loop thread", .timeLimit(.minutes(1)))
    func runReturnsValues() async throws {
        let loop = try CausalLoop()
        defer { loop.shutdown() }
        #expect(try await loop.run { 6 * 7 } == 42)
        #expect(try await loop.run { "on the loop" } == "on the loop")
        #expect(try await loop.run { loop.isOnLoopThread })
        let values = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<50 { group.addTask { try await loop.run { i * i } } }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(values.sorted() == (0..<50).map { $0 * $0 })
    }

    @Test(
        "shutdown runs the closures already accepted, twice is fine, and later calls throw closed",
        .timeLimit(.minutes(1)))
    func shutdown() async throws {
        let loop = try CausalLoop()
        let ran = Atomic<Int>(0)
        let counter = LoopCounter()
        for _ in 0..<100 { try loop.execute { counter.add() } }
        loop.shutdown()
        #expect(counter.value == 100)
        loop.shutdown()
        #expect(!loop.isOnLoopThread)

        let error = #expect(throws: CausalDeliveryError.self) { try loop.execute { ran.add(1, ordering: .relaxed) } }
        #expect(error?.reason == .closed)
        await #expect(throws: CausalDeliveryError(.closed)) { try await loop.run { 1 } }
        #expect(ran.load(ordering: .relaxed) == 0)
    }

    @Test("shutdown from several threads at once stops the loop once", .timeLimit(.minutes(1)))
    func concurrentShutdown() throws {
        let loop = try CausalLoop()
        DispatchQueue.concurrentPerform(iterations: 4) { _ in loop.shutdown() }
        #expect(throws: CausalDeliveryError(.closed)) { try loop.execute {} }
    }

    @Test("a full call queue throws full until the loop catches up", .timeLimit(.minutes(1)))
    func fullCallQueue() async throws {
        let loop = try CausalLoop(callCapacity: 4)
        defer { loop.shutdown() }
        let started = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        try loop.execute {
            started.signal()
            release.wait()
        }
        started.wait()  // the blocking call has left the queue: all 4 slots are free
        let (ran, sink) = AsyncStream<Int>.makeStream()
        for i in 0..<4 { try loop.execute { sink.yield(i) } }
        let error = #expect(throws: CausalDeliveryError.self) { try loop.execute { sink.yield(4) } }
        #expect(error?.reason == .full)
        release.signal()
        var seen: [Int] = []
        for await i in ran {
            seen.append(i)
            if seen.count == 4 { break }
        }
        #expect(seen == [0, 1, 2, 3])
        #expect(try await loop.run { true })  // slots are free again
    }

    @Test("the last reference released on the loop thread does not deadlock", .timeLimit(.minutes(1)))
    func releasedOnLoopThread() async throws {
        let (done, sink) = AsyncStream<Void>.makeStream()
        do {
            let loop = try CausalLoop()
            try loop.execute { [loop] in
                _ = loop.isOnLoopThread
                sink.yield()
            }
        }
        for await _ in done { break }
    }
}

/// A counter the loop thread bumps and tests read.
final class LoopCounter: Sendable {
    private let count = Atomic<Int>(0)
    func add() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}
