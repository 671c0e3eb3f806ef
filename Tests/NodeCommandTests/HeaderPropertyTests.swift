import Causal
import Foundation
import NetworkFaults
import Testing

@testable import UCP
@testable import ucp

/// A property of every `ucp` node, checked on real processes: no number a request carries (the
/// extremes of 64 bits and one past them, huge, signed, padded, hexadecimal, floating, non-ASCII
/// digits, 8 KiB long, or random header bytes) in a header, a path, a query or a JSON field makes
/// a node trap, and each is answered with a status that is not a 5xx.
///
/// A broker, a datastore and an executor are started as processes and sent a few hundred such
/// requests each over raw sockets, so that the bytes are exactly the test's (a `Content-Length`
/// that does not match its body included). A trap shows as a dead process. Among the values are
/// the two that once stopped a broker: a clock entry of 2^64-1 under the broker's own id (its
/// next tick overflowed) and a proof dated Int64.min (the skew check overflowed).
///
/// The values come from a seeded generator; `HEADER_PROPERTY_SEED=<n>` replays a failing run.
@Suite("Header properties: no number a request carries stops a node", .serialized, .timeLimit(.minutes(4)))
struct HeaderPropertyTests {
    /// The run's seed: `HEADER_PROPERTY_SEED` when set, otherwise a random one.
    static let seed =
        ProcessInfo.processInfo.environment["HEADER_PROPERTY_SEED"].flatMap { UInt64($0) }
        ?? .random(in: 1...UInt64.max)

    /// Requests sent to each node in one run.
    static let probesPerNode = 250

    @Test("without a cluster key, hostile numbers in clocks, dots, paths, queries and bodies are answered")
    func unkeyed() async throws {
        try await Self.run(keyed: false)
    }

    @Test("with a cluster key, hostile numbers in proofs, and in clocks under valid proofs, are answered")
    func keyed() async throws {
        try await Self.run(keyed: true)
    }

