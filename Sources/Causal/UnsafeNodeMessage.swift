import CCausal

/// A message as a `CausalNode`'s `onDeliver` handler sees it: a view of the node's receive
/// buffer, with no copy.
///
/// Valid only during the call that received it: the bytes are reused as soon as the handler
/// returns. The type is noncopyable and handlers receive it `borrowing`, so the view itself
/// cannot be kept; do not keep `clock` or `payload` either. Call `copy()` for a value that
/// outlives the call. Reading a property allocates nothing.
///
/// Thread safety: the node's loop thread, inside the handler, only.
public struct UnsafeNodeMessage: ~Copyable {
    private let pointer: UnsafePointer<cc_node_msg>

    init(_ pointer: UnsafePointer<cc_node_msg>) {
        self.pointer = pointer
    }

    /// The sender's slot.
    public var sender: Int { Int(pointer.pointee.sender) }

    /// The emergency level (the node accepts only `.low ... .critical`).
    public var level: EmergencyLevel { EmergencyLevel(rawValue: pointer.pointee.level) ?? .low }

    /// The application-defined message kind.
    public var kind: UInt32 { pointer.pointee.kind }

    /// The sender's clock at the send, as wide as the group was for the sender.
    public var clock: UnsafeBufferPointer<UInt64> {
        UnsafeBufferPointer(start: pointer.pointee.clock, count: Int(pointer.pointee.width))
    }

    /// `clock[sender]`: the message's position among its sender's messages.
    public var sequence: UInt64 {
        let clock = self.clock
        let sender = self.sender
        return sender < clock.count ? clock[sender] : 0
    }

    /// The payload bytes.
    public var payload: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: pointer.pointee.payload, count: Int(pointer.pointee.length))
    }

    /// A `CausalMessage` holding copies of the clock and payload. Allocates.
    public func copy() -> CausalMessage {
        CausalMessage(
            sender: sender, clock: VectorClock(copying: clock), level: level, kind: kind, payload: Array(payload))
    }
}
