import Foundation

/// The version of a replicated write: the sum of the writing broker's clock entries when it sent
/// the write (``ClockStamp/entrySum``, which never wraps), then that broker's id.
///
/// Ordered by `(sum, origin)`. A write that happened after another (its broker had seen the
/// other's clock) has a larger sum, so the order extends the causal order to a total one: every
/// broker resolves concurrent writes of one row alike (last writer wins in that order).
struct RowVersion: Sendable, Hashable, Codable, Comparable {
    /// Sum of the clock's entries.
    var sum: UInt64
    /// The broker that wrote.
    var origin: String

    /// A version.
    init(sum: UInt64, origin: String) {
        self.sum = sum
        self.origin = origin
    }

    /// The version of a write stamped `stamp` by `origin`.
    init(stamp: ClockStamp, origin: String) {
        self.init(sum: stamp.entrySum, origin: origin)
    }

    /// `(sum, origin)` order.
    static func < (a: RowVersion, b: RowVersion) -> Bool {
        (a.sum, a.origin) < (b.sum, b.origin)
    }
}