    /// Starts the three nodes, sends each its probes, and checks every answer and every process.
    static func run(keyed: Bool) async throws {
        ignoreBrokenPipes()
        let label = keyed ? "keyed" : "unkeyed"
        try await ProcessNodes.withNodes("header-property-\(label)") { nodes in
            let key = ClusterKey.random()
            let keyFile = nodes.folder + "/cluster.key"
            try key.write(toFile: keyFile)
            let keyArguments = keyed ? ["--key-file", keyFile] : []
            let broker = try nodes.broker(keyArguments)
            let datastoreID = UUID()
            let executorID = UUID()
            let datastore = try nodes.start(
                "datastore",
                [
                    "datastore", "--rootdir", nodes.folder + "/datastore.d", "--broker", "\(broker)", "--id",
                    datastoreID.ucpString, "--heartbeat-interval", "0.5",
                ] + keyArguments)
            let executor = try nodes.start(
                "executor",
                [
                    "executor", "--rootdir", nodes.folder + "/executor.d", "--broker", "\(broker)", "--executor-id",
                    executorID.ucpString, "--heartbeat-interval", "0.5", "--workers", "2", "--time-limit",
                    "60",
                ] + keyArguments)
            let client = UCPClient(broker: broker, auth: keyed ? ClusterAuth(key: key) : nil)
            defer { Task { await client.shutdown() } }
            try await until("the broker counts the datastore and the executor", timeout: .seconds(30)) {
                let datastores = try? await client.http.decode(Int.self, .GET, broker, "/datastores/count")
                let executors = try? await client.http.decode(Int.self, .GET, broker, "/executors/count")
                return datastores == 1 && executors == 1
            }
            let brokerID = try await client.http.decode(ClockView.self, .GET, broker, "/clock").node
            // The module of the probes' jobs, so that the jobs they submit run and deliver.
            try await client.put(name: ProbeBuilder.module, bytes: try ShippedJob.hello.wasm())

            var builder = ProbeBuilder(
                seed: seed ^ (keyed ? 0x6b65_7965_64 : 0),
                auth: keyed ? ClusterAuth(key: key) : nil,
                ids: [brokerID, executorID.ucpString, datastoreID.ucpString],
                executorID: executorID, executorPort: executor.port)
            let ports = ["broker": broker.port, "datastore": datastore.port, "executor": executor.port]
            var probes = builder.corners()
            for _ in 0..<probesPerNode {
                probes.append(builder.brokerProbe())
                probes.append(builder.datastoreProbe())
                probes.append(builder.executorProbe())
            }
            probes += builder.resultPorts()

            let began = ContinuousClock.now
            var answered: [String: Int] = [:]
            var failures = 0
            var provenWrites = 0
            for (index, probe) in probes.enumerated() {
                let answer = await exchange(port: ports[probe.node]!, probe.bytes, halfClose: probe.framing)
                answered["\(probe.route) \(answer)", default: 0] += 1
                if let problem = probe.problem(with: answer, keyed: keyed) {
                    Issue.record("seed \(seed), \(label), probe \(index): \(problem)\n\(probe)")
                    failures += 1
                }
                if probe.proven, case .status(let code) = answer, code != 401 { provenWrites += 1 }
                if let dead = ports.keys.sorted().first(where: { !nodes.isRunning($0) }) {
                    let recent = probes[max(0, index - 5)...index].map(\.description).joined(separator: "\n")
                    let death = "seed \(seed), \(label): the \(dead) died by probe \(index) (answered \(answer))"
                    Issue.record("\(death)\(Self.fatalLines(nodes, dead)); its last requests:\n\(recent)")
                    failures += 1
                    break
                }
            }
            let summary = answered.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
            let report =
                "[header-property] seed \(seed), \(label): \(probes.count) probes in \(ContinuousClock.now - began)"
            FileHandle.standardError.write(Data((report + "; " + summary.joined(separator: ", ") + "\n").utf8))
            // The jobs the probes gave the executor run, and their results go to the addresses they
            // named. How long that takes is reported, not checked: the property is about the
            // processes. (A job may stay queued: accepted while a forged heartbeat had raised the
            // executor's capabilities, which its next own heartbeat lowered again.)
            let settling = ContinuousClock.now
            var jobs: [String: Int] = [:]
            while ContinuousClock.now - settling < .seconds(30), nodes.isRunning("broker") {
                jobs = (try? await client.http.decode(BrokerStatus.self, .GET, broker, "/status"))?.jobs ?? [:]
                if jobs["assigned"] == 0 { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            FileHandle.standardError.write(
                Data("[header-property] \(label): jobs \(jobs) after \(ContinuousClock.now - settling)\n".utf8))
            if keyed {
                #expect(provenWrites > 0, "seed \(seed): no proven request got past the proof check")
            }

            // Every node is still there and still serves its reading routes.
            let reads = [
                ("broker", ["/ping", "/clock", "/status", "/executors/count", "/datastores/count", "/emergency"]),
                ("datastore", ["/ping", "/clock", "/list", "/free"]),
                ("executor", ["/ping", "/clock", "/capabilities", "/job/list", "/emergency"]),
            ]
            for (node, paths) in reads {
                guard nodes.isRunning(node) else {
                    Issue.record("seed \(seed), \(label): the \(node) is not running\(Self.fatalLines(nodes, node))")
                    failures += 1
                    continue
                }
                for path in paths {
                    let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
                    let answer = await exchange(port: ports[node]!, request, halfClose: false)
                    if answer != .status(200) {
                        Issue.record("seed \(seed), \(label): GET \(path) on the \(node) answered \(answer)")
                        failures += 1
                    }
                }
            }
            // Thrown so that the nodes' logs are kept.
            if failures > 0 { throw DemoError("seed \(seed), \(label): \(failures) wrong answers") }
        }
    }

    /// What node `name`'s log says about its end (a trap's message and the frames of its own
    /// code), or nothing. A trap may come later than the request that caused it: a job's
    /// result address, for one, is used when its result arrives.
    static func fatalLines(_ nodes: ProcessNodes, _ name: String) -> String {
        guard let log = try? String(contentsOfFile: "\(nodes.folder)/\(name).log", encoding: .utf8) else { return "" }
        let lines = log.split(separator: "\n").filter {
            ($0.contains("Fatal error") && !$0.contains(" 0x")) || $0.contains("Program crashed")
                || $0.contains("/Sources/UCP/")
        }
        return lines.isEmpty ? "" : "; its log:\n" + lines.prefix(12).joined(separator: "\n")
    }

    // MARK: - Raw exchanges

    /// What a node did with one request.
    enum Answer: Hashable, CustomStringConvertible {
        /// A status line with this code.
        case status(Int)
        /// A first line that is not an HTTP status line.
        case malformed(String)
        /// The connection closed before a status line.
        case closed
        /// No status line within the time allowed.
        case silent
        /// The connection could not be opened.
        case refused(String)

        var description: String {
            switch self {
            case .status(let code): "\(code)"
            case .malformed(let line): "malformed \"\(line)\""
            case .closed: "closed"
            case .silent: "silent"
            case .refused(let why): "refused (\(why))"
            }
        }
    }

    /// Sends `bytes` to 127.0.0.1:`port` (then ends the sending side when `halfClose`) and reads
    /// the answer's status line, on a thread of its own, for at most `timeout`.
    static func exchange(port: Int, _ bytes: [UInt8], halfClose: Bool, timeout: Duration = .seconds(15)) async
        -> Answer
    {
        await withCheckedContinuation { continuation in
            Thread {
                continuation.resume(
                    returning: exchangeBlocking(port: port, bytes, halfClose: halfClose, timeout: timeout))
            }.start()
        }
    }

    private static func exchangeBlocking(port: Int, _ bytes: [UInt8], halfClose: Bool, timeout: Duration) -> Answer {
        let fd: Int32
        do {
            fd = try Socket.connect(port: port)
        } catch {
            return .refused("\(error)")
        }
        defer { close(fd) }
        // A node may answer before the whole request is read (413) and close: read what it sent.
        Socket.send(fd, bytes)
        if halfClose { shutdown(fd, Int32(SHUT_WR)) }
        let deadline = ContinuousClock.now + timeout
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            if let end = received.firstRange(of: [13, 10]) {
                let line = String(decoding: received[..<end.lowerBound], as: UTF8.self)
                let parts = line.split(separator: " ", maxSplits: 2)
                guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), parts[1].count == 3, let code = Int(parts[1])
                else { return .malformed(String(line.prefix(120))) }
                return .status(code)
            }
            let left = deadline - ContinuousClock.now
            guard left > .zero else { return .silent }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ms = Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            let ready = poll(&poller, 1, ms)
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return .closed }
            received += buffer[..<n]
        }
    }
}

