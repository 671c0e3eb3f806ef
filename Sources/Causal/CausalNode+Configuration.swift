import CCausal

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

extension CausalNode {
    /// Another member of the group as this one knows it: its clock slot and where to reach it.
    ///
    /// `host` is an IPv4 or IPv6 literal (`127.0.0.1`, `::1`; no brackets, no names). Of two
    /// members, the one with the lower slot dials the other, at the address given here: a
    /// proxy or a NAT in front of the member works, and keeps working across reconnects,
    /// whatever address the member announces for itself.
    public struct Peer: Sendable, Hashable, CustomStringConvertible {
        /// The member's slot in the group's clocks.
        public var slot: Int
        /// The address it is reached at (where it listens, or a proxy in front of it): an
        /// IPv4 or IPv6 literal.
        public var host: String
        /// The port it is reached at.
        public var port: Int

        /// A member at `slot` listening on `host:port`.
        public init(slot: Int, host: String, port: Int) {
            self.slot = slot
            self.host = host
            self.port = port
        }

        /// `2@127.0.0.1:7002`, `1@[::1]:7001`.
        public var description: String { "\(slot)@\(Self.address(host: host, port: port))" }

        /// `host:port`, with an IPv6 host in brackets.
        static func address(host: String, port: Int) -> String {
            host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }

    /// How a node paces and bounds its connections. The defaults suit a group on a LAN.
    ///
    /// Durations are rounded up to whole milliseconds; each must lie between 1 ms and
    /// about 49 days. Sizes must be positive and fit in 32 bits.
    public struct Options: Sendable, Hashable {
        /// Send a heartbeat on a connection idle for this long.
        public var heartbeat: Duration
        /// Drop a peer silent for this long (and report it down).
        public var timeout: Duration
        /// The first reconnect delay after a lost connection; doubled after each failure.
        public var reconnectMin: Duration
        /// The ceiling of the reconnect delay.
        public var reconnectMax: Duration
        /// A connecting peer must finish the handshake within this, or it is refused.
        public var handshakeTimeout: Duration
        /// The largest frame accepted or sent, in bytes; a peer announcing a larger one is cut off.
        public var maxFrame: Int
        /// The largest broadcast payload, in bytes.
        public var maxPayload: Int
        /// The most own broadcasts that may await acknowledgement; beyond it `broadcast`
        /// throws `.full`.
        public var sendWindow: Int
        /// The most messages the delivery engine holds while they wait for a predecessor;
        /// reading from peers pauses while it is full.
        public var pending: Int
        /// A folder this node owns, where it keeps its sequence, its handed-over clock (what
        /// the application has taken over) and its broadcasts not yet acknowledged or handed
        /// over, so that it survives its own restart, a crash included; nil for none. An
        /// existing folder is reloaded, and everything after the handed-over clock is
        /// delivered again: at least once across restarts, never lost.
        public var stateDirectory: String?
        /// With a state folder: a delivery counts as handed over only once the application
        /// passes it to `CausalNode.confirm(_:)`, not as soon as `deliveries` buffers it (or
        /// `onDeliver` returns). For an application that reads `deliveries` and must not lose
        /// what sits in the stream's buffer when the process dies. The node then acknowledges
        /// to its peers, and releases its own broadcasts, only what was confirmed: confirm
        /// every message, or the peers' send windows fill.
        public var confirmsDeliveries: Bool
        /// The widest group this node accepts (1...65536): no slot, given here or announced
        /// by a member, may lie at or past it, and a peer that claims a wider group is refused
        /// or cut off. It bounds what any holder of the cluster key can make the node allocate:
        /// each slot costs the delivery engine about 8 bytes per `sendWindow` entry (32 KiB
        /// with the defaults, so 32 MiB at 1024).
        public var maxWidth: Int

