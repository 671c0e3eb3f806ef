import NetworkFaults
import Causal
import Foundation
import Synchronization
import Testing

/// A line `ucp node` printed for a delivery: `A {"A":1,"B":0} [LOW] text`.
struct PrintedDelivery: Hashable {
    var sender: String
    var clock: [String: UInt64]
    var level: String
    var text: String

    init?(_ line: String) {
        guard let space = line.firstIndex(of: " "), let close = line.firstIndex(of: "}") else { return nil }
        sender = String(line[..<space])
        let json = line[line.index(after: space)...close]
        guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else {
            return nil
        }
        clock = object.compactMapValues { ($0 as? NSNumber)?.uint64Value }
        let rest = line[line.index(after: close)...].dropFirst()
        guard rest.hasPrefix("["), let end = rest.firstIndex(of: "]") else { return nil }
        level = String(rest[rest.index(after: rest.startIndex)..<end])
        text = String(rest[rest.index(after: end)...].dropFirst())
    }

    /// The message as the causal checker reads it, with slots from `ids` (sorted).
    func message(ids: [String]) -> CausalMessage {
        var vector = VectorClock(width: ids.count)
        for (slot, id) in ids.enumerated() { vector[slot] = clock[id] ?? 0 }
        return CausalMessage(sender: ids.firstIndex(of: sender) ?? ids.count, clock: vector)
    }
}

/// `ucp node` processes, one per id, each listening behind a `DelayProxy` so that the test
/// can delay and cut their links; peers reach each other through the proxies, and keep doing
/// so whatever a member announces as its own address (so a member may move to another port).
final class NodeProcessGroup: Sendable {
    let binary: String
    let ids: [String]
    let folder: TemporaryFolder
    let proxies: [String: DelayProxy]
    private let processes = Mutex<[String: ChildProcess]>([:])
    private let keyFiles: [String: String]

    init(binary: String, ids: [String], folder: TemporaryFolder, keyFiles: [String: String]) throws {
        self.binary = binary
        self.ids = ids.sorted()
        self.folder = folder
        self.keyFiles = keyFiles
        var proxies: [String: DelayProxy] = [:]
        for id in ids { proxies[id] = try DelayProxy(maxDelay: .milliseconds(2)) }
        self.proxies = proxies
    }

    /// A group of `ids` that all hold one cluster key, made fresh in `folder`.
    static func sharingOneKey(binary: String, ids: [String], folder: TemporaryFolder) throws -> NodeProcessGroup {
        let key = folder.file("cluster.key")
        try ClusterKey.random().write(toFile: key)
        return try NodeProcessGroup(
            binary: binary, ids: ids, folder: folder, keyFiles: Dictionary(uniqueKeysWithValues: ids.map { ($0, key) }))
    }

    subscript(id: String) -> ChildProcess { processes.withLock { $0[id]! } }

    /// The arguments of `id`'s process.
    func arguments(_ id: String, stateful: Bool) -> [String] {
        var arguments = [
            "node", "--id", id, "--listen", "127.0.0.1:0", "--key-file", keyFiles[id]!, "--heartbeat-ms", "100",
            "--timeout-ms", "2000", "--reconnect-max-ms", "200", "--drain-ms", "5000",
        ]
        for peer in ids where peer != id { arguments += ["--peer", "\(peer)=127.0.0.1:\(proxies[peer]!.port)"] }
        if stateful { arguments += ["--state-dir", folder.file("state-\(id)")] }
        return arguments
    }

    /// Starts (or restarts) `id`'s process and points its proxy at the port it picked.
    @discardableResult
    func start(_ id: String, stateful: Bool = false, arguments given: [String]? = nil) async throws -> ChildProcess {
        let process = try ChildProcess(binary, given ?? arguments(id, stateful: stateful))
        processes.withLock { $0[id] = process }
        let listening = await process.errors.wait(until: .now + .seconds(20)) { lines in
            lines.contains { $0.hasPrefix("listening on ") }
        }
        guard listening, let line = process.errors.values.first(where: { $0.hasPrefix("listening on ") }),
            let port = Int(line.split(separator: ":").last ?? "")
        else {
            throw NodeProcessFailure("\(id) did not start: \(process.errors.values)")
        }
        proxies[id]!.setTarget(port)
        return process
    }

    /// Ends every process (SIGKILL if still running) and proxy.
    func stop() async {
        let all = processes.withLock { Array($0.values) }
        for process in all { await process.terminate() }
        for proxy in proxies.values { proxy.close() }
    }