// MARK: - Probes

extension HeaderPropertyTests {
    /// One raw request to one node, and what may answer it.
    struct Probe: CustomStringConvertible {
        /// The node it goes to: `broker`, `datastore` or `executor`.
        var node: String
        var method: String
        /// The path and query, as sent.
        var target: String
        /// Header lines besides `Host`, `Connection` and the framing.
        var headers: [(name: String, value: [UInt8])] = []
        var body: [UInt8] = []
        /// A `Content-Length` value other than the body's, when the framing itself is the hostile part.
        var contentLength: [UInt8]?
        /// 5xx answers this route documents (503 for a job no executor can take or set up).
        var documented5xx: Set<Int> = []
        /// Whether it carries a valid proof of membership over its clock and dot (keyed runs).
        var proven = false

        /// `node METHOD /path` with its numbers and ids as `{}`, to count answers by route.
        var route: String {
            let path = target.split(separator: "?", maxSplits: 1).first ?? ""
            let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map {
                Self.words.contains(String($0)) ? String($0) : "{}"
            }
            return "\(node) \(method) /" + segments.joined(separator: "/")
        }

        private static let words: Set<String> = [
            "ping", "clock", "metrics", "status", "executors", "datastores", "count", "emergency", "list", "data",
            "job",
            "ledger", "done", "submit", "heartbeat", "register", "result", "free", "capabilities", "job_data", "hp",
        ]

        /// True when the framing is hostile: the sending side is then closed after the body, and a
        /// closed connection is an answer.
        var framing: Bool { contentLength != nil }

        /// The request's bytes.
        var bytes: [UInt8] {
            var head = Array("\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".utf8)
            for (name, value) in headers { head += Array("\(name): ".utf8) + value + [13, 10] }
            if let contentLength {
                head += Array("Content-Length: ".utf8) + contentLength + [13, 10]
            } else if method != "GET" || !body.isEmpty {
                head += Array("Content-Length: \(body.count)\r\n".utf8)
            }
            return head + [13, 10] + body
        }

        /// Why `answer` is wrong for this request, or nil: any 1xx to 4xx status (401 only where a
        /// proof was needed and not given), a documented 5xx, or, when the framing is the hostile
        /// part, a closed connection.
        func problem(with answer: Answer, keyed: Bool) -> String? {
            switch answer {
            case .status(let code) where code < 500:
                // A proven request may still be refused: the proof covers the headers as the node
                // reads them (trimmed, decoded), which may differ from the bytes sent.
                if code == 401 && (!keyed || method == "GET") { return "401 for a request that needs no proof" }
                return nil
            case .status(let code) where documented5xx.contains(code): return nil
            case .status(let code): return "answered \(code)"
            case .closed where framing: return nil
            default: return "answered \(answer)"
            }
        }

        /// `METHOD target`, headers and body, with bytes outside printable ASCII escaped and long
        /// runs of one byte shortened.
        var description: String {
            var text = "\(node): \(Self.shown(Array(method.utf8) + [32] + Array(target.utf8)))"
            for (name, value) in headers { text += "\n  \(name): \(Self.shown(value))" }
            if let contentLength {
                text += "\n  Content-Length: \(Self.shown(contentLength)) (body \(body.count) bytes)"
            }
            if !body.isEmpty { text += "\n  body: \(Self.shown(body))" }
            return text
        }

