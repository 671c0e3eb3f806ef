/// A message in causal order: who sent it, the sender's clock at the send, its urgency,
/// an application-defined kind and the bytes it carries.
public struct CausalMessage: Sendable, Hashable {
    /// The sender's slot in the group's membership.
    public var sender: Int
    /// The sender's clock at the send; `clock[sender]` is the message's sequence number.
    public var clock: VectorClock
    /// How urgent the message is.
    public var level: EmergencyLevel
    /// An application-defined message type.
    public var kind: UInt32
    /// The message body.
    public var payload: [UInt8]

    /// A message. Requires `sender >= 0`.
    public init(
        sender: Int, clock: VectorClock, level: EmergencyLevel = .low, kind: UInt32 = 0, payload: [UInt8] = []
    ) {
        precondition(sender >= 0, "negative sender slot \(sender)")
        self.sender = sender
        self.clock = clock
        self.level = level
        self.kind = kind
        self.payload = payload
    }

    /// The message's position among its sender's messages: `clock[sender]`, 1 for the first.
    public var sequence: UInt64 { clock[sender] }
}
