import Synchronization

/// Something the loop thread announces and tasks wait for: room in a send window or a
/// buffer pool, a log of broadcasts that emptied. The C callbacks `room` and `acked` call
/// `signal()`; a waiting task is resumed by it, with no timer but the one for its deadline.
///
/// Waiting without missing a signal: read `epoch`, then try (broadcast, post) or look (is
/// everything acknowledged?), and only if that failed, `wait(after:until:)` with the epoch
/// read before. A signal that came after the read ends the wait at once, so the moment the
/// try failed and the moment the task suspends leave no gap; the C side guarantees that a
/// failed try is followed by a signal once things change (see `cc_node_callbacks`).
///
/// Thread safety: every member from any thread. `signal()` costs a lock and allocates
/// nothing when nobody waits; a wait allocates (a continuation and a deadline task).
final class LoopSignal: Sendable {
    /// How a wait ended.
    enum Outcome: Equatable, Sendable {
        /// `signal()` was called after the epoch the wait started from: try again.
        case signalled
        /// The deadline passed first.
        case timedOut
        /// The waiting task was cancelled.
        case cancelled
        /// `close()` was called: no signal will come any more.
        case closed
    }

    private struct State {
        var epoch: UInt64 = 0
        var closed = false
        var lastWaiter: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Outcome, Never>] = [:]
    }

    private let state = Mutex(State())

    init() {}

    /// Signals so far: read it before the try that a wait follows.
    var epoch: UInt64 {
        state.withLock { $0.epoch }
    }

    /// Wakes every waiter (they try again); loop thread, from a C callback.
    func signal() {
        let waiters = state.withLock { state -> [UInt64: CheckedContinuation<Outcome, Never>] in
            state.epoch &+= 1
            guard !state.waiters.isEmpty else { return [:] }
            defer { state.waiters = [:] }
            return state.waiters
        }
        for waiter in waiters.values { waiter.resume(returning: .signalled) }
    }

    /// Ends every wait, now and later, with `.closed`: the object that signals has closed.
    func close() {
        let waiters = state.withLock { state -> [UInt64: CheckedContinuation<Outcome, Never>] in
            state.closed = true
            defer { state.waiters = [:] }
            return state.waiters
        }
        for waiter in waiters.values { waiter.resume(returning: .closed) }
    }

    /// Suspends until a signal after `epoch`, `close()`, `deadline` or the task's
    /// cancellation, whichever comes first; returns at once when one of them already has.
    func wait(after epoch: UInt64, until deadline: ContinuousClock.Instant) async -> Outcome {
        let (id, early) = state.withLock { state -> (UInt64, Outcome?) in
            if state.closed { return (0, .closed) }
            if state.epoch != epoch { return (0, .signalled) }
            state.lastWaiter &+= 1
            return (state.lastWaiter, nil)
        }
        if let early { return early }  // no timer for a wait that is over already
        // The one timer: it fires at the deadline, or is cancelled when the wait ends first.
        let timer = Task {
            do {
                try await Task.sleep(until: deadline, clock: .continuous)
            } catch {
                return
            }
            self.end(id, with: .timedOut)
        }
        defer { timer.cancel() }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Outcome, Never>) in
                // Under the lock, so that `end` finds the waiter or the waiter sees what `end`
                // saw: cancellation is flagged before its handler runs, and a timer that fired
                // did so at or after the deadline.
                let now = state.withLock { state -> Outcome? in
                    if state.closed { return .closed }
                    if state.epoch != epoch { return .signalled }
                    if Task.isCancelled { return .cancelled }
                    if ContinuousClock.now >= deadline { return .timedOut }
                    state.waiters[id] = continuation
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            self.end(id, with: .cancelled)
        }
    }

    /// Resumes waiter `id` with `outcome` unless it has been resumed already.
    private func end(_ id: UInt64, with outcome: Outcome) {
        let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
        waiter?.resume(returning: outcome)
    }
}