        static func shown(_ bytes: [UInt8]) -> String {
            var text = ""
            var index = 0
            while index < bytes.count, text.count < 400 {
                let byte = bytes[index]
                var run = 1
                while index + run < bytes.count, bytes[index + run] == byte { run += 1 }
                let one =
                    (32..<127).contains(byte) && byte != 92
                    ? String(UnicodeScalar(byte)) : "\\x" + String(byte, radix: 16)
                if run > 8 {
                    text += "<\(run) × \(one)>"
                } else {
                    text += String(repeating: one, count: run)
                }
                index += run
            }
            return index < bytes.count ? text + "… (\(bytes.count) bytes)" : text
        }
    }

    /// SplitMix64: a small seeded generator, so that a run can be replayed from its seed.
    struct SeededNumbers: RandomNumberGenerator {
        private var state: UInt64

        init(seed: UInt64) { state = seed }

        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// Builds hostile probes from one seeded generator.
    struct ProbeBuilder {
        var random: SeededNumbers
        /// The cluster's proofs, in a keyed run.
        let auth: ClusterAuth?
        /// The nodes' ids, then a few strangers'.
        let ids: [String]
        let executorID: UUID
        let executorPort: Int

        init(seed: UInt64, auth: ClusterAuth?, ids: [String], executorID: UUID, executorPort: Int) {
            random = SeededNumbers(seed: seed)
            self.auth = auth
            var strangers: [String] = []
            for _ in 0..<3 { strangers.append("stranger-" + String(random.next(), radix: 36)) }
            self.ids = ids + strangers
            self.executorID = executorID
            self.executorPort = executorPort
        }

        /// The name of the module the probes' jobs run.
        static let module = "hp/hello.wasm"

        // MARK: Values

        /// The extremes and their neighbours.
        static let extremes = [
            "0", "1", "-1", "-0", "18446744073709551615", "18446744073709551616", "18446744073709551614",
            "-18446744073709551615", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
            "-9223372036854775809", "9007199254740991", "9007199254740992", "9007199254740993", "-9007199254740993",
            "4294967295", "4294967296", "2147483647", "2147483648", "-2147483649", "65535", "65536", "65537", "100",
            "1025",
        ]

        /// Numbers in the forms a parser may or may not take.
        static let forms = [
            "0x10", "0xFFFFFFFFFFFFFFFF", "-0x1", "0b1", "0o7", "1e308", "1e309", "-1e308", "1.7976931348623157e308",
            "4.9e-324", "1e-400", "1.5", "1.0", "2.", ".5", "1e2", "1E+2", "NaN", "nan", "-NaN", "Infinity",
            "-Infinity", "inf", "1_000", "1,000", "1 000", "", " ", "true", "null", "[]", "{}", "\"1\"",
            // Digits of other scripts: Arabic-Indic (123, and 2^64), fullwidth, Devanagari, mathematical.
            "١٢٣", "١٨٤٤٦٧٤٤٠٧٣٧٠٩٥٥١٦١٦", "１２３", "१२३", "٣", "𝟙𝟚𝟛", "Ⅻ", "½",
        ]

        mutating func below(_ count: Int) -> Int { Int(random.next() % UInt64(count)) }

        mutating func pick<T>(_ options: [T]) -> T { options[below(options.count)] }

        /// A number-like value, as bytes (some are not UTF-8).
        mutating func value() -> [UInt8] {
            switch below(12) {
            case 0..<4:
                return Array(pick(Self.extremes).utf8)
            case 4:
                // A huge decimal number, perhaps signed.
                let digits = 100 + below(300)
                var text = pick(["", "-", "+"]) + String(1 + below(9))
                for _ in 1..<digits { text += String(below(10)) }
                return Array(text.utf8)
            case 5:
                // An extreme with padding, a sign or a tail.
                let text =
                    pick(["+", "-", "0", "0000000000", "-0", "+0", " ", "\t", ""]) + pick(Self.extremes)
                    + pick(["", " ", "\t", ".0", "e0", "0", "x", "\u{00A0}"])
                return Array(text.utf8)
            case 6, 7:
                return Array(pick(Self.forms).utf8)
            case 8:
                // 8 KiB of digits, or of header bytes.
                if below(2) == 0 { return (0..<8192).map { _ in UInt8(48 + below(10)) } }
                return headerBytes(8192)
            default:
                return headerBytes(1 + below(64))
            }
        }

        /// `count` bytes a header value may hold: visible ASCII, space, tab, and obs-text.
        mutating func headerBytes(_ count: Int) -> [UInt8] {
            (0..<count).map { _ in
                switch below(8) {
                case 0: UInt8(0x80 + below(0x80))
                case 1: pick([0x20, 0x09])
                default: UInt8(0x21 + below(0x7F - 0x21))
                }
            }
        }

        /// A value as a JSON number (bytes as they are, which may not be JSON) or, now and then,
        /// as a JSON string.
        mutating func jsonValue() -> [UInt8] {
            let raw = value()
            guard below(6) == 0 else { return raw }
            var quoted: [UInt8] = [34]
            for byte in raw {
                if byte == 34 || byte == 92 { quoted.append(92) }
                quoted.append(byte < 0x20 ? 0x20 : byte)
            }
            return quoted + [34]
        }

