import CSodium

/// The SHA-256 digest of some bytes: the key under which a parsed module is cached, and the
/// digest of a broker's replicated rows. Computed by libsodium (`crypto_hash_sha256`).
public struct ContentHash: Sendable, Hashable, CustomStringConvertible {
    /// The 32 digest bytes as four big-endian words.
    let words: (UInt64, UInt64, UInt64, UInt64)

    /// The digest of `bytes`.
    public init(of bytes: some Collection<UInt8>) {
        var digest = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        let contiguous = bytes.withContiguousStorageIfAvailable { buffer in
            crypto_hash_sha256(&digest, buffer.baseAddress, UInt64(buffer.count))
        }
        if contiguous == nil {
            let copy = Array(bytes)
            crypto_hash_sha256(&digest, copy, UInt64(copy.count))
        }
        func word(_ at: Int) -> UInt64 { digest[at..<(at + 8)].reduce(0) { $0 << 8 | UInt64($1) } }
        words = (word(0), word(8), word(16), word(24))
    }

    /// The digest in lowercase hexadecimal (64 characters).
    public var description: String {
        [words.0, words.1, words.2, words.3].map { word in
            let hex = String(word, radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }.joined()
    }

    /// Equal when all 32 bytes are equal.
    public static func == (lhs: ContentHash, rhs: ContentHash) -> Bool {
        lhs.words == rhs.words
    }

    /// Hashes the digest bytes.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(words.0)
        hasher.combine(words.1)
        hasher.combine(words.2)
        hasher.combine(words.3)
    }
}
