/// A vector clock: one counter per group member, stored contiguously.
///
/// `VectorClock` is a copy-on-write value: copies share storage until one of them is
/// mutated, so passing clocks around costs no allocation. Values may be sent between
/// threads freely; a single variable must not be mutated from two threads at once.
///
/// Groups grow, so clocks of different widths meet. Every operation treats the narrower
/// clock as if it were padded with zeros: `[1]`, `[1, 0]` and `[1, 0, 0]` are the same
/// clock, compare `.equal`, are `==` and hash alike. `width` and `entries` still report
/// the stored entries, trailing zeros included.
///
/// Comparison, merge, dominance and tick run in C (`cc_clock_*`), on the widest SIMD path
/// the CPU supports. They take O(width) time.
public struct VectorClock: Sendable {
    @usableFromInline var storage: [UInt64]

    /// A clock of `width` zero entries. Requires `width >= 0`.
    public init(width: Int) {
        precondition(width >= 0, "a clock's width cannot be negative (\(width))")
        storage = Array(repeating: 0, count: width)
    }

    /// A clock holding `entries`, one per slot.
    public init(_ entries: [UInt64]) {
        storage = entries
    }

    /// A clock holding a copy of the entries in `buffer`.
    public init(copying buffer: UnsafeBufferPointer<UInt64>) {
        storage = Array(buffer)
    }

    /// The number of stored entries.
    ///
    /// Setting a larger width appends zeros, which leaves the clock's value unchanged.
    /// Setting a smaller width drops the entries past it. Requires a width >= 0.
    public var width: Int {
        get { storage.count }
        set {
            precondition(newValue >= 0, "a clock's width cannot be negative (\(newValue))")
            if newValue > storage.count {
                storage.append(contentsOf: repeatElement(0, count: newValue - storage.count))
            } else if newValue < storage.count {
                storage.removeLast(storage.count - newValue)
            }
        }
    }

    /// The stored entries, one per slot. O(1): shares the clock's storage.
    public var entries: [UInt64] { storage }

    /// The entry for `slot`; slots at or past `width` read 0. Setting a slot past `width`
    /// widens the clock. Requires `slot >= 0`.
    public subscript(slot: Int) -> UInt64 {
        get {
            precondition(slot >= 0, "negative clock slot \(slot)")
            return slot < storage.count ? storage[slot] : 0
        }
        set {
            precondition(slot >= 0, "negative clock slot \(slot)")
            if slot >= storage.count { width = slot + 1 }
            storage[slot] = newValue
        }
    }

    /// Increments the entry for `slot` (widening the clock when `slot >= width`) and
    /// returns its new value: the sequence number of the event this tick records.
    /// Requires `slot >= 0` and an entry below `UInt64.max`.
    @discardableResult
    public mutating func tick(_ slot: Int) -> UInt64 {
        precondition(slot >= 0, "negative clock slot \(slot)")
        if slot >= storage.count { width = slot + 1 }
        precondition(storage[slot] < .max, "clock slot \(slot) would overflow")
        return storage.withUnsafeMutableBufferPointer { ClockKernel.tick($0, slot: slot) }
    }

    /// Sets every entry to the larger of its own and `other`'s (element-wise max),
    /// widening this clock to `other`'s width when that is larger.
    @inlinable
    public mutating func merge(_ other: VectorClock) {
        // Inlinable so that a same-width merge reaches C without a Swift call in between (the clock
        // benchmarks measure the difference at small widths).
        if other.storage.count > storage.count { width = other.storage.count }
        storage.withUnsafeMutableBufferPointer { destination in
            other.storage.withUnsafeBufferPointer { source in
                ClockKernel.merge(into: destination, from: source)
            }
        }
    }

    /// The element-wise max of this clock and `other`, as wide as the wider of the two.
    public func merging(_ other: VectorClock) -> VectorClock {
        var result = self
        result.merge(other)
        return result
    }