        /// A value percent-encoded for a path segment or a query (now and then the plain ASCII
        /// form, when it is safe as it is).
        mutating func urlValue() -> String {
            let raw = value()
            let unreserved = { (byte: UInt8) in
                (48...57).contains(byte) || (65...90).contains(byte) || (97...122).contains(byte)
                    || "-._~".utf8.contains(byte)
            }
            if below(3) == 0, !raw.isEmpty, raw.allSatisfy({ unreserved($0) || $0 == 43 }) {
                return String(decoding: raw, as: UTF8.self)
            }
            return raw.map { byte in
                unreserved(byte)
                    ? String(UnicodeScalar(byte)) : "%" + String(byte >> 4, radix: 16) + String(byte & 15, radix: 16)
            }.joined()
        }

        static func utf8(_ text: String) -> [UInt8] { Array(text.utf8) }

        // MARK: Headers

        /// An `X-UCP-Clock` value: entries under the nodes' or strangers' ids with hostile counts,
        /// or a malformed object.
        mutating func clockValue() -> [UInt8] {
            let id = Self.utf8("\"\(pick(ids))\"")
            switch below(10) {
            case 0..<5:
                return Self.utf8("{") + id + Self.utf8(": ") + fieldValue() + Self.utf8("}")
            case 5, 6:
                let other = Self.utf8("\"\(pick(ids))\"")
                return Self.utf8("{") + id + Self.utf8(": ") + fieldValue() + Self.utf8(", ") + other + Self.utf8(": ")
                    + fieldValue() + Self.utf8("}")
            case 7:
                return value()
            case 8:
                return Self.utf8("{\"") + value().filter { $0 != 34 && $0 != 92 } + Self.utf8("\": 1}")
            default:
                return Self.utf8("{") + id + Self.utf8(": [") + fieldValue() + Self.utf8("]}")
            }
        }

        /// An `X-UCP-Dot` value: `node:<n>`, or a bare or doubled number.
        mutating func dotValue() -> [UInt8] {
            switch below(4) {
            case 0, 1: Self.utf8("\(pick(ids)):") + value()
            case 2: value()
            default: value() + Self.utf8(":") + value()
            }
        }

        /// An `X-UCP-Auth` value: a hostile time before a well-formed tag, or a hostile tag.
        mutating func authValue() -> [UInt8] {
            let tag = (0..<(2 * ClusterKey.authenticatorByteCount)).map { _ in pick(Array("0123456789abcdef")) }
            switch below(4) {
            case 0, 1: return value() + Self.utf8(":" + String(tag))
            case 2: return Self.utf8("\(ClusterAuth.now()):") + value()
            default: return value()
            }
        }

        /// `probe` with a clock, a dot and, in a keyed run, a proof: hostile ones (`hostile`, or
        /// for a quarter of the probes when nil), otherwise well-formed ones, so that the request
        /// reaches its route and the numbers of its path or body are read. A request that changes
        /// state is mostly proven in a keyed run (its clock and dot are then merged, hostile or
        /// not); otherwise it carries a hostile proof, or none.
        mutating func stamped(_ probe: Probe, hostile: Bool? = nil) -> Probe {
            var probe = probe
            var clock: [UInt8]?
            var dot: [UInt8]?
            if hostile ?? (below(4) == 0) {
                if below(5) != 0 { clock = clockValue() }
                if below(3) == 0 { dot = dotValue() }
            } else if below(4) != 0 {
                clock = Self.utf8("{\"\(pick(ids))\": \(1 + below(1000))}")
                if below(3) == 0 { dot = Self.utf8("\(pick(ids)):\(1 + below(1000))") }
            }
            if auth != nil, probe.method != "GET", below(3) != 0 { return proven(probe, clock: clock, dot: dot) }
            if let clock { probe.headers.append((ClockStamp.clockHeader, clock)) }
            if let dot { probe.headers.append((ClockStamp.dotHeader, dot)) }
            if auth != nil ? below(4) != 0 : below(8) == 0 { probe.headers.append((ClusterAuth.header, authValue())) }
            return probe
        }

        /// `probe` with `clock` and `dot` and, in a keyed run, a valid proof over them when it
        /// changes state (a GET needs none).
        func proven(_ probe: Probe, clock: [UInt8]?, dot: [UInt8]?) -> Probe {
            var probe = probe
            if let clock { probe.headers.append((ClockStamp.clockHeader, clock)) }
            if let dot { probe.headers.append((ClockStamp.dotHeader, dot)) }
            guard let auth, probe.method != "GET" else { return probe }
            let proof = auth.proof(
                method: probe.method, path: probe.target, clock: clock.map { String(decoding: $0, as: UTF8.self) },
                dot: dot.map { String(decoding: $0, as: UTF8.self) }, at: ClusterAuth.now())
            probe.headers.append((ClusterAuth.header, Self.utf8(proof)))
            probe.proven = true
            return probe
        }

