import ArgumentParser
import Causal
import Dispatch
import Foundation

/// `ucp node`: a member of a causal broadcast group over TCP. Broadcasts each line of
/// standard input and prints each delivered message as a line.
struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Join a causal broadcast group: broadcast stdin lines, print deliveries in causal order.",
        discussion: """
            Members are named by id. Their clock slots are the positions of the ids in sorted order \
            (every member computes the same), unless given explicitly with --slot and ID@SLOT=HOST:PORT.

            Each input line is broadcast; a line starting with "!high " or "!critical " (or any level \
            name) is sent at that emergency level. Each delivered message prints as one line:
              <sender-id> {"A":1,"B":0} [LEVEL] text
            Connection events go to standard error. On end of input the node waits (at most --drain-ms) \
            until every peer has acknowledged its broadcasts, then exits 0; SIGINT and SIGTERM close it.
            """
    )

    @Option(help: "This member's id (letters, digits, '.', '_', '-').") var id: String?
    @Option(help: "Address to listen on: HOST:PORT, [IPv6]:PORT; port 0 picks one.") var listen: String?
    @Option(
        name: .customLong("peer"),
        help: "Another member: ID=HOST:PORT (or ID@SLOT=HOST:PORT with --slot); repeat for each.")
    var peers: [String] = []
    @Option(help: "The cluster key file: 64 hex digits or 32 raw bytes.") var keyFile: String?
    @Option(help: "This member's clock slot; then every --peer needs ID@SLOT.") var slot: Int?
    @Option(help: "A JSON file with id, listen, key_file, peers {ID: HOST:PORT}; options given here override it.")
    var config: String?
    @Option(help: "A folder for the node's state, so that it survives a restart.") var stateDir: String?
    @Option(help: "Heartbeat after this many idle milliseconds.") var heartbeatMs: Int?
    @Option(help: "Drop a peer silent for this many milliseconds.") var timeoutMs: Int?
    @Option(help: "Longest pause between reconnect attempts, in milliseconds.") var reconnectMaxMs: Int?
    @Option(help: "On end of input, wait at most this many milliseconds for acknowledgements.") var drainMs = 10_000
    @Option(help: "Write a fresh cluster key to this file (mode 0600) and exit.") var generateKey: String?

    func run() async throws {
        if let path = generateKey {
            do {
                try ClusterKey.random().write(toFile: path)
            } catch {
                throw ValidationError(error.description)
            }
            StandardStreams.error("wrote a new cluster key to \(path)")
            return
        }
        let setup: NodeSetup
        let key: ClusterKey
        do {
            setup = try self.setup()
            key = try ClusterKey(contentsOfFile: setup.keyFile)
        } catch let error as NodeOptionError {
            throw ValidationError(error.description)
        } catch let error as ClusterKeyError {
            throw ValidationError(error.description)
        }
        // A peer that goes away mid-write must cost an error code, not the process.
        signal(SIGPIPE, SIG_IGN)
        let node = try CausalNode(
            slot: setup.slot, width: setup.width, listen: (setup.listen.host, setup.listen.port),
            peers: setup.nodePeers, key: key, options: setup.options)
        try await NodeSession(setup: setup, node: node, drain: .milliseconds(max(drainMs, 0))).run()
    }

    /// The validated setup from the options and the config file (options win).
    func setup() throws(NodeOptionError) -> NodeSetup {
        let file = try config.map { path throws(NodeOptionError) in try NodeConfigFile.load(path) }
        guard let id = id ?? file?.id else { throw .missing("--id (or \"id\" in the config file)") }
        guard let listenText = listen ?? file?.listen else {
            throw .missing("--listen (or \"listen\" in the config file)")
        }
        guard let keyFile = keyFile ?? file?.keyFile else {
            throw .missing("--key-file (or \"key_file\" in the config file)")
        }
        let listen = try SocketAddress(parsing: listenText, allowAnyPort: true)
        var peerSpecs: [PeerSpec] = []
        if !peers.isEmpty {
            for text in peers { peerSpecs.append(try PeerSpec(parsing: text)) }
        } else if let filePeers = file?.peers {
            for (name, address) in filePeers.sorted(by: { $0.key < $1.key }) {
                peerSpecs.append(try PeerSpec(name: name, address: address))
            }
        }
        var options = CausalNode.Options()
        options.stateDirectory = stateDir ?? file?.stateDir
        // A line counts as handed over once printed (NodeSession), not while it waits in the
        // stream: a member killed with lines unprinted prints them after its restart.
        options.confirmsDeliveries = options.stateDirectory != nil
        if let ms = heartbeatMs ?? file?.heartbeatMs {
            guard ms > 0 else { throw .badDuration("--heartbeat-ms", ms) }
            options.heartbeat = .milliseconds(ms)
        }
        if let ms = timeoutMs ?? file?.timeoutMs {
            guard ms > 0 else { throw .badDuration("--timeout-ms", ms) }
            options.timeout = .milliseconds(ms)
        }
        if let ms = reconnectMaxMs {
            guard ms > 0 else { throw .badDuration("--reconnect-max-ms", ms) }
            options.reconnectMax = .milliseconds(ms)
            options.reconnectMin = min(options.reconnectMin, options.reconnectMax)
        }
        var ownSlot = slot ?? file?.slot
        if let given = ownSlot { ownSlot = try NodeSetup.slot(parsing: String(given)) }
        return try NodeSetup(
            id: id, slot: ownSlot, listen: listen, peers: peerSpecs, keyFile: keyFile, options: options)
    }
}

