import Foundation
import Logging
import NetworkFaults
import ServiceLifecycle
import Synchronization
import Testing
@testable import UCP
import ZIPFoundation

@testable import ucp

/// Real `ucp` nodes for one test: processes without a cluster key in a temporary folder (one
/// log per process there), started one by one, crashed and restarted on their ports, all ended
/// by ``withNodes(_:_:)``, which removes the folder unless the test failed.
final class ProcessNodes: Sendable {
    /// The test's folder.
    let folder: String
    /// The `ucp` built with the tests.
    let ucp: String
    private let running = Mutex<[(name: String, process: ClusterProcess, port: Int)]>([])

    private init(_ label: String) throws {
        ucp = try #require(ClusterDemoTests.ucp, "ucp is built with the tests")
        folder = NSTemporaryDirectory() + "ucp-\(label)-" + String(UUID().ucpString.prefix(8))
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    /// Runs `body` with fresh nodes; every process is stopped afterwards.
    static func withNodes<T>(_ label: String, _ body: (ProcessNodes) async throws -> T) async throws -> T {
        let nodes = try ProcessNodes(label)
        do {
            let result = try await body(nodes)
            nodes.stopAll()
            try? FileManager.default.removeItem(atPath: nodes.folder)
            return result
        } catch {
            nodes.stopAll()
            Issue.record("logs kept in \(nodes.folder)")
            throw error
        }
    }

    /// Starts `ucp <arguments>` as node `name` on a free port and waits until it listens.
    @discardableResult
    func start(_ name: String, _ arguments: [String]) throws -> Address {
        let process = try ClusterProcess(
            name: name, arguments: arguments + ["--port", "0", "--log-level", "info"], logPath: "\(folder)/\(name).log",
            executable: ucp)
        let port: Int
        do {
            port = try process.waitUntilListening(timeout: .seconds(60))
        } catch {
            process.crash()
            throw error
        }
        running.withLock { $0.append((name, process, port)) }
        return Address(host: "127.0.0.1", port: port)
    }

    /// A broker (`--rootdir <folder>/broker.d`); executors and datastores are failed only after
    /// a minute of silence, so that a loaded machine does not decide these tests.
    func broker(_ extra: [String] = []) throws -> Address {
        try start(
            "broker",
            ["broker", "--rootdir", folder + "/broker.d", "--heartbeat-interval", "0.5", "--fail-after", "60"] + extra)
    }

    /// A datastore registered with `broker`; returns once the broker counts it.
    @discardableResult
    func datastore(broker: Address, id: UUID = UUID()) async throws -> Address {
        let address = try start(
            "datastore",
            [
                "datastore", "--rootdir", folder + "/datastore.d", "--broker", "\(broker)", "--id",
                id.ucpString, "--heartbeat-interval", "0.5",
            ])
        let client = UCPClient(broker: broker)
        defer { Task { await client.shutdown() } }
        try await until("the broker counts the datastore", timeout: .seconds(30)) {
            (try? await client.http.decode(Int.self, .GET, broker, "/datastores/count")) == 1
        }
        return address
    }

    /// An executor `name` registered with `broker`.
    @discardableResult
    func executor(_ name: String, broker: Address, id: UUID = UUID(), workers: Int = 2) throws -> Address {
        try start(
            name,
            [
                "executor", "--rootdir", folder + "/\(name).d", "--broker", "\(broker)", "--executor-id",
                id.ucpString,
                "--heartbeat-interval", "0.5", "--workers", String(workers), "--time-limit", "60",
            ])
    }

    /// Node `name`'s process.
    func process(_ name: String) -> ClusterProcess? {
        running.withLock { $0.last { $0.name == name }?.process }
    }

    /// True while node `name` has not exited (its process is neither gone nor a zombie).
    func isRunning(_ name: String) -> Bool {
        guard let process = process(name),
            let stat = try? String(contentsOfFile: "/proc/\(process.pid)/stat", encoding: .utf8),
            let end = stat.range(of: ") ", options: .backwards)
        else { return false }
        return stat[end.upperBound...].first != "Z"
    }

    /// Kills node `name` with SIGKILL and starts it again on its port and data folder.
    func crashAndRestart(_ name: String) throws {
        guard let (old, port) = running.withLock({ $0.last { $0.name == name }.map { ($0.process, $0.port) } }) else {
            throw DemoError("no node \(name)")
        }
        old.crash()
        let new = try old.restarted(port: port)
        guard try new.waitUntilListening(timeout: .seconds(60)) == port else {
            new.crash()
            throw DemoError("\(name) did not come back on port \(port)")
        }
        running.withLock { $0.append((name, new, port)) }
    }

    /// Stops every process still running, the last started first.
    func stopAll() {
        for node in running.withLock({ $0 }).reversed() { node.process.stop(grace: .seconds(5)) }
    }

    /// Runs a ``ResultListener`` (results under the folder) for the length of `body`, which gets
    /// it and its address, the `result_addr` of the jobs.
    func withResultListener<T: Sendable>(_ body: (ResultListener, Address) async throws -> T) async throws -> T {
        var quiet = Logger(label: "ucp.results")
        quiet.logLevel = .warning
        return try await ResultListener.serving(folder: folder + "/results", logger: quiet, body)
    }
}

/// A job result as an executor sends one: a zip of `stdout.txt` (`text`) and `stderr.txt`,
/// wrapped as the multipart field `data`.
struct ResultUpload {
    /// The zip.
    let zip: [UInt8]
    /// The framing.
    let form = MultipartForm(filename: "result.zip")

