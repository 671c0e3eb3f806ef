import CCausal

/// A message as an inbox callback sees it: a view of a pooled C buffer.
///
/// Valid only during the callback that received it: the buffer goes back to the pool (and
/// is refilled by another thread) as soon as the callback returns. The type is
/// noncopyable and callbacks receive it `borrowing`, so the view itself cannot be kept;
/// do not keep `clock` or `payload` either. Call `copy()` for a value that outlives the
/// callback. Reading a property allocates nothing.
///
/// Thread safety: the loop thread, inside the callback, only.
public struct UnsafeInboxMessage: ~Copyable {
    private let pointer: UnsafePointer<cc_inbox_msg>

    init(_ pointer: UnsafePointer<cc_inbox_msg>) {
        self.pointer = pointer
    }

    /// The sender's slot. A rejected message may name a slot outside the group.
    public var sender: Int { Int(pointer.pointee.head.sender) }

    /// The emergency level. For a message rejected with reason `.level` (a level outside
    /// `.low ... .critical`, which only C producers can post) this reads `.low`; see `rawLevel`.
    public var level: EmergencyLevel { EmergencyLevel(rawValue: pointer.pointee.head.level) ?? .low }

    /// The level byte exactly as the buffer holds it (`CC_LEVEL_*`).
    public var rawLevel: UInt8 { pointer.pointee.head.level }

    /// The application-defined message kind.
    public var kind: UInt32 { pointer.pointee.kind }

    /// The sender's clock at the send. Entries past `clock.count` read as 0.
    public var clock: UnsafeBufferPointer<UInt64> {
        UnsafeBufferPointer(start: pointer.pointee.head.clock, count: Int(pointer.pointee.head.width))
    }

    /// `clock[sender]`: the message's position among its sender's messages (0 when the
    /// sender lies outside the clock).
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
