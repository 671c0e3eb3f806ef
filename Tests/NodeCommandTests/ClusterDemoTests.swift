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

    @Test("ucp demo starts a broker, a datastore and two executors, runs every job right, and stops them all")
    func demo() async throws {
        let ucp = try #require(Self.ucp, "ucp is built with the tests")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ucp)
        process.arguments = ["demo", "--rounds", "1"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(text)")
        #expect(!text.contains("FAIL"), "\(text)")
        for line in ["ok   hello #1", "ok   sum 1...10", "ok   echo after hello #1", "ok   trap (fails)",
                     "ok   spin (time limit 1 s)", "violations: 0", "stopped 4 of 4 processes cleanly"] {
            #expect(text.contains(line), "missing \(line) in:\n\(text)")
        }
        // Every process the demo started has stopped: none of them still holds its pid.
        let pids = text.split(separator: "\n").compactMap { line -> Int32? in
            guard let range = line.range(of: " pid ") else { return nil }
            return Int32(line[range.upperBound...].prefix { $0.isNumber })
        }
        #expect(pids.count == 4)
        for pid in pids { #expect(kill(pid, 0) != 0, "process \(pid) outlived the demo") }
    }
}