    init(text: String, padding: Int = 0) throws {
        let archive = try Archive(accessMode: .create)
        // stdout.txt holds `text`; padding goes to a stored entry of its own.
        var generator = SystemRandomNumberGenerator()
        var padded = Data(count: padding)
        padded.withUnsafeMutableBytes { bytes in
            for index in stride(from: 0, to: bytes.count - 7, by: 8) {
                bytes.storeBytes(of: generator.next(), toByteOffset: index, as: UInt64.self)
            }
        }
        for (name, data) in [("stdout.txt", Data(text.utf8)), ("stderr.txt", Data()), ("padding.bin", padded)]
        where name != "padding.bin" || padding > 0 {
            try archive.addEntry(
                with: name, type: .file, uncompressedSize: Int64(data.count), compressionMethod: .none,
                provider: { position, size in data.subdata(in: Int(position)..<Int(position) + size) })
        }
        zip = Array(try #require(archive.data))
    }

    /// The whole body.
    var body: [UInt8] { form.head + zip + form.tail }

    /// A body whose framing is whole but whose zip is cut after `count` bytes.
    func withZipCut(at count: Int) -> [UInt8] { form.head + zip.prefix(count) + form.tail }

    /// `PUT path` as raw HTTP/1.1 with `body` and, from `clock`, a fresh stamp (the clock and the
    /// dot of the sender); `contentLength` defaults to the body's.
    func request(_ path: String, body: [UInt8], clock: NodeClock, contentLength: Int? = nil) -> [UInt8] {
        let now = clock.event()
        var head = "PUT \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: \(form.contentType)\r\n"
        head += "Content-Length: \(contentLength ?? body.count)\r\n"
        head += "\(ClockStamp.clockHeader): \(now.clockHeaderValue)\r\n"
        if let dot = now.dot { head += "\(ClockStamp.dotHeader): \(dot.description)\r\n" }
        return Array((head + "\r\n").utf8) + body
    }
}

/// The status line's code of a raw HTTP answer read from `fd` until the peer closes it or
/// `timeout` passes; nil when no status line came.
func answerStatus(_ fd: Int32, timeout: Duration) async -> Int? {
    await Task.detached {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let left = deadline - ContinuousClock.now
            let ms = Int32(max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            guard poll(&poller, 1, ms) > 0 else { break }
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { break }
            received += buffer[..<n]
            if let text = String(bytes: received, encoding: .utf8), let end = text.range(of: "\r\n") {
                let parts = text[..<end.lowerBound].split(separator: " ")
                if parts.count >= 2 { return Int(parts[1]) }
            }
        }
        return nil
    }.value
}
