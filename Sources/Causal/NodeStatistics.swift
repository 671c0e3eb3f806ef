import CCausal

/// Counters of a `CausalNode`, all monotonically increasing except `pending`, `unacked`,
/// `width` and `peersUp`, which say how things stand now.
///
/// A snapshot read from any thread; the counters are read one by one, so under load they
/// may be a few messages apart from each other. After the node has closed it holds the
/// values at the close.
public struct NodeStatistics: Hashable, Sendable {
    /// Own broadcasts.
    public var sent: UInt64
    /// Deliveries, own broadcasts included.
    public var delivered: UInt64
    /// Messages the delivery engine holds now, waiting for a predecessor.
    public var pending: UInt64
    /// Messages dropped as already received (resends after a reconnect, mostly).
    public var duplicates: UInt64
    /// Frames written again after a reconnect.
    public var resent: UInt64
    /// Connections re-established after a loss.
    public var reconnects: UInt64
    /// Connections refused in or before the handshake (wrong key, garbage, stall).
    public var refused: UInt64
    /// Members' connections closed for a malformed frame.
    public var protocolErrors: UInt64
    /// Own broadcasts that some peer has not acknowledged yet.
    public var unacked: UInt64
    /// Bytes read from peers.
    public var bytesIn: UInt64
    /// Bytes written to peers.
    public var bytesOut: UInt64
    /// The group's clock width now.
    public var width: Int
    /// Peers with a finished handshake now.
    public var peersUp: Int

    /// A set of counters.
    public init(
        sent: UInt64 = 0, delivered: UInt64 = 0, pending: UInt64 = 0, duplicates: UInt64 = 0, resent: UInt64 = 0,
        reconnects: UInt64 = 0, refused: UInt64 = 0, protocolErrors: UInt64 = 0, unacked: UInt64 = 0,
        bytesIn: UInt64 = 0, bytesOut: UInt64 = 0, width: Int = 0, peersUp: Int = 0
    ) {
        self.sent = sent
        self.delivered = delivered
        self.pending = pending
        self.duplicates = duplicates
        self.resent = resent
        self.reconnects = reconnects
        self.refused = refused
        self.protocolErrors = protocolErrors
        self.unacked = unacked
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
        self.width = width
        self.peersUp = peersUp
    }

    init(_ s: cc_node_stats) {
        self.init(
            sent: s.sent, delivered: s.delivered, pending: s.pending, duplicates: s.duplicates, resent: s.resent,
            reconnects: s.reconnects, refused: s.refused, protocolErrors: s.protocol_errors, unacked: s.unacked,
            bytesIn: s.bytes_in, bytesOut: s.bytes_out, width: Int(s.width), peersUp: Int(s.peers_up))
    }
}