/// A running `ucp node`: standard input in, deliveries out, events to standard error.
struct NodeSession {
    let setup: NodeSetup
    let node: CausalNode
    let drain: Duration

    func run() async throws {
        StandardStreams.error("listening on \(SocketAddress(host: setup.listen.host, port: node.port))")
        let node = self.node
        let signals = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                StandardStreams.error("closing on signal \(number)")
                Task { await node.close() }
            }
            source.resume()
            return source
        }
        defer { signals.forEach { $0.cancel() } }

        let events = Task { [setup] in
            for await event in node.events {
                if let line = Self.describe(event, setup: setup) { StandardStreams.error(line) }
            }
        }
        let input = Task { [drain] in
            await Self.broadcastLines(from: StandardStreams.inputLines(), through: node, drain: drain)
            await node.close()
        }
        // Runs until the node closes: at the end of input, or on a signal. A line is printed
        // (written to the pipe) before it is confirmed; what was not confirmed when the process
        // died is delivered, and printed, again after a restart with the state folder.
        let confirms = node.options.confirmsDeliveries
        for await message in node.deliveries {
            StandardStreams.output(Self.format(message, setup: setup))
            if confirms { try? node.confirm(message) }  // throws only once closing
        }
        input.cancel()
        events.cancel()
    }

    /// Broadcasts each line; at the end, waits up to `drain` for acknowledgements.
    static func broadcastLines(from lines: AsyncStream<String>, through node: CausalNode, drain: Duration) async {
        for await line in lines {
            let (level, text) = parse(line)
            do {
                try await node.broadcast(Array(text.utf8), emergency: level, waitingUntil: .now + .seconds(30))
            } catch  where error.reason == .closed {
                return
            } catch {
                StandardStreams.error("cannot broadcast \"\(text)\": \(error)")
            }
        }
        await node.waitUntilAllAcknowledged(deadline: .now + drain)
        let unacked = node.statistics.unacked
        if unacked > 0 { StandardStreams.error("\(unacked) broadcasts not acknowledged by every peer") }
    }

    /// The level a line asks for (`!high text`, `!critical text`, any level name) and its text.
    static func parse(_ line: String) -> (EmergencyLevel, String) {
        guard line.hasPrefix("!") else { return (.low, line) }
        let word = line.dropFirst().prefix { $0 != " " }
        guard !word.isEmpty, let level = try? EmergencyLevel(parsing: String(word)) else { return (.low, line) }
        let rest = line.dropFirst(1 + word.count)
        return (level, String(rest.first == " " ? rest.dropFirst() : rest))
    }

    /// `A {"A":1,"B":0} [LOW] text`.
    static func format(_ message: CausalMessage, setup: NodeSetup) -> String {
        let text = String(decoding: message.payload, as: UTF8.self)
        return
            "\(setup.id(at: message.sender)) \(clockJSON(message.clock, setup: setup)) [\(message.level.name)] \(text)"
    }

    /// `{"A":1,"B":0}`: every member by slot; a slot no member holds only when nonzero.
    static func clockJSON(_ clock: VectorClock, setup: NodeSetup) -> String {
        var parts: [String] = []
        for slot in 0..<max(setup.width, clock.width) {
            let value = clock[slot]
            guard slot < setup.ids.count && setup.ids[slot] != nil || value != 0 else { continue }
            parts.append("\"\(setup.id(at: slot))\":\(value)")
        }
        return "{" + parts.joined(separator: ",") + "}"
    }

    /// A line for standard error, or nil for an event not worth one.
    static func describe(_ event: NodeEvent, setup: NodeSetup) -> String? {
        switch event {
        case .listening: nil  // said once at the start, with the host
        case .peerUp(let slot): "peer \(setup.id(at: slot)) up"
        case .peerDown(let slot, let reason): "peer \(setup.id(at: slot)) down: \(reason)"
        case .refused(_, let address, let reason, _): "refused \(address ?? "unknown address"): \(reason)"
        case .protocolError(let slot, let address, let reason, _):
            "protocol error from \(slot.map { setup.id(at: $0) } ?? "unknown peer")"
                + (address.map { " (\($0))" } ?? "") + ": \(reason)"
        case .memberAdded(let slot, let width): "member \(setup.id(at: slot)) added (width \(width))"
        }
    }
}

/// Unbuffered standard streams: each line reaches the pipe at once, in one write.
enum StandardStreams {
    static func output(_ line: String) { write(line, to: STDOUT_FILENO) }
    static func error(_ line: String) { write(line, to: STDERR_FILENO) }

    private static func write(_ line: String, to fd: Int32) {
        var bytes = Array(line.utf8)
        bytes.append(UInt8(ascii: "\n"))
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { systemWrite(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }  // the reader has gone: nothing more to say
            written += n
        }
    }

    /// Standard input's lines, read on a thread of their own; finishes at end of input.
    static func inputLines() -> AsyncStream<String> {
        let (lines, sink) = AsyncStream<String>.makeStream()
        let thread = Thread {
            while let line = readLine(strippingNewline: true) { sink.yield(line) }
            sink.finish()
        }
        thread.start()
        return lines
    }
}

#if canImport(Glibc)
    private let systemWrite = Glibc.write
#elseif canImport(Musl)
    private let systemWrite = Musl.write
#elseif canImport(Darwin)
    private let systemWrite = Darwin.write
#endif
