import Foundation
import Synchronization

/// A fixed set of threads that run blocking work, so that guests (which cannot be interrupted)
/// never occupy Swift's cooperative pool, which the HTTP server needs.
///
/// Work is queued first in, first out; `run` suspends its caller until the work is done.
/// Thread-safe. Call ``shutdown()`` to let the threads end once the queue is empty.
final class WorkerPool: Sendable {
    private struct State {
        var queue: [@Sendable () -> Void] = []
        var head = 0
        var closed = false
    }

    private let state = Mutex(State())
    private let available = DispatchSemaphore(value: 0)
    /// The number of threads.
    let count: Int

    /// Starts `count` threads named `name-0`, `name-1`, ...
    init(count: Int, name: String) {
        precondition(count > 0, "a pool needs at least one thread")
        self.count = count
        for index in 0..<count {
            let thread = Thread { [self] in self.loop() }
            thread.name = "\(name)-\(index)"
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    /// Runs `work` on one of the threads and returns its result.
    ///
    /// - Throws: `CancellationError` when the pool was shut down before the work was queued.
    func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let queued = state.withLock { state -> Bool in
                guard !state.closed else { return false }
                state.queue.append { continuation.resume(returning: work()) }
                return true
            }
            if queued {
                available.signal()
            } else {
                continuation.resume(throwing: CancellationError())
            }
        }
    }

    /// Refuses new work; the threads end after the work already queued.
    func shutdown() {
        let wasOpen = state.withLock { state -> Bool in
            defer { state.closed = true }
            return !state.closed
        }
        if wasOpen {
            for _ in 0..<count { available.signal() }
        }
    }

    private func loop() {
        while true {
            available.wait()
            let next = state.withLock { state -> (@Sendable () -> Void)? in
                guard state.head < state.queue.count else { return nil }
                let work = state.queue[state.head]
                state.head += 1
                if state.head > 64, state.head * 2 > state.queue.count {
                    state.queue.removeFirst(state.head)
                    state.head = 0
                }
                return work
            }
            guard let next else { return }  // woken by shutdown with nothing left
            next()
        }
    }
}
