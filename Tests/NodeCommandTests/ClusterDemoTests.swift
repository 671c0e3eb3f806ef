import Foundation
import Testing

@Suite("make demo: the cluster demo as the README runs it", .timeLimit(.minutes(4)))
struct ClusterDemoTests {
    /// The `ucp` built beside this test binary.
    static var ucp: String? {
        guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return nil }
        let path = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("ucp").path
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }

    @Test("ucp demo: two brokers, a datastore, three executors; every job right, an emergency, a failure; all stopped")
    func demo() async throws {
        let ucp = try #require(Self.ucp, "ucp is built with the tests")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ucp)
        // What `make demo` runs: `ucp demo`, its default rounds and all.
        process.arguments = ["demo"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        // The demo's own verdict first: its exit status and its last line.
        #expect(process.terminationStatus == 0, "\(text)")
        #expect(
            text.hasSuffix(
                "\nall right: every result, wait_for order, the emergency and the failure were as they should be\n"),
            "\(text)")
        #expect(!text.contains("FAIL"), "\(text)")
        let rounds = (1...4).flatMap { round in
            ["ok   hello #\(round)", "ok   sum 1...\(10 * round)", "ok   echo after hello #\(round) "]
        }
        for line in rounds + [
            "ok   trap (fails)", "ok   spin (time limit ", "violations: 0", "3 CRITICAL jobs done",
            "every LOW job finished", "declared it failed and redeployed its jobs", "its late result was refused (409)",
            "stopped 5 of 5 processes cleanly", " was killed",
        ] {
            #expect(text.contains(line), "missing \(line) in:\n\(text)")
        }
        // Every process the demo started has stopped: none of them still holds its pid.
        let pids = text.split(separator: "\n").compactMap { line -> Int32? in
            guard let range = line.range(of: " pid ") else { return nil }
            return Int32(line[range.upperBound...].prefix { $0.isNumber })
        }
        #expect(pids.count == 6)
        for pid in pids { #expect(kill(pid, 0) != 0, "process \(pid) outlived the demo") }
    }
}
