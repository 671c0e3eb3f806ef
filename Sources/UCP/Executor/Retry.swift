import Foundation
import Logging

/// Retries a failing call with exponential backoff for a bounded time.
///
/// The first retry waits `initialDelay`, each next one twice as long up to `maxDelay`; no attempt
/// starts after `window` has passed since the first. Every failure is logged.
public struct RetryPolicy: Sendable, Hashable {
    /// The longest time spent retrying.
    public var window: Duration
    /// The pause after the first failure.
    public var initialDelay: Duration
    /// The longest pause between attempts.
    public var maxDelay: Duration

    /// A policy; see the properties.
    public init(window: Duration, initialDelay: Duration = .milliseconds(100), maxDelay: Duration = .seconds(5)) {
        self.window = window
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
    }

    /// Runs `operation` until it succeeds, the window is over (the last error is thrown) or the
    /// task is cancelled (`CancellationError`). `retryIf` decides which errors are worth another
    /// attempt; others are thrown at once.
    public func run<T: Sendable>(
        _ what: String, logger: Logger, retryIf: (any Error) -> Bool = { _ in true },
        _ operation: () async throws -> T
    ) async throws -> T {
        let clock = ContinuousClock()
        let deadline = clock.now + window
        var delay = initialDelay
        var attempt = 1
        while true {
            do {
                return try await operation()
            } catch {
                if error is CancellationError { throw error }
                let now = clock.now
                guard retryIf(error), now + delay < deadline else {
                    logger.error("\(what) failed after \(attempt) attempt(s): \(error)")
                    throw error
                }
                logger.warning("\(what) failed (attempt \(attempt)), retrying in \(delay): \(error)")
                try await Task.sleep(for: delay)
                delay = min(delay * 2, maxDelay)
                attempt += 1
            }
        }
    }
}
