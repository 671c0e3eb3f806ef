/// Where a node listens: UCP's `Address` model, `{"host": "...", "port": n}`.
///
/// Both fields have UCP's defaults (`""` and `0`) and may be missing from the JSON. In a job's
/// `result_addr`, an empty host means "store the result in a datastore as `<job_id>/result`".
public struct Address: Sendable, Hashable, Codable {
    /// A host name or IP address; `""` when unset.
    public var host: String
    /// A TCP port; `0` when unset.
    public var port: Int

    /// An address; both fields default as UCP's do.
    public init(host: String = "", port: Int = 0) {
        self.host = host
        self.port = port
    }

    /// True when the host is empty, i.e. when a result goes to a datastore rather than to a node.
    public var isUnset: Bool { host.isEmpty }

    private enum CodingKeys: String, CodingKey {
        case host, port
    }

    /// Decodes UCP's JSON; missing fields take their defaults, wrong types and ports outside
    /// 0...65535 are a `DecodingError`.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        host = try container.decodeIfPresent(String.self, forKey: .host) ?? ""
        port = try container.decodeIfPresent(Int.self, forKey: .port) ?? 0
        // A port past 65535 would reach a socket address that traps; it is refused here, where
        // every address from the network is read.
        guard (0...65535).contains(port) else {
            throw DecodingError.dataCorruptedError(
                forKey: .port, in: container, debugDescription: "port \(port) is not in 0...65535")
        }
    }
}

extension Address: CustomStringConvertible {
    /// `host:port`, with IPv6 hosts in brackets.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
