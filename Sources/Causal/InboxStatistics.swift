import CCausal

/// Counters of a `CausalInbox`, all monotonically increasing except `pending`.
///
/// A snapshot read from any thread; the counters are read one by one, so under load they
/// may be a few messages apart from each other. After the inbox has closed it holds the
/// values at the close.
public struct InboxStatistics: Hashable, Sendable {
    /// Messages the loop took from the queue (posts and local sends).
    public var posted: UInt64
    /// `onDeliver` calls.
    public var delivered: UInt64
    /// Local sends stamped (`broadcast`).
    public var sent: UInt64
    /// Posted messages dropped as already delivered or already pending.
    public var duplicates: UInt64
    /// Posted messages that had to wait for a predecessor.
    public var heldBack: UInt64
    /// Posted messages refused for any reason but duplication.
    public var rejected: UInt64
    /// Deliveries that went ahead of a ready message of a lower emergency level.
    public var overtakes: UInt64
    /// Times the loop thread woke up and drained the queue.
    public var wakeups: UInt64
    /// Messages the delivery engine holds now.
    public var pending: UInt64

    /// A set of counters.
    public init(
        posted: UInt64 = 0, delivered: UInt64 = 0, sent: UInt64 = 0, duplicates: UInt64 = 0, heldBack: UInt64 = 0,
        rejected: UInt64 = 0, overtakes: UInt64 = 0, wakeups: UInt64 = 0, pending: UInt64 = 0
    ) {
        self.posted = posted
        self.delivered = delivered
        self.sent = sent
        self.duplicates = duplicates
        self.heldBack = heldBack
        self.rejected = rejected
        self.overtakes = overtakes
        self.wakeups = wakeups
        self.pending = pending
    }

    init(_ s: cc_inbox_stats) {
        self.init(
            posted: s.posted, delivered: s.delivered, sent: s.sent, duplicates: s.duplicates, heldBack: s.held_back,
            rejected: s.rejected, overtakes: s.overtakes, wakeups: s.wakeups, pending: s.pending)
    }
}