    /// What `process` printed, parsed; lines that are not deliveries are reported.
    static func deliveries(of process: ChildProcess) -> [PrintedDelivery] {
        process.output.values.map { line in
            PrintedDelivery(line) ?? PrintedDelivery(sender: "?", text: line)
        }
    }
}

extension PrintedDelivery {
    init(sender: String, text: String) {
        self.sender = sender
        self.clock = [:]
        self.level = ""
        self.text = text
    }
}

struct NodeProcessFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The text of line `index` that member `id` broadcasts, and its level prefix.
func processLine(_ id: String, _ index: Int) -> String {
    let text = "\(id)-\(index)"
    switch index % 40 {
    case 7: return "!critical " + text
    case 13, 29: return "!high " + text
    default: return text
    }
}

/// The level `processLine` asks for, as `ucp node` prints it.
func processLevel(_ index: Int) -> String {
    switch index % 40 {
    case 7: "CRITICAL"
    case 13, 29: "HIGH"
    default: "LOW"
    }
}

/// Checks deliveries printed by one process: parsed, exactly once, in causal order starting
/// from `start` (what the process had delivered before, by slot), texts and levels matching
/// their sequence numbers.
func checkPrinted(
    _ printed: [PrintedDelivery], ids: [String], start: [UInt64]? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(printed.allSatisfy { $0.sender != "?" }, "unparsed lines", sourceLocation: sourceLocation)
    let messages = printed.map { $0.message(ids: ids) }
    let problems = causalViolations(of: messages, width: ids.count, start: start)
    #expect(problems == [], sourceLocation: sourceLocation)
    for delivery in printed where delivery.sender != "?" {
        let sequence = delivery.clock[delivery.sender] ?? 0
        #expect(delivery.text == "\(delivery.sender)-\(sequence - 1)", sourceLocation: sourceLocation)
        #expect(delivery.level == processLevel(Int(sequence) - 1), sourceLocation: sourceLocation)
    }
}

@Suite("ucp node processes", .serialized)
struct NodeProcessTests {
    static let ids = ["A", "B", "C"]

    static func binary() throws -> String {
        guard let path = BuildProducts.executable("ucp") else {
            throw NodeProcessFailure(
                "no ucp executable next to the tests in \(BuildProducts.folder.path): build it first (swift build)")
        }
        return path
    }

    /// Feeds each member its lines in `ranges` (line i is a member's i-th broadcast), a few
    /// at a time and interleaved, so that the members' broadcasts depend on each other.
    static func feed(_ group: NodeProcessGroup, _ ranges: [String: Range<Int>]) async throws {
        var next = ranges.mapValues(\.lowerBound)
        while next.contains(where: { $0.value < ranges[$0.key]!.upperBound }) {
            for id in ranges.keys.sorted() {
                let end = min(next[id]! + 10, ranges[id]!.upperBound)
                for index in next[id]!..<end { group[id].send(processLine(id, index)) }
                next[id] = end
            }
            try await Task.sleep(for: .milliseconds(3))  // pacing, not synchronisation
        }
    }

    static func feed(_ group: NodeProcessGroup, ids: [String], _ range: Range<Int>) async throws {
        try await feed(group, Dictionary(uniqueKeysWithValues: ids.map { ($0, range) }))
    }

    @Test(
        "three processes print every line exactly once, in causal order, and exit 0 at the end of input",
        .timeLimit(.minutes(1)))
    func threeProcesses() async throws {
        let binary = try Self.binary()
        let folder = try TemporaryFolder("ucp-node")
        defer { folder.remove() }
        let key = folder.file("cluster.key")
        let generator = try ChildProcess(binary, ["node", "--generate-key", key])
        #expect(await generator.wait(until: .now + .seconds(20)) == 0)
        let mode = try FileManager.default.attributesOfItem(atPath: key)[.posixPermissions] as? Int
        #expect(mode == 0o600)

        let group = try NodeProcessGroup(
            binary: binary, ids: Self.ids, folder: folder,
            keyFiles: Dictionary(uniqueKeysWithValues: Self.ids.map { ($0, key) }))
        try await withCleanup { cleanup in
            cleanup.add { await group.stop() }
            // A reads its settings from a config file; B and C from options.
            let config = folder.file("a.json")
            let peers = ["B", "C"].map { "\"\($0)\": \"127.0.0.1:\(group.proxies[$0]!.port)\"" }.joined(separator: ", ")
            try Data(
                """
                {"id": "A", "listen": "127.0.0.1:0", "key_file": "cluster.key", "peers": {\(peers)},
                 "heartbeat_ms": 100, "timeout_ms": 2000}
                """.utf8
            ).write(to: URL(fileURLWithPath: config))
            try await group.start("A", arguments: ["node", "--config", config, "--reconnect-max-ms", "200"])
            try await group.start("B")
            try await group.start("C")

            let count = 200
            try await Self.feed(group, ids: Self.ids, 0..<count)
            let deadline = ContinuousClock.now + .seconds(40)
            for id in Self.ids {
                let complete = await group[id].output.wait(forCount: 3 * count, until: deadline)
                #expect(complete, "\(id) printed \(group[id].output.values.count) lines")
            }
            for id in Self.ids {
                let printed = NodeProcessGroup.deliveries(of: group[id])
                #expect(printed.count == 3 * count, "\(id)")
                #expect(Set(printed).count == printed.count, "\(id) printed a line twice")
                checkPrinted(printed, ids: Self.ids)
            }
            for id in Self.ids { group[id].closeInput() }
            for id in Self.ids {
                #expect(await group[id].wait(until: deadline) == 0, "\(id): \(group[id].errors.values)")
            }
        }
    }

