import Foundation
import GRDB

/// A broker's metadata as it travels between federated brokers: one row of a replicated table,
/// or its deletion, with the version that orders it against other writes of the same row.
struct ReplicaRow: Sendable, Hashable, Codable {
    /// The table.
    var table: ReplicaTable
    /// The row's key (its id, or a data name).
    var key: String
    /// The replicated columns, or nil when the row was deleted.
    var values: [String: ReplicaValue]?
    /// The write's version.
    var version: RowVersion

    /// A row.
    init(table: ReplicaTable, key: String, values: [String: ReplicaValue]?, version: RowVersion) {
        self.table = table
        self.key = key
        self.values = values
        self.version = version
    }
}

/// One SQLite value in a ``ReplicaRow``: JSON null, a string, an integer or a real.
enum ReplicaValue: Sendable, Hashable, Codable {
    /// NULL.
    case null
    /// TEXT.
    case text(String)
    /// INTEGER.
    case integer(Int64)
    /// REAL.
    case real(Double)

    init(_ value: DatabaseValue) {
        switch value.storage {
        case .null: self = .null
        case .int64(let i): self = .integer(i)
        case .double(let d): self = .real(d)
        case .string(let s): self = .text(s)
        case .blob(let b): self = .text(String(decoding: b, as: UTF8.self))
        }
    }

    var databaseValue: DatabaseValue {
        switch self {
        case .null: .null
        case .text(let s): s.databaseValue
        case .integer(let i): i.databaseValue
        case .real(let d): d.databaseValue
        }
    }

    /// Decodes a JSON scalar.
    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let i = try? c.decode(Int64.self) {
            self = .integer(i)
        } else if let d = try? c.decode(Double.self) {
            self = .real(d)
        } else {
            self = .text(try c.decode(String.self))
        }
    }

    /// Encodes a JSON scalar.
    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .text(let s): try c.encode(s)
        case .integer(let i): try c.encode(i)
        case .real(let d): try c.encode(d)
        }
    }
}
