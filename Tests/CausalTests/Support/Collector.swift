import Synchronization

/// Lines of a child process's output.
typealias LineLog = Collector<String>

/// Values arriving from another thread (a child process's output lines, a node's
/// deliveries), and a way for a test to wait, with a deadline, until they say what it expects.
///
/// `wait` suspends (it never sleeps on a timer in place of a condition): it is resumed when
/// a value arrives that makes the condition true, when the log finishes, or at the deadline.
final class Collector<Element: Sendable>: Sendable {
    private struct Waiter {
        let condition: @Sendable ([Element]) -> Bool
        let continuation: CheckedContinuation<Bool, Never>
    }

    private struct State {
        var values: [Element] = []
        var finished = false
        var nextID = 0
        var waiters: [Int: Waiter] = [:]
    }

    private let state = Mutex(State())

    init() {}

    /// Everything so far.
    var values: [Element] { state.withLock { $0.values } }

    /// Appends a value and resumes the waiters it satisfies.
    func append(_ value: Element) {
        let ready = state.withLock { state in
            state.values.append(value)
            let values = state.values
            return Self.take(from: &state) { $0.condition(values) }
        }
        for waiter in ready { waiter.continuation.resume(returning: true) }
    }

    /// No more values: resumes every waiter with whether its condition holds.
    func finish() {
        let (all, values) = state.withLock { state in
            state.finished = true
            return (Self.take(from: &state) { _ in true }, state.values)
        }
        for waiter in all { waiter.continuation.resume(returning: waiter.condition(values)) }
    }

    /// Waits until `condition` holds for the values (true), or until `deadline` or the end of
    /// the log without it (false).
    func wait(until deadline: ContinuousClock.Instant, for condition: @escaping @Sendable ([Element]) -> Bool) async
        -> Bool
    {
        await withCheckedContinuation { continuation in
            let registered: Int? = state.withLock { state in
                if condition(state.values) || state.finished { return nil }
                let id = state.nextID
                state.nextID += 1
                state.waiters[id] = Waiter(condition: condition, continuation: continuation)
                return id
            }
            guard let id = registered else {
                continuation.resume(returning: condition(values))
                return
            }
            Task {
                try? await Task.sleep(until: deadline, clock: .continuous)
                let expired = self.state.withLock { $0.waiters.removeValue(forKey: id) }
                expired?.continuation.resume(returning: false)
            }
        }
    }

    /// Waits until at least `count` values have arrived.
    func wait(forCount count: Int, until deadline: ContinuousClock.Instant) async -> Bool {
        await wait(until: deadline) { $0.count >= count }
    }

    private static func take(from state: inout State, where ready: (Waiter) -> Bool) -> [Waiter] {
        var taken: [Waiter] = []
        for (id, waiter) in state.waiters where ready(waiter) {
            taken.append(waiter)
            state.waiters.removeValue(forKey: id)
        }
        return taken
    }
}
