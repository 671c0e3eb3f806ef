/// Counters of a `CausalDelivery` engine, all monotonically increasing.
///
/// A snapshot: a value that does not change when the engine does.
public struct DeliveryStatistics: Hashable, Sendable {
    /// Messages offered, whatever became of them.
    public var offered: UInt64
    /// Messages handed out by `next()`, plus local sends stamped by `send(from:)`.
    public var delivered: UInt64
    /// Offers dropped as already delivered or already pending.
    public var duplicates: UInt64
    /// Accepted offers that had to wait for a predecessor.
    public var heldBack: UInt64
    /// Offers refused with an error (full, ahead, width, sender, invalid).
    public var rejected: UInt64
    /// Deliveries that went ahead of a ready message of a lower emergency level.
    public var overtakes: UInt64

    /// A set of counters.
    public init(
        offered: UInt64 = 0, delivered: UInt64 = 0, duplicates: UInt64 = 0, heldBack: UInt64 = 0,
        rejected: UInt64 = 0, overtakes: UInt64 = 0
    ) {
        self.offered = offered
        self.delivered = delivered
        self.duplicates = duplicates
        self.heldBack = heldBack
        self.rejected = rejected
        self.overtakes = overtakes
    }
}