        // MARK: Corners

        /// Counts where 64-bit arithmetic breaks: 2^64-1 (one tick from overflow), 2^64-2, 2^63-1,
        /// 2^63 (past Int64), 2^64 (past UInt64).
        static let cornerCounts = [
            "18446744073709551615", "18446744073709551614", "9223372036854775807", "9223372036854775808",
            "18446744073709551616",
        ]

        /// Proof times where the skew check's arithmetic breaks.
        static let cornerTimes = [
            "-9223372036854775808", "9223372036854775807", "-9223372036854775809", "9223372036854775808",
            "18446744073709551615", "-1", "0",
        ]

        /// Probes sent whatever the seed, before the random ones: every corner count under every
        /// node's id and a stranger's, in a clock on a GET (merged without a key) and on a proven
        /// write (merged with one), and as a dot's sequence; every corner time in a proof;
        /// capabilities and pages at their edges. The two that once stopped a broker are among
        /// them: its own entry at 2^64-1 (the old `NodeClock.receive` took it, and the next
        /// `+= 1` trapped) and a proof dated Int64.min (the old skew check subtracted the node's
        /// time from it and trapped).
        mutating func corners() -> [Probe] {
            let writes = [
                Probe(node: "broker", method: "PUT", target: "/job/done/\(UUID().ucpString)"),
                Probe(node: "datastore", method: "DELETE", target: "/data/hp/corner"),
                Probe(node: "executor", method: "DELETE", target: "/job/\(UUID().ucpString)"),
            ]
            var probes: [Probe] = []
            for write in writes {
                let read = Probe(node: write.node, method: "GET", target: "/clock")
                for id in ids {
                    for count in Self.cornerCounts {
                        let clock = Self.utf8("{\"\(id)\": \(count)}")
                        probes.append(proven(read, clock: clock, dot: nil))
                        probes.append(proven(write, clock: clock, dot: nil))
                        probes.append(proven(write, clock: Self.utf8("{}"), dot: Self.utf8("\(id):\(count)")))
                    }
                }
                let tag = String(repeating: "ab", count: ClusterKey.authenticatorByteCount)
                for time in Self.cornerTimes {
                    var probe = write
                    probe.headers = [
                        (ClockStamp.clockHeader, Self.utf8("{}")), (ClusterAuth.header, Self.utf8("\(time):\(tag)")),
                    ]
                    probes.append(probe)
                }
            }
            let json = [("Content-Type", Self.utf8("application/json"))]
            // The executor's capabilities at the edges of Int, which the dispatch window multiplies.
            for field in ["cpu_cores", "memory"] {
                for count in ["9223372036854775807", "-9223372036854775808", "0", "-1"] {
                    let probe = Probe(
                        node: "broker", method: "PUT", target: "/executors/heartbeat/\(executorID.ucpString)",
                        headers: json, body: Self.utf8("{\"\(field)\": \(count)}"))
                    probes.append(proven(probe, clock: Self.utf8("{}"), dot: nil))
                }
            }
            // Pages at the edges of the datastore's range.
            for page in ["2147483647", "2147483648", "9223372036854775807", "0"] {
                for size in ["100", "101", "0"] {
                    let probe = Probe(node: "datastore", method: "GET", target: "/list/hp?page=\(page)&size=\(size)")
                    probes.append(proven(probe, clock: nil, dot: nil))
                }
            }
            return probes
        }

        /// Jobs whose results the broker passes on to ports past 16 bits (and to the edges of
        /// them), sent after the other probes: each runs while the test waits for the executor to
        /// finish, and its result then goes through the broker, which opens a connection to the
        /// port the job named.
        func resultPorts() -> [Probe] {
            ["65536", "4294967296", "9223372036854775807", "-1", "0", "65535"].map { port in
                let body =
                    "{\"job_info\": {\"wasm_bin\": \"\(Self.module)\", \"wasm_bin_is_named\": true,"
                    + " \"result_addr\": {\"host\": \"127.0.0.1\", \"port\": \(port)}}, \"wait_for\": []}"
                var probe = Probe(
                    node: "broker", method: "PUT", target: "/job/submit/\(UUID().ucpString)",
                    headers: [("Content-Type", Self.utf8("application/json"))], body: Self.utf8(body))
                probe.documented5xx = [503]
                return proven(probe, clock: Self.utf8("{}"), dot: nil)
            }
        }

        /// Now and then, a hostile `Content-Length` for a probe with a body.
        mutating func framed(_ probe: Probe) -> Probe {
            var probe = probe
            if below(4) == 0 { probe.contentLength = value() }
            return probe
        }

