import Foundation

/// An executor as a broker knows it: UCP's executor object, sent in a registration.
///
/// JSON: `{"address": Address, "id": "<uuid>", "cur_caps": Capabilities, "last_update": seconds}`.
/// The id encodes lowercased, as Python writes a UUID; `last_update` is seconds since 1970 as a
/// float (UCP's `time.time()`).
public struct ExecutorRecord: Sendable, Hashable, Codable {
    /// Where the executor listens.
    public var address: Address
    /// The executor's node id.
    public var id: UUID
    /// Its capabilities when it last reported.
    public var curCaps: Capabilities
    /// When it last reported, in seconds since 1970.
    public var lastUpdate: Double

    /// An executor record.
    public init(address: Address = Address(), id: UUID, curCaps: Capabilities = Capabilities(), lastUpdate: Double = 0)
    {
        self.address = address
        self.id = id
        self.curCaps = curCaps
        self.lastUpdate = lastUpdate
    }

    private enum CodingKeys: String, CodingKey {
        case address, id
        case curCaps = "cur_caps"
        case lastUpdate = "last_update"
    }

    /// Decodes UCP's JSON; `id` is required, the rest default.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        address = try c.decodeIfPresent(Address.self, forKey: .address) ?? Address()
        id = try c.decode(UUID.self, forKey: .id)
        curCaps = try c.decodeIfPresent(Capabilities.self, forKey: .curCaps) ?? Capabilities()
        lastUpdate = try c.decodeIfPresent(Double.self, forKey: .lastUpdate) ?? 0
    }

    /// Encodes UCP's JSON, the id lowercased.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(address, forKey: .address)
        try c.encode(id.ucpString, forKey: .id)
        try c.encode(curCaps, forKey: .curCaps)
        try c.encode(lastUpdate, forKey: .lastUpdate)
    }
}
