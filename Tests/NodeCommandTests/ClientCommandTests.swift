import Foundation
import Testing

@testable import ucp

@Suite("ucp client against a cluster of ucp processes", .timeLimit(.minutes(4)))
struct ClientCommandTests {
    /// Runs `ucp arguments...` and returns its status, standard output and standard error.
    static func run(_ ucp: String, _ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
        let errPath = NSTemporaryDirectory() + "ucp-client-err-" + UUID().uuidString
        FileManager.default.createFile(atPath: errPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: errPath) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ucp)
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle(forWritingAtPath: errPath)
        try process.run()
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let errors = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        return (process.terminationStatus, output, errors)
    }

    @Test("put, list, get and submit through the broker, with the cluster key; without it, refused")
    func client() async throws {
        let ucp = try #require(ClusterDemoTests.ucp, "ucp is built with the tests")
        let folder = NSTemporaryDirectory() + "ucp-client-test-" + UUID().ucpString.prefix(8)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let cluster = try await LocalCluster.start(
            in: folder, executors: 1, timeLimit: 5, heartbeatSeconds: 1, executable: ucp, log: { _ in })
        defer { cluster.stop() }
        let input = folder + "/in.txt"
        try Data("alpha beta gamma\n".utf8).write(to: URL(fileURLWithPath: input))
        let connection = ["--broker", "\(cluster.broker)", "--key-file", folder + "/cluster.key"]

        let put = try Self.run(ucp, ["client", "put"] + connection + ["notes/in.txt", input])
        #expect(put.status == 0, "\(put.err)")
        let list = try Self.run(ucp, ["client", "list"] + connection + ["notes/*"])
        #expect(list.out == "notes/in.txt\n", "\(list.err)")
        let get = try Self.run(ucp, ["client", "get"] + connection + ["notes/in.txt"])
        #expect(get.out == "alpha beta gamma\n", "\(get.err)")

        let words = try Self.run(
            ucp,
            ["client", "submit"] + connection + [
                "--job", "wordcount", "--arg", "/in.txt", "--data", "/in.txt=\(input)",
            ])
        #expect(words.status == 0, "\(words.err)")
        #expect(words.out == "3 /in.txt\n", "\(words.err)")
        let sum = try Self.run(ucp, ["client", "submit"] + connection + ["--job", "sum", "--arg", "2", "--arg", "40"])
        #expect(sum.out == "42\n", "\(sum.err)")
        let trap = try Self.run(ucp, ["client", "submit"] + connection + ["--job", "trap"])
        #expect(trap.err.contains("unreachable"), "\(trap.err)")

        let stranger = try Self.run(ucp, ["client", "put", "--broker", "\(cluster.broker)", "x", input])
        #expect(stranger.status != 0)
        #expect(stranger.err.contains("401"), "\(stranger.err)")

        let raise = try Self.run(ucp, ["client", "emergency", "raise"] + connection + ["HIGH", "--reason", "flood"])
        #expect(raise.status == 0 && raise.out.hasPrefix("HIGH raised by broker"), "\(raise.out) \(raise.err)")
        let bad = try Self.run(ucp, ["client", "emergency", "raise"] + connection + ["SEVERE"])
        #expect(bad.status != 0 && bad.err.contains("SEVERE"), "\(bad.err)")
        let clear = try Self.run(ucp, ["client", "emergency", "clear"] + connection + ["--reason", "receded"])
        #expect(clear.status == 0 && clear.out.hasPrefix("cleared by broker"), "\(clear.out) \(clear.err)")
        let show = try Self.run(ucp, ["client", "emergency", "show"] + connection)
        let lines = show.out.split(separator: "\n")
        #expect(lines.count == 3 && lines[0].hasPrefix("cleared") && lines[1].contains("HIGH raised"), "\(show.out)")
    }
}