        // MARK: Bodies

        /// JSON numbers at the extremes of what a decoder takes, or just past them.
        static let jsonNumbers =
            extremes + ["1e308", "-1e308", "1.7976931348623157e308", "4.9e-324", "0.0", "-0.0", "1.5"]

        /// A field's value in a body: half the time a JSON number at an extreme (so that the body
        /// decodes and the number is used), otherwise any value.
        mutating func fieldValue() -> [UInt8] {
            below(2) == 0 ? Self.utf8(pick(Self.jsonNumbers)) : jsonValue()
        }

        /// Capabilities with one or two hostile fields.
        mutating func capabilities() -> [UInt8] {
            let fields = ["memory", "disk", "cpu_load", "cpu_cores", "cpu_freq", "power"]
            var body = Self.utf8("{\"\(pick(fields))\": ") + fieldValue()
            if below(2) == 0 { body += Self.utf8(", \"\(pick(fields))\": ") + fieldValue() }
            if below(2) == 0 { body += Self.utf8(", \"has_battery\": false") }
            return body + Self.utf8("}")
        }

        /// A JobInfo whose capabilities or result address carry hostile numbers; its module prints
        /// a line.
        mutating func jobInfo() -> [UInt8] {
            var body =
                Self.utf8("{\"wasm_bin\": \"\(Self.module)\", \"wasm_bin_is_named\": true, \"capabilities\": ")
                + capabilities()
            if below(3) == 0 {
                body +=
                    Self.utf8(", \"result_addr\": {\"host\": \"\(pick(["", "127.0.0.1"]))\", \"port\": ") + fieldValue()
                    + Self.utf8("}")
            }
            return body + Self.utf8("}")
        }

        /// A multipart body with one small `data` field, and its content type.
        func multipart() -> (body: [UInt8], contentType: [UInt8]) {
            let form = MultipartForm(filename: "hp.bin")
            return (form.head + Self.utf8("hostile numbers\n") + form.tail, Self.utf8(form.contentType))
        }

        // MARK: Per node

        /// A GET of one of every node's routes.
        mutating func commonRead(_ node: String, _ extra: [String]) -> Probe {
            stamped(
                Probe(node: node, method: "GET", target: pick(["/ping", "/clock", "/metrics"] + extra)), hostile: true)
        }

        mutating func brokerProbe() -> Probe {
            let node = "broker"
            let executor = executorID.ucpString
            switch below(20) {
            case 0..<4:
                return commonRead(
                    node, ["/status", "/executors/count", "/datastores/count", "/emergency", "/list/data"])
            case 4:
                return stamped(Probe(node: node, method: "GET", target: "/job/\(urlValue())"))
            case 5:
                return stamped(Probe(node: node, method: "GET", target: "/ledger/\(urlValue())"))
            case 6:
                return stamped(Probe(node: node, method: "GET", target: "/data/hp/\(urlValue())?job_id=\(urlValue())"))
            case 7:
                return stamped(Probe(node: node, method: "GET", target: "/list/data/\(urlValue())"))
            case 8, 9:
                let id = below(2) == 0 ? UUID().ucpString : urlValue()
                return stamped(Probe(node: node, method: "PUT", target: "/job/done/\(id)"))
            case 10, 11:
                // Without wait_for, a job no executor can take is answered 503, as UCP does.
                let waitFor =
                    below(4) == 0
                    ? Self.utf8("[\"") + value().filter { $0 != 34 && $0 != 92 } + Self.utf8("\"]") : Self.utf8("[]")
                var probe = Probe(
                    node: node, method: "PUT", target: "/job/submit/\(UUID().ucpString)",
                    headers: [("Content-Type", Self.utf8("application/json"))],
                    body: Self.utf8("{\"job_info\": ") + jobInfo() + Self.utf8(", \"wait_for\": ") + waitFor
                        + Self.utf8("}"))
                probe.documented5xx = [503]
                return framed(stamped(probe))
            case 12, 13:
                // The real executor's heartbeat, with hostile capabilities (its own next beat mends them).
                let id = below(4) == 0 ? urlValue() : executor
                return framed(
                    stamped(
                        Probe(
                            node: node, method: "PUT", target: "/executors/heartbeat/\(id)",
                            headers: [("Content-Type", Self.utf8("application/json"))], body: capabilities())))
            case 14:
                // A registration: a hostile port, or the real executor's port with hostile capabilities.
                let port = below(2) == 0 ? fieldValue() : Self.utf8("\(executorPort)")
                let body =
                    Self.utf8("{\"hosts\": [\"127.0.0.1\"], \"executor\": {\"address\": {\"host\": \"\", \"port\": ")
                    + port
                    + Self.utf8("}, \"id\": \"\(executor)\", \"cur_caps\": ") + capabilities()
                    + Self.utf8(", \"last_update\": ") + fieldValue() + Self.utf8("}}")
                return stamped(
                    Probe(
                        node: node, method: "PUT", target: "/executors/register",
                        headers: [("Content-Type", Self.utf8("application/json"))], body: body))
            case 15:
                if below(2) == 0 {
                    return stamped(Probe(node: node, method: "PUT", target: "/datastores/heartbeat/\(urlValue())"))
                }
                let body =
                    Self.utf8("{\"hosts\": [\"127.0.0.1\"], \"datastore\": {\"address\": {\"host\": \"\", \"port\": ")
                    + fieldValue() + Self.utf8("}, \"id\": \"\(UUID().ucpString)\"}}")
                return stamped(
                    Probe(
                        node: node, method: "PUT", target: "/datastores/register",
                        headers: [("Content-Type", Self.utf8("application/json"))], body: body))
            case 16:
                let id = below(2) == 0 ? UUID().ucpString : urlValue()
                return stamped(Probe(node: node, method: "DELETE", target: "/job/\(id)"))
            case 17:
                let (body, type) = multipart()
                return framed(
                    stamped(
                        Probe(
                            node: node, method: "PUT", target: "/data/hp/\(urlValue())",
                            headers: [("Content-Type", type)], body: body)))
            case 18:
                let (body, type) = multipart()
                return framed(
                    stamped(
                        Probe(
                            node: node, method: "PUT", target: "/result/\(UUID().ucpString)",
                            headers: [("Content-Type", type)], body: body)))
            default:
                if below(2) == 0 {
                    return stamped(Probe(node: node, method: "DELETE", target: "/emergency?reason=\(urlValue())"))
                }
                return framed(
                    stamped(
                        Probe(
                            node: node, method: "PUT", target: "/emergency",
                            headers: [("Content-Type", Self.utf8("application/json"))],
                            body: Self.utf8("{\"level\": ") + fieldValue() + Self.utf8(", \"reason\": \"hp\"}"))))
            }
        }

