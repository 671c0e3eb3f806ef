import CCausal

/// Why a `CausalNode` refused an operation, with the value that failed.
///
/// `code` is the C core's error code; `description` says what failed in a line. Creating
/// one allocates nothing unless it carries a `detail`, so a `.full` on the broadcast path
/// stays allocation-free.
public struct CausalNodeError: Error, Hashable, CustomStringConvertible {
    /// The kinds of refusal.
    public enum Reason: Hashable, Sendable {
        /// The send window is full: every slot holds a broadcast that some peer has not
        /// acknowledged yet. Back-pressure: retry later (see `broadcast(_:waitingUntil:)`).
        case full
        /// The node, or its loop, is closed.
        case closed
        /// The payload is larger than `Options.maxPayload`.
        case tooLarge
        /// A configuration value or argument is out of range; `detail` says which.
        case invalid
        /// The slot is this node's own or another member's already (`addPeer`).
        case slotTaken
        /// The node could not listen (the address is in use, say) or another system call failed.
        case system
        /// Memory ran out while setting the node up.
        case memory
        /// A code this Swift layer does not know; `code` holds it.
        case unknown
    }

    /// Why the operation failed.
    public var reason: Reason
    /// The C core's error code (`CC_E...`, negative).
    public var code: Int32
    /// What failed, when there is more to say than the reason: the option, the slot, the address.
    public var detail: String?

    /// An error for the C code `code`.
    public init(code: Int32, detail: String? = nil) {
        self.reason = Reason(nodeCode: code)
        self.code = code
        self.detail = detail
    }

    /// An error with `reason` and the C code that stands for it.
    public init(_ reason: Reason, detail: String? = nil) {
        self.reason = reason
        self.code = reason.code
        self.detail = detail
    }

    /// The C core's static text for `code`, e.g. `"a bounded structure is full"`.
    public var message: String { String(cString: cc_strerror(code)) }

    /// One line: the detail (when there is one) and the reason.
    public var description: String {
        let text =
            switch reason {
            case .full: "send window full"
            case .closed: "node closed"
            case .tooLarge: "payload too large"
            case .invalid: "invalid argument"
            case .slotTaken: "slot taken"
            case .system: "system call failed"
            case .memory: "out of memory"
            case .unknown: message
            }
        return detail.map { "\(text): \($0)" } ?? text
    }
}

extension CausalNodeError.Reason {
    /// The reason a C error code stands for.
    init(nodeCode code: Int32) {
        switch Int(code) {
        case CC_EFULL: self = .full
        case CC_ECLOSED: self = .closed
        case CC_ETOOBIG: self = .tooLarge
        case CC_EINVAL: self = .invalid
        case CC_ESYS: self = .system
        case CC_ENOMEM: self = .memory
        default: self = .unknown
        }
    }

    /// The C error code that stands for this reason (`CC_EINVAL` for `.slotTaken` and `.unknown`).
    var code: Int32 {
        switch self {
        case .full: Int32(CC_EFULL)
        case .closed: Int32(CC_ECLOSED)
        case .tooLarge: Int32(CC_ETOOBIG)
        case .invalid, .slotTaken, .unknown: Int32(CC_EINVAL)
        case .system: Int32(CC_ESYS)
        case .memory: Int32(CC_ENOMEM)
        }
    }
}
