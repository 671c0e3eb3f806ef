import CCausal

/// Why the causal core refused a message or an operation, with the values that failed.
///
/// Thrown by `CausalDelivery`, `CausalLoop` and `CausalInbox`, and handed to an inbox's
/// `onReject` callback. `code` is the C core's error code; `description` quotes its text.
/// Creating one allocates nothing, so rejecting a message stays allocation-free.
public struct CausalDeliveryError: Error, Hashable, CustomStringConvertible {
    /// The kinds of refusal, one per C error code that the delivery path can return.
    public enum Reason: Hashable, Sendable {
        /// A bounded structure is full: the pending set, the inbox's buffer pool or queue,
        /// or the loop's call queue. Back-pressure: retry later.
        case full
        /// The message's sequence is too far beyond what was delivered from its sender.
        case ahead
        /// The message's clock is wider than the group, or a width cannot shrink.
        case width
        /// The sender's slot lies outside the clock, or is one this engine sends from.
        case sender
        /// The emergency level is outside `.low ... .critical` (only C producers can post one).
        case level
        /// The message is malformed (`clock[sender] == 0`) or an argument breaks a contract.
        case invalid
        /// The message was already delivered or is already pending (only an inbox's
        /// `onReject` sees this; `CausalDelivery.offer` returns `.duplicate` instead).
        case duplicate
        /// The loop or inbox is closed.
        case closed
        /// The payload is larger than an inbox buffer holds.
        case tooLarge
        /// Memory ran out while setting up or growing a structure.
        case memory
        /// An operating system or libuv call failed.
        case system
        /// A code this Swift layer does not know; `code` holds it.
        case unknown
    }

    /// Why the operation failed.
    public var reason: Reason
    /// The C core's error code (`CC_E...`, negative).
    public var code: Int32
    /// The refused message's sender slot, when a message was refused.
    public var sender: Int?
    /// The refused message's sequence (`clock[sender]`), when a message was refused.
    public var sequence: UInt64?

    /// An error for the C code `code`, about the message `(sender, sequence)` when given.
    public init(code: Int32, sender: Int? = nil, sequence: UInt64? = nil) {
        self.reason = Reason(code: code)
        self.code = code
        self.sender = sender
        self.sequence = sequence
    }

    /// An error with `reason` and the C code that stands for it.
    public init(_ reason: Reason, sender: Int? = nil, sequence: UInt64? = nil) {
        self.reason = reason
        self.code = reason.code
        self.sender = sender
        self.sequence = sequence
    }

    /// The C core's static text for `code`, e.g. `"sequence beyond the delivery window"`.
    public var message: String { String(cString: cc_strerror(code)) }

    /// One line naming the message (when there is one) and the C core's text for the reason.
    public var description: String {
        switch (sender, sequence) {
        case let (sender?, sequence?): "message \(sequence) from sender \(sender) refused: \(message)"
        case let (sender?, nil): "message from sender \(sender) refused: \(message)"
        default: message
        }
    }
}

extension CausalDeliveryError.Reason {
    /// The reason a C error code stands for.
    init(code: Int32) {
        switch Int(code) {
        case CC_EFULL: self = .full
        case CC_EAHEAD: self = .ahead
        case CC_EWIDTH: self = .width
        case CC_ESENDER: self = .sender
        case CC_ELEVEL: self = .level
        case CC_EINVAL: self = .invalid
        case CC_EDUPLICATE: self = .duplicate
        case CC_ECLOSED: self = .closed
        case CC_ETOOBIG: self = .tooLarge
        case CC_ENOMEM: self = .memory
        case CC_ESYS: self = .system
        default: self = .unknown
        }
    }

    /// The C error code that stands for this reason (`CC_EINVAL` for `.unknown`).
    var code: Int32 {
        switch self {
        case .full: Int32(CC_EFULL)
        case .ahead: Int32(CC_EAHEAD)
        case .width: Int32(CC_EWIDTH)
        case .sender: Int32(CC_ESENDER)
        case .level: Int32(CC_ELEVEL)
        case .invalid, .unknown: Int32(CC_EINVAL)
        case .duplicate: Int32(CC_EDUPLICATE)
        case .closed: Int32(CC_ECLOSED)
        case .tooLarge: Int32(CC_ETOOBIG)
        case .memory: Int32(CC_ENOMEM)
        case .system: Int32(CC_ESYS)
        }
    }
}
