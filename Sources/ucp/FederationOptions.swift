import ArgumentParser
import Causal
import UCP

/// `ucp broker`'s options for joining a federation of brokers.
struct FederationOptions: ParsableArguments {
    @Option(help: "This broker's slot in the federation's clocks (0, 1, ...); omit to run alone.")
    var slot: Int?
    @Option(help: "Where the federation's causal transport listens: HOST:PORT (an IP literal).")
    var federationListen: String?
    @Option(
        name: .customLong("peer"),
        help: "A peer broker's transport: SLOT@HOST:PORT; repeat for each. Needs --slot and --key-file.")
    var peers: [String] = []

    func validate() throws {
        if slot == nil, federationListen != nil || !peers.isEmpty {
            throw ValidationError("--federation-listen and --peer need --slot")
        }
        if let slot, slot < 0 || slot >= 65536 { throw ValidationError("--slot must be in 0..<65536") }
    }

    /// The federation settings, nil without `--slot`.
    func configuration(auth: ClusterAuth?) throws -> FederationConfiguration? {
        guard let slot else { return nil }
        guard let auth else { throw ValidationError("a federated broker needs --key-file (the cluster key)") }
        guard let listen = federationListen else { throw ValidationError("--slot needs --federation-listen HOST:PORT") }
        let address: SocketAddress
        do {
            address = try SocketAddress(parsing: listen, allowAnyPort: true)
        } catch {
            throw ValidationError("--federation-listen: \(error)")
        }
        var parsed: [CausalNode.Peer] = []
        for text in peers {
            guard let at = text.firstIndex(of: "@"), let peerSlot = Int(text[..<at]), peerSlot >= 0 else {
                throw ValidationError("--peer must be SLOT@HOST:PORT, not \(text)")
            }
            guard peerSlot != slot, !parsed.contains(where: { $0.slot == peerSlot }) else {
                throw ValidationError("--peer: slot \(peerSlot) is this broker's or named twice")
            }
            do {
                let peerAddress = try SocketAddress(parsing: String(text[text.index(after: at)...]))
                parsed.append(CausalNode.Peer(slot: peerSlot, host: peerAddress.host, port: peerAddress.port))
            } catch {
                throw ValidationError("--peer \(text): \(error)")
            }
        }
        return FederationConfiguration(
            slot: slot, listenHost: address.host, listenPort: address.port, peers: parsed, key: auth.key)
    }
}
