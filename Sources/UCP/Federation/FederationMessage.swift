import Causal
import Foundation

/// What one broker broadcasts to the others over the causal transport: who it is, its clock, and
/// the rows it changed or an emergency notice. JSON, in the payload of one causal message.
///
/// Delivery in causal order is the transport's work: a broker applies a message only after every
/// message its sender had delivered before sending it.
struct FederationMessage: Sendable, Hashable, Codable {
    /// The sending broker's id (its clock entry name).
    var origin: String
    /// Where the sender's HTTP API listens.
    var address: Address?
    /// The sender's clock when it sent (its own entry ticked).
    var stamp: ClockStamp
    /// Rows it changed.
    var rows: [ReplicaRow] = []
    /// An emergency notice it issued.
    var emergency: EmergencyNotice?

    /// The causal message kind of every federation message.
    static let kind: UInt32 = 0x5543_5046  // "UCPF"

    func encoded() throws -> [UInt8] {
        Array(try UCPJSON.encode(self))
    }

    static func decode(_ payload: [UInt8]) throws -> FederationMessage {
        try UCPJSON.decode(FederationMessage.self, from: Data(payload))
    }
}

/// A peer broker as this broker knows it.
public struct FederationPeer: Sendable, Hashable, Codable {
    /// Its slot in the group.
    public var slot: Int
    /// Where its causal transport is reached.
    public var transport: String
    /// Its id, once a message from it arrived.
    public var id: String?
    /// Where its HTTP API listens, once a message from it arrived.
    public var address: Address?
    /// True while the transport's connection to it is up.
    public var connected: Bool
    /// Messages delivered from it.
    public var delivered: UInt64
}