    @Test(
        "links cut mid-stream, kill -9 and a restart with the state folder: nothing lost or repeated anywhere",
        .timeLimit(.minutes(1)))
    func cutKillAndRestart() async throws {
        let binary = try Self.binary()
        let folder = try TemporaryFolder("ucp-node")
        defer { folder.remove() }
        let group = try NodeProcessGroup.sharingOneKey(binary: binary, ids: Self.ids, folder: folder)
        try await withCleanup { cleanup in
            cleanup.add { await group.stop() }
            for id in Self.ids { try await group.start(id, stateful: true) }
            let deadline = ContinuousClock.now + .seconds(35)

            // Every link is cut while lines are in flight.
            try await Self.feed(group, ids: Self.ids, 0..<50)
            group.proxies.values.forEach { $0.cut() }
            try await Self.feed(group, ids: Self.ids, 50..<100)
            for id in Self.ids { #expect(await group[id].output.wait(forCount: 300, until: deadline)) }
            #expect(group.proxies.values.map(\.accepted).reduce(0, +) > 3)

            // C dies without a word; the others go on, then it comes back with its state on another
            // port, behind the same proxy: the others still reach it at the proxy's address, the
            // one they were given, not the one C announced before it died.
            let first = group["C"]
            first.signal(SIGKILL)
            #expect(await first.wait(until: deadline) == 128 + SIGKILL)
            try await Self.feed(group, ids: ["A", "B"], 100..<150)
            let second = try await group.start("C", stateful: true)
            #expect(second.pid != first.pid)
            try await Self.feed(group, ["A": 150..<185, "B": 150..<185, "C": 100..<135])
            group.proxies.values.forEach { $0.cut() }
            try await Self.feed(group, ["A": 185..<220, "B": 185..<220, "C": 135..<170])

            // A and B: every line once. C: each line once across its two lives.
            let total = 220 + 220 + 170
            for id in ["A", "B"] {
                let complete = await group[id].output.wait(forCount: total, until: deadline)
                #expect(
                    complete, "\(id) printed \(group[id].output.values.count) of \(total); \(group[id].errors.values)")
                let printed = NodeProcessGroup.deliveries(of: group[id])
                #expect(Set(printed).count == printed.count, "\(id) printed a line twice")
                checkPrinted(printed, ids: Self.ids)
            }
            // C after its crash: the state folder holds what it had printed (handed over) when
            // last written, and everything after that is delivered again (cc_node.h: never lost,
            // possibly repeated after a crash). So its second life starts at or before where the
            // first one stopped printing, leaves no gap, and prints each line once itself.
            let before = NodeProcessGroup.deliveries(of: first)
            let covered = await second.output.wait(until: deadline) { lines in
                Set(before + lines.compactMap(PrintedDelivery.init)).count >= total
            }
            let after = NodeProcessGroup.deliveries(of: second)
            #expect(
                covered, "C printed \(before.count) + \(after.count), \(Set(before + after).count) of \(total) lines")
            #expect(Set(before).count == before.count, "C printed a line twice before the crash")
            #expect(Set(after).count == after.count, "C printed a line twice after the restart")
            let printedBefore = Self.ids.map { id in UInt64(before.filter { $0.sender == id }.count) }
            let restored = Self.ids.enumerated().map { slot, id in
                after.filter { $0.sender == id }.map { ($0.clock[id] ?? 1) - 1 }.min() ?? printedBefore[slot]
            }
            #expect(
                zip(restored, printedBefore).allSatisfy { $0 <= $1 }, "restored \(restored), printed \(printedBefore)")
            checkPrinted(after, ids: Self.ids, start: restored)

