import Foundation

/// An executor as the broker keeps it: UCP's executor object, the hosts it registered with and
/// when it was last heard of.
public struct ExecutorEntry: Sendable, Hashable, Codable {
    /// UCP's executor object; `address.host` is the host that answered the registration ping,
    /// `cur_caps` its latest capabilities.
    public var record: ExecutorRecord
    /// The hosts it registered with.
    public var hosts: [String]
    /// When it last registered or beat, in seconds since 1970.
    public var lastHeartbeat: Double

    /// An executor entry.
    public init(record: ExecutorRecord, hosts: [String], lastHeartbeat: Double) {
        self.record = record
        self.hosts = hosts
        self.lastHeartbeat = lastHeartbeat
    }

    /// The executor's id.
    public var id: UUID { record.id }
}

/// A datastore as the broker knows it (a CausalUCP extension: UCP found datastores by
/// zeroconf).
public struct DatastoreEntry: Sendable, Hashable, Codable {
    /// The datastore's node id.
    public var id: UUID
    /// Where it answers (the host that answered the registration ping).
    public var address: Address
    /// The hosts it registered with.
    public var hosts: [String]
    /// When it last registered or beat, in seconds since 1970.
    public var lastSeen: Double

    /// A datastore entry.
    public init(id: UUID, address: Address, hosts: [String], lastSeen: Double) {
        self.id = id
        self.address = address
        self.hosts = hosts
        self.lastSeen = lastSeen
    }
}