    /// How this clock relates to `other` in the happened-before order.
    ///
    /// The common prefix is compared in C; a nonzero entry in the wider clock's tail then
    /// counts as that clock being ahead in that slot.
    @inlinable
    public func compare(_ other: VectorClock) -> ClockOrder {
        // Same widths (the common case) go straight to C; inlinable for the same reason as merge.
        if storage.count == other.storage.count {
            return storage.withUnsafeBufferPointer { a in
                other.storage.withUnsafeBufferPointer { b in ClockKernel.compare(a, b, count: a.count) }
            }
        }
        return compareMixedWidths(other)
    }

    /// `compare` for clocks of different widths: the common prefix in C, then the longer tail.
    @usableFromInline
    func compareMixedWidths(_ other: VectorClock) -> ClockOrder {
        storage.withUnsafeBufferPointer { a in
            other.storage.withUnsafeBufferPointer { b in
                let common = min(a.count, b.count)
                var order = ClockKernel.compare(a, b, count: common)
                if Self.hasNonzeroEntry(a, from: common) { order = order.combined(with: .after) }
                if Self.hasNonzeroEntry(b, from: common) { order = order.combined(with: .before) }
                return order
            }
        }
    }

    /// True when this clock happened before `other`: `compare(other) == .before`.
    public func happened(before other: VectorClock) -> Bool {
        compare(other) == .before
    }

    /// True when neither clock happened before the other and they differ.
    public func isConcurrent(with other: VectorClock) -> Bool {
        compare(other) == .concurrent
    }

    /// True when every entry of this clock is at least `other`'s (`.after` or `.equal`).
    public func dominates(_ other: VectorClock) -> Bool {
        storage.withUnsafeBufferPointer { a in
            other.storage.withUnsafeBufferPointer { b in
                let common = min(a.count, b.count)
                return ClockKernel.dominates(a, b, count: common) && !Self.hasNonzeroEntry(b, from: common)
            }
        }
    }

    /// Calls `body` with the stored entries. The pointer is valid only inside `body`.
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<UInt64>) throws -> R) rethrows -> R {
        try storage.withUnsafeBufferPointer(body)
    }

    /// Calls `body` with the stored entries, which it may change in place (but not resize).
    /// Copies shared storage first. The pointer is valid only inside `body`.
    public mutating func withUnsafeMutableBufferPointer<R>(
        _ body: (UnsafeMutableBufferPointer<UInt64>) throws -> R
    ) rethrows -> R {
        try storage.withUnsafeMutableBufferPointer { try body($0) }
    }

    /// The width without trailing zeros: the shortest clock equal to this one.
    var significantWidth: Int {
        (storage.lastIndex { $0 != 0 } ?? -1) + 1
    }

    private static func hasNonzeroEntry(_ buffer: UnsafeBufferPointer<UInt64>, from start: Int) -> Bool {
        var index = start
        while index < buffer.count {
            if buffer[index] != 0 { return true }
            index += 1
        }
        return false
    }
}

extension VectorClock: Hashable {
    /// True when the clocks hold the same entries once the narrower is padded with zeros.
    public static func == (lhs: VectorClock, rhs: VectorClock) -> Bool {
        let width = lhs.significantWidth
        return width == rhs.significantWidth && lhs.storage[..<width].elementsEqual(rhs.storage[..<width])
    }

    /// Hashes the entries up to the last nonzero one, so padded clocks hash alike.
    public func hash(into hasher: inout Hasher) {
        let width = significantWidth
        hasher.combine(width)
        storage.withUnsafeBufferPointer { buffer in
            hasher.combine(bytes: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: buffer[..<width])))
        }
    }
}

extension VectorClock: ExpressibleByArrayLiteral {
    /// A clock holding the listed entries: `let clock: VectorClock = [1, 0, 3]`.
    public init(arrayLiteral entries: UInt64...) {
        self.init(entries)
    }
}