            for id in Self.ids { group[id].closeInput() }
            for id in Self.ids {
                let code = await group[id].wait(until: .now + .seconds(10))
                #expect(code == 0, "\(id): \(group[id].errors.values.suffix(5))")
            }
        }
    }

    @Test("a process with the wrong key is refused and says so; the others carry on", .timeLimit(.minutes(1)))
    func wrongKeyProcess() async throws {
        let binary = try Self.binary()
        let folder = try TemporaryFolder("ucp-node")
        defer { folder.remove() }
        let good = folder.file("good.key")
        let bad = folder.file("bad.key")
        try ClusterKey.random().write(toFile: good)
        try ClusterKey.random().write(toFile: bad)
        let group = try NodeProcessGroup(
            binary: binary, ids: ["A", "B", "X"], folder: folder, keyFiles: ["A": good, "B": good, "X": bad])
        try await withCleanup { cleanup in
            cleanup.add { await group.stop() }
            for id in ["X", "A", "B"] { try await group.start(id) }
            let deadline = ContinuousClock.now + .seconds(30)
            for id in ["A", "X"] {
                let refused = await group[id].errors.wait(until: deadline) { lines in
                    lines.contains { $0.hasPrefix("refused 127.0.0.1:") }
                }
                #expect(refused, "\(id): \(group[id].errors.values)")
            }
            let named = await group["X"].errors.wait(until: deadline) { lines in
                lines.contains { $0.hasPrefix("refused 127.0.0.1:") && $0.contains("authentication failed") }
            }
            #expect(named, "\(group["X"].errors.values)")
            try await Self.feed(group, ids: ["A", "B", "X"], 0..<30)
            for id in ["A", "B"] {
                #expect(await group[id].output.wait(forCount: 60, until: deadline))
            }
            #expect(await group["X"].output.wait(forCount: 30, until: deadline))
            for id in ["A", "B"] {
                let printed = NodeProcessGroup.deliveries(of: group[id])
                #expect(printed.allSatisfy { $0.sender != "X" })
                checkPrinted(printed, ids: ["A", "B", "X"])
            }
            #expect(NodeProcessGroup.deliveries(of: group["X"]).allSatisfy { $0.sender == "X" })
            #expect(group["A"].errors.values.contains("peer B up"))
        }
    }

    @Test("SIGTERM closes a node cleanly: exit 0, everything it delivered printed", .timeLimit(.minutes(1)))
    func terminate() async throws {
        let folder = try TemporaryFolder("ucp-node")
        defer { folder.remove() }
        let key = folder.file("k")
        try ClusterKey.random().write(toFile: key)
        let process = try ChildProcess(
            try Self.binary(), ["node", "--id", "solo", "--listen", "127.0.0.1:0", "--key-file", key])
        defer { Task { await process.terminate() } }
        for index in 0..<5 { process.send(processLine("solo", index)) }
        #expect(await process.output.wait(forCount: 5, until: .now + .seconds(20)))
        process.signal(SIGTERM)
        #expect(await process.wait(until: .now + .seconds(20)) == 0)
        checkPrinted(NodeProcessGroup.deliveries(of: process), ids: ["solo"])
        _ = await process.errors.wait(until: .now + .seconds(5)) { _ in false }
        #expect(process.errors.values.contains("closing on signal \(SIGTERM)"), "\(process.errors.values)")
    }

    @Test(
        "bad options exit 64 with a message naming the value",
        arguments: [
            (["--id", "A", "--listen", "127.0.0.1:0", "--peer", "B=127.0.0.1:99999", "--key-file", "k"], "99999"),
            (["--id", "A", "--listen", "127.0.0.1:0", "--peer", "A=127.0.0.1:7002", "--key-file", "k"], "\"A\""),
            (["--id", "A", "--listen", "localhost:7001", "--key-file", "k"], "localhost"),
            (["--id", "A", "--listen", "127.0.0.1:0", "--key-file", "/nonexistent/k"], "/nonexistent/k"),
            (["--listen", "127.0.0.1:0", "--key-file", "k"], "--id"),
        ])
    func badOptions(arguments: [String], mention: String) async throws {
        let process = try ChildProcess(try Self.binary(), ["node"] + arguments)
        let code = await process.wait(until: .now + .seconds(20))
        #expect(code == 64)
        _ = await process.errors.wait(until: .now + .seconds(5)) { _ in false }  // until the pipe ends
        #expect(process.errors.values.contains { $0.contains(mention) }, "\(process.errors.values)")
    }
}
