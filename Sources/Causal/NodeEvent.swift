import CCausal

/// Something that happened to a `CausalNode`'s connections or group, as its `events`
/// stream reports it.
///
/// Slots are the group's clock slots; a peer whose slot is not known yet (a connection
/// refused before it named itself) has none. Values may be sent between threads.
public enum NodeEvent: Sendable, Hashable, CustomStringConvertible {
    /// The node listens on `port`.
    case listening(port: Int)
    /// The handshake with the member at `slot` is done: messages flow (again).
    case peerUp(slot: Int)
    /// The connection with the member at `slot` was lost; the lower slot of the pair redials.
    case peerDown(slot: Int, reason: String)
    /// A connection was closed before or during the handshake: a wrong key, garbage, a stall.
    /// `slot` is the slot it claimed, when it got that far; `address` is its `host:port`.
    case refused(slot: Int?, address: String?, reason: String, error: CausalNodeError?)
    /// A member's connection was closed for a malformed frame (an oversized length, say).
    case protocolError(slot: Int?, address: String?, reason: String, error: CausalNodeError?)
    /// The group grew: `slot` is a new member and clocks are now `width` wide.
    case memberAdded(slot: Int, width: Int)

    /// One line: `refused 127.0.0.1:5555: authentication failed`, `peer 2 up`, ...
    public var description: String {
        switch self {
        case .listening(let port): "listening on port \(port)"
        case .peerUp(let slot): "peer \(slot) up"
        case .peerDown(let slot, let reason): "peer \(slot) down: \(reason)"
        case .refused(let slot, let address, let reason, _):
            "refused \(Self.name(slot: slot, address: address)): \(reason)"
        case .protocolError(let slot, let address, let reason, _):
            "protocol error from \(Self.name(slot: slot, address: address)): \(reason)"
        case .memberAdded(let slot, let width): "member \(slot) added (width \(width))"
        }
    }

    /// The address when known (it says more to someone reading a log), else the slot.
    private static func name(slot: Int?, address: String?) -> String {
        switch (slot, address) {
        case (_, let address?): address
        case (let slot?, nil): "peer \(slot)"
        case (nil, nil): "unknown peer"
        }
    }

    /// The event a C event describes; nil for a kind this layer does not know, or a peer
    /// event without a slot (which C never reports).
    init?(_ e: cc_node_event) {
        let slot: Int? = e.slot == UInt32.max ? nil : Int(e.slot)
        let reason = e.reason.map { String(cString: $0) } ?? ""
        let address = e.address.map { String(cString: $0) }
        let error = e.code == 0 ? nil : CausalNodeError(code: e.code)
        switch e.kind {
        case CC_NODE_LISTENING: self = .listening(port: Int(e.port))
        case CC_NODE_PEER_UP:
            guard let slot else { return nil }
            self = .peerUp(slot: slot)
        case CC_NODE_PEER_DOWN:
            guard let slot else { return nil }
            self = .peerDown(slot: slot, reason: reason)
        case CC_NODE_REFUSED: self = .refused(slot: slot, address: address, reason: reason, error: error)
        case CC_NODE_PROTOCOL: self = .protocolError(slot: slot, address: address, reason: reason, error: error)
        case CC_NODE_MEMBER_ADDED:
            guard let slot else { return nil }
            self = .memberAdded(slot: slot, width: Int(e.width))
        default: return nil
        }
    }
}
