#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The secret every member of a causal group holds: 32 bytes, the HMAC key of the
/// handshake with which members prove to each other that they belong (see `CausalNode`).
///
/// A key file holds the key as 64 hexadecimal digits (what `hex` and `write(toFile:)`
/// produce) or as 32 raw bytes; whitespace around the digits is ignored.
///
/// The key is a value; values may be sent between threads. `description` never shows the
/// bytes, so a key does not end up in a log by accident.
public struct ClusterKey: Sendable, Hashable, CustomStringConvertible {
    /// The key's length in bytes (`CC_NODE_KEY_SIZE`).
    public static let byteCount = 32

    /// The key's bytes.
    public let bytes: [UInt8]

    /// A key made of `bytes`.
    ///
    /// - Throws: `ClusterKeyError.wrongLength` unless `bytes` holds exactly 32 bytes.
    public init(bytes: some Collection<UInt8>) throws(ClusterKeyError) {
        guard bytes.count == Self.byteCount else { throw .wrongLength(bytes.count) }
        self.bytes = Array(bytes)
    }

    /// The key written as 64 hexadecimal digits, surrounded by optional whitespace.
    ///
    /// - Throws: `ClusterKeyError.wrongLength` for another number of digits,
    ///   `.invalidHex` at the first character that is not a hexadecimal digit.
    public init(hex text: String) throws(ClusterKeyError) {
        try self.init(hexDigits: Array(text.utf8))
    }

    /// Reads a key file: 64 hexadecimal digits, or exactly 32 raw bytes; whitespace around
    /// the digits is ignored. Reads at most a few hundred bytes whatever the file's size.
    ///
    /// - Throws: `ClusterKeyError.unreadable` when the file cannot be opened or read,
    ///   `.wrongLength` or `.invalidHex` when it holds something else.
    public init(contentsOfFile path: String) throws(ClusterKeyError) {
        let limit = 4096
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var contents = [UInt8](repeating: 0, count: limit + 1)
        var filled = 0
        while filled < contents.count {
            let n = contents.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .unreadable(path: path, reason: String(cString: strerror(errno)))
            }
            if n == 0 { break }
            filled += n
        }
        guard filled <= limit else { throw .wrongLength(filled) }
        contents.removeSubrange(filled...)
        // 32 bytes exactly are raw, unless they happen to be whitespace-padded digits
        // (which 32 bytes cannot be: the hex form needs 64 digits).
        if filled == Self.byteCount {
            try self.init(bytes: contents)
        } else {
            try self.init(hexDigits: contents)
        }
    }

    /// A fresh key from the operating system's secure random source (`getrandom`,
    /// `arc4random`).
    public static func random() -> ClusterKey {
        var generator = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(byteCount)
        for _ in 0..<(byteCount / 8) {
            var word = generator.next()
            for _ in 0..<8 {
                bytes.append(UInt8(truncatingIfNeeded: word))
                word >>= 8
            }
        }
        return try! ClusterKey(bytes: bytes)
    }

    /// The key as 64 lower-case hexadecimal digits: what a key file holds.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(2 * Self.byteCount)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Writes the key to a new file at `path` as 64 hexadecimal digits and a newline,
    /// readable and writable by its owner only (mode 0600).
    ///
    /// - Throws: `ClusterKeyError.unwritable` when the file exists already (it is never
    ///   overwritten) or cannot be created or written.
    public func write(toFile path: String) throws(ClusterKeyError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .unwritable(path: path, reason: String(cString: strerror(errno))) }
        let text = Array((hex + "\n").utf8)
        var written = 0
        while written < text.count {
            let n = text.withUnsafeBytes { systemWrite(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let reason = String(cString: strerror(errno))
                close(fd)
                unlink(path)
                throw .unwritable(path: path, reason: reason)
            }
            written += n
        }
        // The mode given to open is filtered by the umask; 0600 is what a secret needs.
        fchmod(fd, 0o600)
        guard fsync(fd) == 0, close(fd) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(path)
            throw .unwritable(path: path, reason: reason)
        }
    }

    /// `ClusterKey(…)`: never the bytes.
    public var description: String { "ClusterKey(\(Self.byteCount) bytes)" }

    /// Parses hexadecimal digits with optional whitespace around them.
    private init(hexDigits text: [UInt8]) throws(ClusterKeyError) {
        func isSpace(_ c: UInt8) -> Bool { c == 0x20 || (0x09...0x0d).contains(c) }
        var start = 0
        var end = text.count
        while start < end && isSpace(text[start]) { start += 1 }
        while end > start && isSpace(text[end - 1]) { end -= 1 }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        // Report a stray character before a wrong length: it says more about what went wrong.
        for offset in start..<end where value(text[offset]) == nil {
            throw .invalidHex(offset: offset - start, character: text[offset])
        }
        let count = end - start
        guard count == 2 * Self.byteCount else {
            throw count % 2 == 0 ? .wrongLength(count / 2) : .oddHexDigits(count)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.byteCount)
        var offset = start
        while offset < end {
            bytes.append(value(text[offset])! << 4 | value(text[offset + 1])!)
            offset += 2
        }
        self.bytes = bytes
    }
}

#if canImport(Glibc)
    private let systemWrite = Glibc.write
#elseif canImport(Musl)
    private let systemWrite = Musl.write
#elseif canImport(Darwin)
    private let systemWrite = Darwin.write
#endif
