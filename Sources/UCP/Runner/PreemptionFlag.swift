import Synchronization

/// A request to stop one run of a guest early so that a more urgent job can have its worker.
///
/// The executor makes one flag per run and hands it to ``JobRunner/run(_:preemption:)``; any
/// thread may then call ``request()``. WasmKit cannot interrupt a guest from another thread, so
/// the guest stops at its next WASI call (every host function checks the flag, as it checks the
/// deadline) and the run ends with ``JobOutcome/preempted``. A compute-bound guest that makes no
/// WASI call keeps running until its next call, its end, or its fuel or time limit.
///
/// Thread-safe: an atomic, read without a lock on every WASI call.
public final class PreemptionFlag: Sendable {
    private let requested = Atomic<Bool>(false)

    /// A flag not yet raised.
    public init() {}

    /// Asks the run to stop at its next WASI call. Idempotent.
    public func request() {
        requested.store(true, ordering: .releasing)
    }

    /// True once ``request()`` was called.
    public var isRequested: Bool {
        requested.load(ordering: .acquiring)
    }
}
