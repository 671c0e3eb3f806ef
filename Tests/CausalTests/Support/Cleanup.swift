import Synchronization

/// Async clean-up steps (closing nodes, ending processes, removing folders) that run after a
/// test body whether it returns or throws, newest first: `defer` cannot `await`.
final class Cleanup: Sendable {
    private let steps = Mutex<[@Sendable () async -> Void]>([])

    /// Adds a step.
    func add(_ step: @escaping @Sendable () async -> Void) {
        steps.withLock { $0.append(step) }
    }

    fileprivate func run() async {
        let all = steps.withLock { steps in
            defer { steps = [] }
            return steps
        }
        for step in all.reversed() { await step() }
    }
}

/// Runs `body` with a `Cleanup`, then its steps, whatever `body` did.
func withCleanup<T>(_ body: (Cleanup) async throws -> T) async throws -> T {
    let cleanup = Cleanup()
    do {
        let result = try await body(cleanup)
        await cleanup.run()
        return result
    } catch {
        await cleanup.run()
        throw error
    }
}
