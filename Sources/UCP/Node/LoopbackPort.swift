#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Picks TCP ports on 127.0.0.1 for nodes that must keep their port across a restart (local
/// clusters, the demo, tests that restart a broker).
public enum LoopbackPort {
    /// A port that was free a moment ago, below the kernel's ephemeral range (32768 and up on
    /// Linux). A port the kernel picks for `port: 0` comes from that range, so once its listener
    /// closes, the next outgoing connection of any process may take it as its source port and a
    /// restart on it fails with "address already in use"; a port below the range is never handed
    /// out that way. Tries random ports in 20000..<32768, then lets the kernel pick.
    ///
    /// - Returns: nil when no socket can be bound at all.
    public static func free() -> Int? {
        for _ in 0..<64 {
            let port = Int.random(in: 20000..<32768)
            if bindable(port) { return port }
        }
        return kernelPick()
    }

    /// Whether 127.0.0.1:`port` can be bound now.
    static func bindable(_ port: Int) -> Bool {
        withSocket { fd, address in
            address.sin_port = UInt16(port).bigEndian
            return bindSocket(fd, &address) == 0
        } ?? false
    }

    /// A port the kernel picks (in its ephemeral range).
    static func kernelPick() -> Int? {
        withSocket { fd, address -> Int? in
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            guard bindSocket(fd, &address) == 0 else { return nil }
            let rc = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            return rc == 0 ? Int(UInt16(bigEndian: address.sin_port)) : nil
        } ?? nil
    }

    private static func withSocket<T>(_ body: (Int32, inout sockaddr_in) -> T) -> T? {
        #if canImport(Glibc)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
            let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        return body(fd, &address)
    }

    private static func bindSocket(_ fd: Int32, _ address: inout sockaddr_in) -> Int32 {
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }
}
