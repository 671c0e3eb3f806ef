import Causal
import Foundation

/// What is wrong with `ucp node`'s options, quoting the failing value.
enum NodeOptionError: Error, Hashable, CustomStringConvertible {
    case badAddress(String, String)
    case badPeer(String, String)
    case badID(String)
    case duplicateID(String)
    case duplicateSlot(Int, String, String)
    case missing(String)
    case mixedSlots(String)
    case badSlot(String)
    case badConfig(String, String)
    case badDuration(String, Int)

    /// The part after the failing value (for nesting one error in another).
    var reason: String {
        switch self {
        case .badAddress(_, let why), .badPeer(_, let why), .badConfig(_, let why): why
        default: description
        }
    }

    var description: String {
        switch self {
        case .badAddress(let text, let why): "bad address \"\(text)\": \(why)"
        case .badPeer(let text, let why): "bad peer \"\(text)\": \(why)"
        case .badID(let id):
            "bad id \"\(id)\": use 1 to 64 letters, digits, \".\", \"_\" or \"-\""
        case .duplicateID(let id): "the id \"\(id)\" names two members"
        case .duplicateSlot(let slot, let a, let b): "\"\(a)\" and \"\(b)\" both have slot \(slot)"
        case .missing(let what): "missing \(what)"
        case .mixedSlots(let why): why
        case .badSlot(let text): "bad slot \"\(text)\": expected a number in 0...65535"
        case .badConfig(let path, let why): "bad config file \(path): \(why)"
        case .badDuration(let name, let value): "\(name) must be positive, not \(value)"
        }
    }
}

/// The config file `ucp node --config` reads: the same settings as the options.
///
///     {"id": "A", "listen": "127.0.0.1:7001", "key_file": "k",
///      "peers": {"B": "127.0.0.1:7002", "C": "127.0.0.1:7003"}}
///
/// Optional: `"slot"`, `"state_dir"`, `"heartbeat_ms"`, `"timeout_ms"`. Relative paths are
/// relative to the config file's folder.
struct NodeConfigFile: Decodable {
    var id: String?
    var listen: String?
    var keyFile: String?
    var peers: [String: String]?
    var slot: Int?
    var stateDir: String?
    var heartbeatMs: Int?
    var timeoutMs: Int?

    enum CodingKeys: String, CodingKey {
        case id, listen, peers, slot
        case keyFile = "key_file"
        case stateDir = "state_dir"
        case heartbeatMs = "heartbeat_ms"
        case timeoutMs = "timeout_ms"
    }

    /// Reads and decodes `path`, resolving its relative paths against its folder.
    static func load(_ path: String) throws(NodeOptionError) -> NodeConfigFile {
        let url = URL(fileURLWithPath: path)
        var file: NodeConfigFile
        do {
            let data = try Data(contentsOf: url)
            file = try JSONDecoder().decode(NodeConfigFile.self, from: data)
        } catch let error as DecodingError {
            throw .badConfig(path, Self.explain(error))
        } catch {
            throw .badConfig(path, error.localizedDescription)
        }
        let folder = url.deletingLastPathComponent()
        func resolve(_ relative: String?) -> String? {
            guard let relative, !relative.hasPrefix("/") else { return relative }
            return folder.appendingPathComponent(relative).path
        }
        file.keyFile = resolve(file.keyFile)
        file.stateDir = resolve(file.stateDir)
        return file
    }

    private static func explain(_ error: DecodingError) -> String {
        switch error {
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .keyNotFound(_, let context),
            .dataCorrupted(let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? context.debugDescription : "\(path): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}

/// Everything `ucp node` needs to start, validated: the group's members by id and slot,
/// this member's own, the key file and the node's options.
struct NodeSetup: Equatable {
    /// This member's id.
    var id: String
    /// This member's slot.
    var slot: Int
    var listen: SocketAddress
    /// The other members.
    var peers: [PeerSpec]
    /// Every member's id by slot (nil for a slot no member holds).
    var ids: [String?]
    var keyFile: String
    var options: CausalNode.Options

    /// The group's clock width.
    var width: Int { ids.count }

    /// The peers as the node takes them.
    var nodePeers: [CausalNode.Peer] {
        peers.map { CausalNode.Peer(slot: $0.slot!, host: $0.address.host, port: $0.address.port) }
    }

    /// The id of the member at `slot`, or `#slot` for a slot no member holds.
    func id(at slot: Int) -> String {
        slot < ids.count ? ids[slot] ?? "#\(slot)" : "#\(slot)"
    }

    /// Resolves the members' slots: given explicitly (`--slot` and `ID@SLOT` for every
    /// peer), or else the positions of the ids in sorted order, which every member
    /// computes alike from the same set of ids.
    init(
        id: String, slot: Int?, listen: SocketAddress, peers: [PeerSpec], keyFile: String,
        options: CausalNode.Options
    ) throws(NodeOptionError) {
        try Self.checkID(id)
        var seen: Set<String> = [id]
        for peer in peers where !seen.insert(peer.id).inserted { throw .duplicateID(peer.id) }
        let explicit = peers.filter { $0.slot != nil }.count
        var resolved = peers
        var ownSlot: Int
        if let slot {
            guard explicit == peers.count else {
                throw .mixedSlots("with --slot, give every peer its slot too: ID@SLOT=HOST:PORT")
            }
            ownSlot = slot
        } else {
            guard explicit == 0 else {
                throw .mixedSlots("a peer has an explicit slot: give this member's with --slot too")
            }
            let sorted = ([id] + peers.map(\.id)).sorted()
            ownSlot = sorted.firstIndex(of: id)!
            for index in resolved.indices { resolved[index].slot = sorted.firstIndex(of: resolved[index].id)! }
        }
        var ids: [String?] = Array(repeating: nil, count: 1 + ([ownSlot] + resolved.map { $0.slot! }).max()!)
        ids[ownSlot] = id
        for peer in resolved {
            if let other = ids[peer.slot!] { throw .duplicateSlot(peer.slot!, other, peer.id) }
            ids[peer.slot!] = peer.id
        }
        self.id = id
        self.slot = ownSlot
        self.listen = listen
        self.peers = resolved
        self.ids = ids
        self.keyFile = keyFile
        self.options = options
    }

    /// Throws unless `id` is 1 to 64 of `[A-Za-z0-9._-]` (so that it needs no quoting in JSON).
    static func checkID(_ id: String) throws(NodeOptionError) {
        let allowed = id.utf8.allSatisfy { c in
            (0x30...0x39).contains(c) || (0x41...0x5a).contains(c) || (0x61...0x7a).contains(c) || c == 0x2e
                || c == 0x5f || c == 0x2d
        }
        guard !id.isEmpty, id.utf8.count <= 64, allowed else { throw .badID(id) }
    }

    /// Parses a slot: a decimal number in 0...65535.
    static func slot(parsing text: String) throws(NodeOptionError) -> Int {
        guard !text.isEmpty, text.count <= 5, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
            let value = Int(text), value <= 65535
        else { throw .badSlot(text) }
        return value
    }
}
