import CCausal

/// The one place this module calls the C clock operations.
///
/// Every function takes buffers of the same width, as the C functions do;
/// `VectorClock` pads mismatched widths in Swift before and after calling in.
@usableFromInline
enum ClockKernel {
    /// Increments `clock[slot]` and returns the new value. Requires `slot < clock.count`.
    static func tick(_ clock: UnsafeMutableBufferPointer<UInt64>, slot: Int) -> UInt64 {
        precondition(slot >= 0 && slot < clock.count, "slot \(slot) outside a clock of width \(clock.count)")
        return cc_clock_tick(clock.baseAddress!, clock.count, slot)
    }

    /// `destination[k] = max(destination[k], source[k])` for every `k < source.count`.
    @inlinable
    static func merge(into destination: UnsafeMutableBufferPointer<UInt64>, from source: UnsafeBufferPointer<UInt64>) {
        precondition(source.count <= destination.count, "merge source wider than its destination")
        guard source.count > 0 else { return }
        cc_clock_merge(destination.baseAddress!, source.baseAddress!, source.count)
    }

    /// Compares the first `count` entries of `a` and `b`.
    @inlinable
    static func compare(_ a: UnsafeBufferPointer<UInt64>, _ b: UnsafeBufferPointer<UInt64>, count: Int) -> ClockOrder {
        precondition(count <= a.count && count <= b.count, "compare past the end of a clock")
        guard count > 0 else { return .equal }
        switch cc_clock_compare(a.baseAddress!, b.baseAddress!, count) {
        case CC_ORDER_EQUAL: return .equal
        case CC_ORDER_BEFORE: return .before
        case CC_ORDER_AFTER: return .after
        case CC_ORDER_CONCURRENT: return .concurrent
        case let order: preconditionFailure("cc_clock_compare returned \(order.rawValue)")
        }
    }

    /// True when `a[k] >= b[k]` for every `k < count`.
    static func dominates(_ a: UnsafeBufferPointer<UInt64>, _ b: UnsafeBufferPointer<UInt64>, count: Int) -> Bool {
        precondition(count <= a.count && count <= b.count, "dominates past the end of a clock")
        guard count > 0 else { return true }
        return cc_clock_dominates(a.baseAddress!, b.baseAddress!, count)
    }
}
