import Foundation
import Testing
import UCP

@Suite("JobRunner: preemption at WASI calls, and the ticker job")
struct PreemptionFlagTests {
    @Test("ticker prints a dot per tick and a summary with its checksum")
    func tickerRuns() async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root)
            defer { runner.shutdown() }
            let folder = try stage(.ticker, as: "job-ticker", in: runner)
            let report = try await runner.run(try spec(.ticker, as: "job-ticker", args: ["40", "20000"]))
            #expect(report.outcome == .exited(code: 0))
            #expect(try read(folder.stdoutPath) == ExecutorEmergencyTests.tickerOutput(ticks: 40, work: 20000))
        }
    }

    @Test("ticker refuses bad arguments with exit code 2")
    func tickerUsage() async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root)
            defer { runner.shutdown() }
            let folder = try stage(.ticker, as: "job-ticker", in: runner)
            let report = try await runner.run(try spec(.ticker, as: "job-ticker", args: ["many"]))
            #expect(report.outcome == .exited(code: 2))
            #expect(try read(folder.stderrPath).hasPrefix("usage: ticker N [WORK]\n"))
        }
    }

    @Test("a raised flag stops the guest at its next WASI call: outcome preempted, no result zip")
    func preempted() async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root)
            defer { runner.shutdown() }
            let folder = try stage(.ticker, as: "job-ticker", in: runner)
            let flag = PreemptionFlag()
            #expect(!flag.isRequested)
            async let report = runner.run(
                try spec(.ticker, as: "job-ticker", args: ["100000", "20000"], limit: .seconds(60)), preemption: flag)
            try await eventually("the ticker ticking") {
                ((try? FileManager.default.attributesOfItem(atPath: folder.stdoutPath)[.size] as? Int) ?? 0) > 0
            }
            flag.request()
            #expect(flag.isRequested)
            let stopped = try await report
            #expect(stopped.outcome == .preempted)
            #expect(stopped.outcome.description == "preempted")
            #expect(stopped.namedResults.isEmpty)
            #expect(!FileManager.default.fileExists(atPath: stopped.resultZip))
            #expect(try read(folder.stderrPath) == "")
        }
    }

    @Test("a flag raised before the run stops it at its first WASI call")
    func preemptedBeforeStart() async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root)
            defer { runner.shutdown() }
            let folder = try stage(.hello, as: "job-hello", in: runner)
            let flag = PreemptionFlag()
            flag.request()
            let report = try await runner.run(try spec(.hello, as: "job-hello"), preemption: flag)
            #expect(report.outcome == .preempted)
            #expect(try read(folder.stdoutPath) == "")
        }
    }
}
