import Foundation

/// The body of `PUT /executors/register`: `{"hosts": [...], "executor": {...}}`.
public struct RegistrationBody: Sendable, Hashable, Codable {
    /// The addresses the broker may ping the executor on.
    public var hosts: [String]
    /// The executor.
    public var executor: ExecutorRecord

    /// A body.
    public init(hosts: [String], executor: ExecutorRecord) {
        self.hosts = hosts
        self.executor = executor
    }
}

/// The body of `PUT /datastores/register` (a CausalUCP extension, shaped like UCP's executor
/// registration): `{"hosts": [...], "datastore": {"address": Address, "id": uuid}}`.
public struct DatastoreRegistration: Sendable, Hashable, Codable {
    /// The datastore: where it listens (the host is replaced by the one that answers the ping)
    /// and its id.
    public struct Datastore: Sendable, Hashable, Codable {
        /// Where it listens; only the port counts.
        public var address: Address
        /// Its node id.
        public var id: UUID

        /// A datastore.
        public init(address: Address, id: UUID) {
            self.address = address
            self.id = id
        }

        private enum CodingKeys: String, CodingKey { case address, id }

        /// Encodes the id lowercased, as Python writes it.
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(address, forKey: .address)
            try c.encode(id.ucpString, forKey: .id)
        }
    }

    /// The hosts it may be reached on, tried in order.
    public var hosts: [String]
    /// The datastore.
    public var datastore: Datastore

    /// A registration.
    public init(hosts: [String], datastore: Datastore) {
        self.hosts = hosts
        self.datastore = datastore
    }
}

/// The body of `PUT /executors/register`, as UCP's executor sends it:
/// `{"hosts": [...], "executor": {"address": ..., "id": ..., "cur_caps": ..., "last_update": ...}}`.
public struct ExecutorRegistration: Sendable, Hashable, Codable {
    /// The hosts it may be reached on, tried in order.
    public var hosts: [String]
    /// The executor.
    public var executor: ExecutorRecord

    /// A registration.
    public init(hosts: [String], executor: ExecutorRecord) {
        self.hosts = hosts
        self.executor = executor
    }
}