        mutating func datastoreProbe() -> Probe {
            let node = "datastore"
            switch below(10) {
            case 0..<3:
                return commonRead(node, ["/list", "/free"])
            case 3, 4:
                var query = ["page=\(urlValue())", "size=\(urlValue())", "job_id=\(urlValue())"]
                query = query.filter { _ in below(3) != 0 }
                return stamped(
                    Probe(node: node, method: "GET", target: "/list/\(urlValue())?" + query.joined(separator: "&")))
            case 5:
                return stamped(Probe(node: node, method: "GET", target: "/data/hp/\(urlValue())"))
            case 6:
                return stamped(Probe(node: node, method: "DELETE", target: "/data/hp/\(urlValue())"))
            case 7:
                return stamped(Probe(node: node, method: "DELETE", target: "/job_data/\(urlValue())"))
            default:
                let (body, type) = multipart()
                return framed(
                    stamped(
                        Probe(
                            node: node, method: "PUT", target: "/data/hp/\(below(64))",
                            headers: [("Content-Type", type)], body: body)))
            }
        }

        mutating func executorProbe() -> Probe {
            let node = "executor"
            switch below(10) {
            case 0..<3:
                return commonRead(node, ["/capabilities", "/job/list", "/emergency"])
            case 3:
                return stamped(Probe(node: node, method: "GET", target: "/job/\(urlValue())"))
            case 4:
                let id = below(2) == 0 ? UUID().ucpString : urlValue()
                return stamped(Probe(node: node, method: "DELETE", target: "/job/\(id)"))
            case 5, 6:
                // A job that cannot be set up is answered 503, as documented.
                let id = below(4) == 0 ? urlValue() : UUID().ucpString
                var probe = Probe(
                    node: node, method: "PUT", target: "/submit/\(id)",
                    headers: [("Content-Type", Self.utf8("application/json"))], body: jobInfo())
                probe.documented5xx = [503]
                return framed(stamped(probe))
            default:
                // An emergency notice (LOW, so that no job is preempted) with a hostile stamp.
                let stamp =
                    Self.utf8("{\"clock\": {\"\(pick(ids))\": ") + fieldValue() + Self.utf8("}, \"dot\": {\"node\": \"")
                    + Self.utf8(pick(ids)) + Self.utf8("\", \"seq\": ") + fieldValue() + Self.utf8("}}")
                let body =
                    Self.utf8("{\"id\": \"\(UUID().ucpString)\", \"level\": \"LOW\", \"reason\": \"hp\",")
                    + Self.utf8(" \"origin\": \"\(pick(ids))\", \"stamp\": ") + stamp + Self.utf8("}")
                return framed(
                    stamped(
                        Probe(
                            node: node, method: "PUT", target: "/emergency",
                            headers: [("Content-Type", Self.utf8("application/json"))], body: body)))
            }
        }
    }
}
