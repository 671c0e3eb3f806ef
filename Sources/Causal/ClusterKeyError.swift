/// Why a cluster key could not be made, read or written; each case carries the failing value.
public enum ClusterKeyError: Error, Hashable, CustomStringConvertible {
    /// The key has this many bytes (or the hex text this many digit pairs) instead of 32.
    case wrongLength(Int)
    /// The hex text has an odd number of digits (this many).
    case oddHexDigits(Int)
    /// The byte at `offset` (counted after leading whitespace) is not a hexadecimal digit.
    case invalidHex(offset: Int, character: UInt8)
    /// The key file could not be opened or read.
    case unreadable(path: String, reason: String)
    /// The key file could not be created (it may exist already) or written.
    case unwritable(path: String, reason: String)

    /// A one-line explanation that quotes the failing value.
    public var description: String {
        switch self {
        case .wrongLength(let count):
            "a cluster key has 32 bytes (64 hex digits), not \(count)"
        case .oddHexDigits(let count):
            "a cluster key has 64 hex digits, not \(count)"
        case .invalidHex(let offset, let character):
            (0x21...0x7e).contains(character)
                ? "not a hex digit at offset \(offset) of the cluster key: \"\(Character(Unicode.Scalar(character)))\""
                : "not a hex digit at offset \(offset) of the cluster key: byte 0x\(String(character, radix: 16))"
        case .unreadable(let path, let reason):
            "cannot read the key file \(path): \(reason)"
        case .unwritable(let path, let reason):
            "cannot write the key file \(path): \(reason)"
        }
    }
}