        /// Options; every argument has the C core's default.
        public init(
            heartbeat: Duration = .seconds(1), timeout: Duration = .seconds(5),
            reconnectMin: Duration = .milliseconds(50), reconnectMax: Duration = .seconds(2),
            handshakeTimeout: Duration = .seconds(2), maxFrame: Int = Int(CC_FRAME_DEFAULT_MAX),
            maxPayload: Int = 64 * 1024, sendWindow: Int = 4096, pending: Int = 65536, stateDirectory: String? = nil,
            confirmsDeliveries: Bool = false, maxWidth: Int = 1024
        ) {
            self.heartbeat = heartbeat
            self.timeout = timeout
            self.reconnectMin = reconnectMin
            self.reconnectMax = reconnectMax
            self.handshakeTimeout = handshakeTimeout
            self.maxFrame = maxFrame
            self.maxPayload = maxPayload
            self.sendWindow = sendWindow
            self.pending = pending
            self.stateDirectory = stateDirectory
            self.confirmsDeliveries = confirmsDeliveries
            self.maxWidth = maxWidth
        }
    }
}

// MARK: Validation and conversion to C

extension CausalNode.Options {
    /// Fills the C config's pacing and size fields, or throws naming the bad option.
    func apply(to config: inout cc_node_config) throws(CausalNodeError) {
        config.heartbeat_ms = try Self.milliseconds(heartbeat, "heartbeat")
        config.timeout_ms = try Self.milliseconds(timeout, "timeout")
        config.reconnect_min_ms = try Self.milliseconds(reconnectMin, "reconnectMin")
        config.reconnect_max_ms = try Self.milliseconds(reconnectMax, "reconnectMax")
        config.handshake_ms = try Self.milliseconds(handshakeTimeout, "handshakeTimeout")
        guard config.reconnect_min_ms <= config.reconnect_max_ms else {
            throw CausalNodeError(.invalid, detail: "reconnectMin \(reconnectMin) exceeds reconnectMax \(reconnectMax)")
        }
        config.max_frame = try Self.size(maxFrame, "maxFrame", minimum: Int(CC_FRAME_HEADER_SIZE))
        config.max_payload = try Self.size(maxPayload, "maxPayload")
        config.send_window = try Self.size(sendWindow, "sendWindow")
        config.pending = try Self.size(pending, "pending")
        config.confirm = confirmsDeliveries ? 1 : 0
        guard (1...65536).contains(maxWidth) else {
            throw CausalNodeError(.invalid, detail: "maxWidth \(maxWidth) outside 1...65536")
        }
        config.max_width = UInt32(maxWidth)
    }

    private static func milliseconds(_ duration: Duration, _ name: String) throws(CausalNodeError) -> UInt32 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0, attoseconds >= 0, duration > .zero else {
            throw CausalNodeError(.invalid, detail: "\(name) must be positive, not \(duration)")
        }
        let perMillisecond: Int64 = 1_000_000_000_000_000
        let milliseconds = seconds.multipliedReportingOverflow(by: 1000)
        let total = milliseconds.partialValue + (attoseconds + perMillisecond - 1) / perMillisecond
        guard !milliseconds.overflow, total <= Int64(UInt32.max) else {
            throw CausalNodeError(.invalid, detail: "\(name) \(duration) is too long")
        }
        return UInt32(total)
    }

    private static func size(_ value: Int, _ name: String, minimum: Int = 1) throws(CausalNodeError) -> UInt32 {
        guard value >= minimum, value <= Int(UInt32.max) else {
            throw CausalNodeError(.invalid, detail: "\(name) must lie in \(minimum)...\(UInt32.max), not \(value)")
        }
        return UInt32(value)
    }
}

extension CausalNode.Peer {
    /// The C form of this peer, or an error naming what is wrong with it.
    func cPeer() throws(CausalNodeError) -> cc_node_peer {
        guard slot >= 0, slot < Int(UInt32.max) else {
            throw CausalNodeError(.invalid, detail: "peer slot \(slot) out of range")
        }
        guard (1...65535).contains(port) else {
            throw CausalNodeError(.invalid, detail: "peer \(slot): port \(port) outside 1...65535")
        }
        try Self.checkHost(host, what: "peer \(slot)")
        var peer = cc_node_peer()
        peer.slot = UInt32(slot)
        peer.port = UInt16(port)
        withUnsafeMutableBytes(of: &peer.host) { buffer in
            let bytes = Array(host.utf8)
            buffer.copyBytes(from: bytes)
            buffer[bytes.count] = 0
        }
        return peer
    }

    /// Throws unless `host` is an IPv4 or IPv6 literal that fits the C struct.
    static func checkHost(_ host: String, what: String) throws(CausalNodeError) {
        guard host.utf8.count < Int(CC_NODE_HOST_MAX), !host.utf8.contains(0) else {
            throw CausalNodeError(.invalid, detail: "\(what): host \"\(host)\" is too long")
        }
        var storage = in6_addr()
        let isAddress = host.withCString { text in
            inet_pton(AF_INET, text, &storage) == 1 || inet_pton(AF_INET6, text, &storage) == 1
        }
        guard isAddress else {
            throw CausalNodeError(.invalid, detail: "\(what): host \"\(host)\" is not an IPv4 or IPv6 address")
        }
    }
}
