import Synchronization

/// Wakes one waiting task: ``signal()``, from any thread, ends the current ``wait(atMost:)``,
/// or the next one when no task waits (signals that come meanwhile count as one). A loop that
/// has work only when something changed waits here instead of polling.
final class Wakeup: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
        /// Numbers the waits, so that a timer left over from an earlier wait wakes no later one.
        var ticket: UInt64 = 0
    }

    private let state = Mutex(State())

    /// Wakes the waiting task, or the next one to wait.
    func signal() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard let waiter = s.waiter else {
                s.pending = true
                return nil
            }
            s.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Returns when signalled (at once when a signal came since the last wait), after `timeout`,
    /// or when the task is cancelled. One task waits at a time.
    func wait(atMost timeout: Duration) async {
        let ticket = state.withLock { s -> UInt64? in
            if s.pending {
                s.pending = false
                return nil
            }
            s.ticket &+= 1
            return s.ticket
        }
        guard let ticket else { return }
        let timer = Task { [weak self] in
            guard (try? await Task.sleep(for: timeout)) != nil else { return }
            self?.release(ticket)
        }
        defer { timer.cancel() }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    // Signalled, timed out or cancelled between the ticket and here: no wait.
                    if s.pending || s.ticket != ticket || Task.isCancelled {
                        s.pending = false
                        return true
                    }
                    s.waiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            self.release(ticket)
        }
    }

    /// Ends wait number `ticket`, if it is still the current one.
    private func release(_ ticket: UInt64) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard s.ticket == ticket else { return nil }
            s.ticket &+= 1
            let waiter = s.waiter
            s.waiter = nil
            return waiter
        }
        waiter?.resume()
    }
}
