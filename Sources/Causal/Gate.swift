#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif
import Synchronization

/// Keeps threads out of C memory that another thread is about to free.
///
/// The C loop and inbox free themselves once closed, while other threads may be calling
/// into them. Every such call enters the gate first (one atomic add) and leaves it after
/// (one atomic subtract); whoever frees sets a bit, so later entries fail, then waits
/// until the calls already inside have left. Calls inside are short and never block, so
/// the wait is a brief spin.
///
/// The state is one word: two flag bits and the number of threads inside, counted in
/// units of `one`. Because entering and setting a bit are read-modify-writes of the same
/// word, either an entry sees the bit or the setter sees the entry.
struct Gate: ~Copyable {
    /// Refuse new posts and sends; other calls still go in (an inbox being closed).
    static let closing: UInt = 1
    /// Refuse every call: the C object is being freed or is gone.
    static let closed: UInt = 2
    private static let one: UInt = 4

    private let state = Atomic<UInt>(0)

    init() {}

    /// Enters unless one of `bits` is set; returns whether it entered. Pair with `leave()`.
    func enter(unless bits: UInt) -> Bool {
        let old = state.wrappingAdd(Self.one, ordering: .acquiringAndReleasing).oldValue
        if old & bits != 0 {
            state.wrappingSubtract(Self.one, ordering: .acquiringAndReleasing)
            return false
        }
        return true
    }

    /// Leaves after a successful `enter(unless:)`.
    func leave() {
        state.wrappingSubtract(Self.one, ordering: .acquiringAndReleasing)
    }

    /// Sets `bits` and returns which of the flag bits were set before.
    @discardableResult
    func set(_ bits: UInt) -> UInt {
        state.bitwiseOr(bits, ordering: .acquiringAndReleasing).oldValue & (Self.one - 1)
    }

    /// True when any of `bits` is set.
    func isSet(_ bits: UInt) -> Bool {
        state.load(ordering: .acquiring) & bits != 0
    }

    /// Waits until no thread is inside. Call after setting a bit that keeps new ones out.
    func drain() {
        var spins = 0
        while state.load(ordering: .acquiring) >= Self.one {
            spins += 1
            if spins > 64 { sched_yield() }
        }
    }
}
