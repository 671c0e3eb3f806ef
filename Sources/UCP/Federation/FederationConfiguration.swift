import Causal
import Foundation

/// How a broker joins the federation of brokers: `ucp broker --slot N --federation-listen
/// HOST:PORT --peer SLOT@HOST:PORT ...` with the cluster key.
///
/// The brokers form one causal group over the causal transport (``CausalNode``): slot `i` is
/// broker `i`'s entry in the group's clocks, so clock width grows with the number of brokers,
/// never with executors.
public struct FederationConfiguration: Sendable, Hashable {
    /// This broker's slot in the group, `0..<width`.
    public var slot: Int
    /// The address the causal transport listens on (an IP literal) and its port (0 picks one).
    public var listenHost: String
    /// The port the causal transport listens on.
    public var listenPort: Int
    /// The other brokers: their slots and where their causal transport listens.
    public var peers: [CausalNode.Peer]
    /// The cluster key every broker holds (it also signs the transport's handshakes).
    public var key: ClusterKey
    /// Heartbeat, timeout and reconnect pacing of the transport.
    public var options: CausalNode.Options

    /// A configuration; `options` defaults to a 250 ms heartbeat and a 2 s timeout, so a lost
    /// peer is noticed quickly on a LAN, and 256 KiB messages (rows are sent in batches that fit)
    /// with a window of 1024 unacknowledged ones.
    public init(
        slot: Int, listenHost: String = "127.0.0.1", listenPort: Int, peers: [CausalNode.Peer], key: ClusterKey,
        options: CausalNode.Options = CausalNode.Options(
            heartbeat: .milliseconds(250), timeout: .seconds(2), reconnectMax: .milliseconds(500),
            maxFrame: 512 << 10, maxPayload: 256 << 10, sendWindow: 1024)
    ) {
        self.slot = slot
        self.listenHost = listenHost
        self.listenPort = listenPort
        self.peers = peers
        self.key = key
        self.options = options
    }

    /// The group's clock width: one past the largest slot.
    public var width: Int { ([slot] + peers.map(\.slot)).max()! + 1 }
}
