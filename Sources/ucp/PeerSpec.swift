#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A socket address as the command line writes it: `127.0.0.1:7001` or `[::1]:7001`.
struct SocketAddress: Hashable, CustomStringConvertible {
    /// An IPv4 or IPv6 literal, without brackets.
    var host: String
    var port: Int

    /// Parses `HOST:PORT`; an IPv6 host goes in brackets. `allowAnyPort` admits port 0
    /// (pick a free one), which only a listen address may use.
    init(parsing text: String, allowAnyPort: Bool = false) throws(NodeOptionError) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw .badAddress(text, "unclosed \"[\"") }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.first == ":" else { throw .badAddress(text, "expected \":PORT\" after \"]\"") }
            portText = rest.dropFirst()
            guard Self.isAddress(host, family: AF_INET6) else {
                throw .badAddress(text, "\"\(host)\" is not an IPv6 address")
            }
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw .badAddress(text, "expected HOST:PORT") }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            guard !host.contains(":") else {
                throw .badAddress(text, "write an IPv6 address in brackets: [\(host)]:\(portText)")
            }
            guard Self.isAddress(host, family: AF_INET) else {
                throw .badAddress(text, "\"\(host)\" is not an IPv4 address (names are not resolved)")
            }
        }
        guard !portText.isEmpty, portText.utf8.allSatisfy({ (0x30...0x39).contains($0) }), portText.count <= 5,
            let port = Int(portText), port <= 65535, port > 0 || allowAnyPort
        else {
            throw .badAddress(text, "port \"\(portText)\" is not in \(allowAnyPort ? 0 : 1)...65535")
        }
        self.host = String(host)
        self.port = port
    }

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `127.0.0.1:7001`, `[::1]:7001`.
    var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    private static func isAddress(_ host: Substring, family: Int32) -> Bool {
        var storage = in6_addr()
        return String(host).withCString { inet_pton(family, $0, &storage) } == 1
    }
}

/// A peer as the command line names it: `ID=HOST:PORT`, or `ID@SLOT=HOST:PORT` with an
/// explicit clock slot.
struct PeerSpec: Hashable {
    var id: String
    var slot: Int?
    var address: SocketAddress

    init(id: String, slot: Int? = nil, address: SocketAddress) {
        self.id = id
        self.slot = slot
        self.address = address
    }

    /// Parses `ID[@SLOT]=HOST:PORT`.
    init(parsing text: String) throws(NodeOptionError) {
        guard let equals = text.firstIndex(of: "=") else {
            throw .badPeer(text, "expected ID=HOST:PORT")
        }
        try self.init(name: String(text[..<equals]), address: String(text[text.index(after: equals)...]))
    }

    /// A peer from a config file's `"ID[@SLOT]": "HOST:PORT"` entry.
    init(name: String, address: String) throws(NodeOptionError) {
        var id = Substring(name)
        var slot: Int?
        if let at = name.firstIndex(of: "@") {
            id = name[..<at]
            let slotText = name[name.index(after: at)...]
            guard let value = try? NodeSetup.slot(parsing: String(slotText)) else {
                throw .badPeer("\(name)=\(address)", "slot \"\(slotText)\" is not a number in 0...65535")
            }
            slot = value
        }
        try NodeSetup.checkID(String(id))
        self.id = String(id)
        self.slot = slot
        do {
            self.address = try SocketAddress(parsing: address)
        } catch {
            throw .badPeer("\(name)=\(address)", error.reason)
        }
    }
}
