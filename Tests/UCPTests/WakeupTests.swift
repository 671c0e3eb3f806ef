import Testing

@testable import UCP

@Suite("Wakeup: a loop sleeps until something changed", .timeLimit(.minutes(1)))
struct WakeupTests {
    @Test("a signal given before the wait ends it at once; two signals count as one")
    func pendingSignal() async {
        let wakeup = Wakeup()
        wakeup.signal()
        wakeup.signal()
        let start = ContinuousClock.now
        await wakeup.wait(atMost: .seconds(50))
        #expect(ContinuousClock.now - start < .seconds(25))
        // The two signals were one: this wait runs to its timeout.
        let again = ContinuousClock.now
        await wakeup.wait(atMost: .milliseconds(50))
        #expect(ContinuousClock.now - again >= .milliseconds(50))
    }

    @Test("a signal from another task wakes the waiting one")
    func wakesWaiter() async {
        let wakeup = Wakeup()
        let (started, startedSink) = AsyncStream.makeStream(of: Void.self)
        let waiter = Task {
            startedSink.yield()
            let start = ContinuousClock.now
            await wakeup.wait(atMost: .seconds(50))
            return ContinuousClock.now - start
        }
        for await _ in started { break }
        wakeup.signal()
        #expect(await waiter.value < .seconds(25))
    }

    @Test("cancelling the waiting task ends its wait; a stale timer wakes no later wait")
    func cancellation() async {
        let wakeup = Wakeup()
        let waiter = Task { await wakeup.wait(atMost: .seconds(50)) }
        waiter.cancel()
        await waiter.value
        // Short waits one after another: each lasts its own timeout, none is ended by an earlier timer.
        for _ in 0..<5 {
            let start = ContinuousClock.now
            await wakeup.wait(atMost: .milliseconds(20))
            #expect(ContinuousClock.now - start >= .milliseconds(20))
        }
    }
}
