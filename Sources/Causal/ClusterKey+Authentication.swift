import CSodium

extension ClusterKey {
    /// Length of an authenticator: 32 bytes (HMAC-SHA-512-256, libsodium's `crypto_auth`).
    public static let authenticatorByteCount = 32

    /// The authenticator of `message` under this key: proof that the sender holds the key.
    ///
    /// Thread-safe; O(message length).
    public func authenticator(for message: some Collection<UInt8>) -> [UInt8] {
        _ = sodiumReady
        let bytes = Array(message)
        var tag = [UInt8](repeating: 0, count: Self.authenticatorByteCount)
        tag.withUnsafeMutableBufferPointer { out in
            bytes.withUnsafeBufferPointer { input in
                self.bytes.withUnsafeBufferPointer { key in
                    _ = crypto_auth(out.baseAddress!, input.baseAddress, UInt64(input.count), key.baseAddress!)
                }
            }
        }
        return tag
    }

    /// True when `tag` is the authenticator of `message` under this key; compared in constant
    /// time.
    public func verify(_ tag: some Collection<UInt8>, for message: some Collection<UInt8>) -> Bool {
        _ = sodiumReady
        let tag = Array(tag)
        guard tag.count == Self.authenticatorByteCount else { return false }
        let bytes = Array(message)
        return tag.withUnsafeBufferPointer { t in
            bytes.withUnsafeBufferPointer { input in
                self.bytes.withUnsafeBufferPointer { key in
                    crypto_auth_verify(t.baseAddress!, input.baseAddress, UInt64(input.count), key.baseAddress!) == 0
                }
            }
        }
    }
}

/// libsodium initialised once per process (`sodium_init` is idempotent and thread-safe).
private let sodiumReady: Bool = sodium_init() >= 0
