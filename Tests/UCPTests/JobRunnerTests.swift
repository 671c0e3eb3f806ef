import Foundation
import Testing
import UCP

#if canImport(Glibc)
    import Glibc
#endif

@Suite("JobRunner: the shipped jobs in WasmKit")
struct JobRunnerTests {
    @Test("every shipped job assembles")
    func assemble() throws {
        for job in ShippedJob.allCases {
            let wasm = try job.wasm()
            #expect(Array(wasm.prefix(4)) == [0x00, 0x61, 0x73, 0x6D], "\(job)")
        }
    }

    @Test("hello prints its line; argv[0] is the module's name")
    func hello() async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root)
            defer { runner.shutdown() }
            let folder = try stage(.hello, as: "job-hello", in: runner)
            let report = try await runner.run(try spec(.hello, as: "job-hello"))
            #expect(report.outcome == .exited(code: 0))
            #expect(try read(folder.stdoutPath) == "Hello, world!\n")
            #expect(try read(folder.stderrPath) == "")
            #expect(report.resultZip.hasSuffix("/job-hello/job-hello.zip"))
        }
    }

    @Test("echo copies stdin from a file in the job, and reads nothing without one")
    func echo() async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root)
            defer { runner.shutdown() }
            let text = "line one\nline two\n" + String(repeating: "0123456789", count: 10_000)
            let folder = try stage(.echo, as: "job-echo", in: runner, files: ["in/stdin.txt": text])
            let report = try await runner.run(try spec(.echo, as: "job-echo", stdin: "/in/stdin.txt"))
            #expect(report.outcome == .exited(code: 0))
            #expect(try read(folder.stdoutPath) == text)

            let empty = try stage(.echo, as: "job-echo-empty", in: runner)
            #expect(try await runner.run(try spec(.echo, as: "job-echo-empty")).outcome == .exited(code: 0))
            #expect(try read(empty.stdoutPath) == "")
        }
    }

    @Test("wordcount counts the words of a data file named by its argument")
    func wordcount() async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root)
            defer { runner.shutdown() }
            let folder = try stage(
                .wordcount, as: "job-wc", in: runner, files: ["input.txt": "the quick  brown\nfox\tjumps\n\n over"])
            let report = try await runner.run(try spec(.wordcount, as: "job-wc", args: ["/input.txt"]))
            #expect(report.outcome == .exited(code: 0))
            #expect(try read(folder.stdoutPath) == "6 /input.txt\n")

            let usage = try stage(.wordcount, as: "job-wc-usage", in: runner)
            #expect(try await runner.run(try spec(.wordcount, as: "job-wc-usage")).outcome == .exited(code: 2))
            #expect(try read(usage.stderrPath) == "usage: wordcount PATH\n")
        }
    }

    @Test(
        "sum adds integers from its arguments or from stdin",
        arguments: [
            ([String](), "10 20\n-5\n\t7", "32\n"),
            (["1", "2", "-3", "40"], "", "40\n"),
            (["-9000000000", "1"], "", "-8999999999\n"),
            ([String](), "", "0\n"),
        ])
    func sum(args: [String], input: String, expected: String) async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root)
            defer { runner.shutdown() }
            let folder = try stage(.sum, as: "job-sum", in: runner, files: ["numbers.txt": input])
            let report = try await runner.run(try spec(.sum, as: "job-sum", args: args, stdin: "numbers.txt"))
            #expect(report.outcome == .exited(code: 0))
            #expect(try read(folder.stdoutPath) == expected)
        }
    }

    @Test("sum refuses what is not an integer")
    func sumRefuses() async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root)
            defer { runner.shutdown() }
            let folder = try stage(.sum, as: "job-sum-bad", in: runner)
            let report = try await runner.run(try spec(.sum, as: "job-sum-bad", args: ["1", "two"]))
            #expect(report.outcome == .exited(code: 1))
            #expect(try read(folder.stdoutPath) == "")
            #expect(try read(folder.stderrPath) == "sum: not an integer\n")
        }
    }

    @Test("trap becomes a trapped outcome with WasmKit's message, also written to stderr")
    func trap() async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root)
            defer { runner.shutdown() }
            let folder = try stage(.trap, as: "job-trap", in: runner)
            let report = try await runner.run(try spec(.trap, as: "job-trap"))
            #expect(report.outcome == .trapped(message: "unreachable"))
            #expect(try read(folder.stderrPath) == "Encountered Webassembly Trap: unreachable\n")
            #expect(try unzip(report.resultZip)["stderr.txt"] == "Encountered Webassembly Trap: unreachable\n")
        }
    }

    @Test("spin is stopped by its time limit, and the runner keeps working", .timeLimit(.minutes(1)))
    func spin() async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root) { $0.workers = 1 }
            defer { runner.shutdown() }
            try stage(.spin, as: "job-spin", in: runner)
            let clock = ContinuousClock()
            let start = clock.now
            let report = try await runner.run(try spec(.spin, as: "job-spin", limit: .milliseconds(300)))
            let elapsed = clock.now - start
            guard case .timedOut(let limit, let ran) = report.outcome else {
                Issue.record("expected a time-out, got \(report.outcome)")
                return
            }
            #expect(limit == .milliseconds(300))
            // At least most of the limit (the budget is 1.5 × the calibrated rate), at most a few
            // times it even when the tests share two cores.
            #expect(ran >= .milliseconds(150))
            #expect(elapsed < .seconds(10))
            #expect(
                try read(report.resultZip.replacingOccurrences(of: "job-spin.zip", with: "out/stderr.txt"))
                    == "Time limit of 0.3 seconds reached\n")

            // The only worker is free again.
            let folder = try stage(.hello, as: "job-after-spin", in: runner)
            #expect(try await runner.run(try spec(.hello, as: "job-after-spin")).outcome == .exited(code: 0))
            #expect(try read(folder.stdoutPath) == "Hello, world!\n")
        }
    }

    @Test("a guest cannot open ../x, /etc/passwd or a link out of its folder")
    func sandbox() async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root)
            defer { runner.shutdown() }
            try write("secret outside the data folder\n", to: root + "/job-cat/x")
            for (index, path) in ["../x", "/etc/passwd", "link", "inside/../../x"].enumerated() {
                let id = "job-cat-\(index)"
                let folder = try stage(.cat, as: id, in: runner)
                try FileManager.default.createSymbolicLink(
                    atPath: folder.data.path + "/link", withDestinationPath: "/etc/passwd")
                try FileManager.default.createDirectory(
                    atPath: folder.data.path + "/inside", withIntermediateDirectories: true)
                let report = try await runner.run(try spec(.cat, as: id, args: [path]))
                #expect(report.outcome == .exited(code: 1), "\(path)")
                #expect(try read(folder.stdoutPath) == "", "\(path)")
                #expect(try read(folder.stderrPath).hasPrefix("cat: cannot open \(path): errno "), "\(path)")
            }
            // The same job reads a file that is inside.
            let folder = try stage(.cat, as: "job-cat-ok", in: runner, files: ["inside/ok.txt": "fine\n"])
            #expect(
                try await runner.run(try spec(.cat, as: "job-cat-ok", args: ["inside/ok.txt"])).outcome
                    == .exited(code: 0))
            #expect(try read(folder.stdoutPath) == "fine\n")
            // wordcount maps a leading / to its own folder, so /etc/passwd is data/etc/passwd: missing.
            let wc = try stage(.wordcount, as: "job-wc-passwd", in: runner)
            #expect(
                try await runner.run(try spec(.wordcount, as: "job-wc-passwd", args: ["/etc/passwd"])).outcome
                    == .exited(code: 1))
            #expect(try read(wc.stdoutPath) == "")
        }
    }

    @Test("the result zip holds stdout, stderr and zip_results, and skips links and special files")
    func resultZip() async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root)
            defer { runner.shutdown() }
            let folder = try stage(
                .hello, as: "job-zip", in: runner,
                files: ["input.txt": "in\n", "sub/a.txt": "A\n", "sub/deeper/b.txt": "B\n"])
            try FileManager.default.createSymbolicLink(
                atPath: folder.data.path + "/sub/passwd", withDestinationPath: "/etc/passwd")
            try FileManager.default.createSymbolicLink(
                atPath: folder.data.path + "/dangling", withDestinationPath: "nowhere")
            #expect(mkfifo(folder.data.path + "/sub/fifo", 0o644) == 0)

            let whole = try await runner.run(try spec(.hello, as: "job-zip"))
            #expect(whole.outcome == .exited(code: 0))
            #expect(
                try unzip(whole.resultZip) == [
                    "stdout.txt": "Hello, world!\n", "stderr.txt": "", "input.txt": "in\n", "sub/a.txt": "A\n",
                    "sub/deeper/b.txt": "B\n",
                ])
            #expect(
                Set(whole.skipped) == [
                    "data/dangling: symbolic link", "data/sub/passwd: symbolic link",
                    "data/sub/fifo: not a regular file",
                ])

            let picked = try await runner.run(
                try spec(
                    .hello, as: "job-zip",
                    zip: ["/sub": "results", "input.txt": "copy/in.txt", "/missing": "m", "/sub/passwd": "p"]))
            #expect(
                try unzip(picked.resultZip) == [
                    "stdout.txt": "Hello, world!\n", "stderr.txt": "", "results/a.txt": "A\n",
                    "results/deeper/b.txt": "B\n", "copy/in.txt": "in\n",
                ])
            #expect(picked.skipped.contains("data/missing: missing"))
            #expect(picked.skipped.contains("data/sub/passwd: symbolic link"))
        }
    }

    @Test("the result zip stays within its size limit")
    func resultSizeLimit() async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root) { $0.maxResultBytes = 1000 }
            defer { runner.shutdown() }
            try stage(
                .hello, as: "job-big", in: runner,
                files: ["a-small.txt": "small", "b-big.txt": String(repeating: "x", count: 2000)])
            let report = try await runner.run(try spec(.hello, as: "job-big"))
            let entries = try unzip(report.resultZip)
            #expect(entries["a-small.txt"] == "small")
            #expect(entries["b-big.txt"] == nil)
            #expect(report.skipped == ["data/b-big.txt: over the result size limit of 1000 bytes"])
        }
    }

    @Test("the zip stops at its entry limit and keeps the list of skipped files short")
    func entryLimit() async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root) { $0.maxResultEntries = 5 }
            defer { runner.shutdown() }
            var files: [String: String] = [:]
            for index in 0..<20 { files["f\(index < 10 ? "0" : "")\(index).txt"] = "\(index)" }
            let folder = try stage(.hello, as: "job-entries", in: runner, files: files)
            for index in 0..<150 {
                try FileManager.default.createSymbolicLink(
                    atPath: folder.data.path + "/a-link-\(index)", withDestinationPath: "/etc/passwd")
            }
            let report = try await runner.run(try spec(.hello, as: "job-entries"))
            let entries = try unzip(report.resultZip)
            #expect(entries.count == 5)  // stdout, stderr and three files
            #expect(entries["f00.txt"] == "0" && entries["f02.txt"] == "2" && entries["f03.txt"] == nil)
            #expect(report.skipped.count == 101)
            #expect(report.skipped.first == "data/a-link-0: symbolic link")
            #expect(report.skipped.last == "… and 51 more skipped")  // 50 links and the line about the limit
        }
    }

    @Test("named_results come back as (path, data name) pairs, globs included, links refused")
    func namedResults() async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root)
            defer { runner.shutdown() }
            let folder = try stage(
                .hello, as: "job-named", in: runner,
                files: ["out/summary.txt": "s", "out/part-1.csv": "1", "out/part-2.csv": "2", "out/other.txt": "o"])
            try FileManager.default.createSymbolicLink(
                atPath: folder.data.path + "/out/part-3.csv", withDestinationPath: "/etc/passwd")
            try FileManager.default.createSymbolicLink(
                atPath: folder.data.path + "/escape", withDestinationPath: "/etc/passwd")
            let report = try await runner.run(
                try spec(
                    .hello, as: "job-named",
                    named: [
                        "/out/summary.txt": "results/summary", "/out/part-*": "parts/p-*", "/escape": "x",
                        "/nothing": "y",
                    ]))
            let pairs = report.namedResults.map { "\($0.path) -> \($0.name)" }
            #expect(
                pairs == [
                    "/out/part-1.csv -> parts/p-1.csv", "/out/part-2.csv -> parts/p-2.csv",
                    "/out/summary.txt -> results/summary",
                ])
            for result in report.namedResults {
                #expect(result.hostPath.hasPrefix(folder.data.path + "/"))
            }
            #expect(report.skipped.contains("data/escape: runs through a symbolic link"))
            #expect(report.skipped.contains("data/out/part-3.csv: symbolic link"))
            #expect(report.skipped.contains("data/nothing: missing"))
        }
    }

    @Test("removing a job's folder removes links, never what they point to")
    func removeFolder() async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root + "/jobs")
            defer { runner.shutdown() }
            try write("keep me", to: root + "/outside/precious.txt")
            let folder = try stage(.hello, as: "job-remove", in: runner)
            try FileManager.default.createSymbolicLink(
                atPath: folder.data.path + "/dir-link", withDestinationPath: root + "/outside")
            try FileManager.default.createSymbolicLink(
                atPath: folder.data.path + "/file-link", withDestinationPath: root + "/outside/precious.txt")
            _ = try await runner.run(try spec(.hello, as: "job-remove"))
            try folder.remove()
            #expect(!FileManager.default.fileExists(atPath: folder.path))
            #expect(try read(root + "/outside/precious.txt") == "keep me")
        }
    }

    @Test("each distinct module is parsed once")
    func moduleCache() async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root)
            defer { runner.shutdown() }
            for index in 0..<3 {
                try stage(.hello, as: "job-cache-\(index)", in: runner)
                #expect(try await runner.run(try spec(.hello, as: "job-cache-\(index)")).outcome == .exited(code: 0))
            }
            try stage(.echo, as: "job-cache-echo", in: runner)
            _ = try await runner.run(try spec(.echo, as: "job-cache-echo"))
            #expect(runner.modules.statistics.misses == 2)
            #expect(runner.modules.statistics.hits == 2)
        }
    }

    @Test("jobs that cannot run fail with a message instead of throwing")
    func failures() async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root) { $0.maxOutputBytes = 1000 }
            defer { runner.shutdown() }
            let bad = try runner.prepare(jobID: "job-not-wasm")
            try write("not a module", to: bad.code.path + "/hello.wasm")
            guard case .failed(let message) = try await runner.run(try spec(.hello, as: "job-not-wasm")).outcome else {
                Issue.record("an invalid module must fail")
                return
            }
            #expect(message.contains("not a valid WebAssembly module"))
            #expect(try read(bad.stderrPath).hasPrefix("Failed to run: "))

            try stage(.echo, as: "job-no-stdin", in: runner)
            let missing = try await runner.run(try spec(.echo, as: "job-no-stdin", stdin: "absent.txt"))
            #expect(missing.outcome.description.hasPrefix("failed: stdin absent.txt"))

            _ = try runner.prepare(jobID: "job-no-module")
            #expect(
                try await runner.run(try spec(.hello, as: "job-no-module")).outcome.description.hasPrefix("failed:"))

            try stage(.echo, as: "job-loud", in: runner, files: ["big.txt": String(repeating: "y", count: 100_000)])
            let loud = try await runner.run(try spec(.echo, as: "job-loud", stdin: "big.txt"))
            #expect(loud.outcome == .failed(message: "output limit of 1000 bytes reached"))
        }
    }

    @Test("many jobs at once, on two workers")
    func concurrent() async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root)
            defer { runner.shutdown() }
            for index in 0..<16 {
                try stage(.sum, as: "job-many-\(index)", in: runner)
            }
            let outcomes = try await withThrowingTaskGroup(of: (Int, JobOutcome, String).self) { group in
                for index in 0..<16 {
                    group.addTask {
                        let report = try await runner.run(
                            try spec(.sum, as: "job-many-\(index)", args: ["\(index)", "100"]))
                        return (index, report.outcome, try unzip(report.resultZip)["stdout.txt"] ?? "")
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(outcomes.count == 16)
            for (index, outcome, stdout) in outcomes {
                #expect(outcome == .exited(code: 0))
                #expect(stdout == "\(index + 100)\n")
            }
        }
    }

    @Test("JobSpec from a JobInfo follows UCP's executor")
    func specFromJobInfo() throws {
        let id = UUID()
        let pair = JobInfo(
            wasmBin: DataReference(name: "\(id)/wc.wasm", path: "bin/wc.wasm"),
            stdin: DataReference(name: "\(id)/in.txt", path: "in.txt"), args: ["/in.txt"],
            zipResults: ["/out": "o"], namedResults: ["/out/r.txt": "r"])
        let fromPair = try JobSpec(jobID: id, info: pair)
        #expect(fromPair.jobID.rawValue == id.ucpString)
        #expect(fromPair.module.relative == "bin/wc.wasm")
        #expect(fromPair.stdin?.relative == "in.txt")
        #expect(fromPair.zipResults == [try JobPath("/out"): try JobPath("o")])
        let bare = try JobSpec(jobID: id, info: JobInfo(wasmBin: DataReference(name: "shared/prog.wasm")))
        #expect(bare.module.relative == "exec.wasm")
        #expect(bare.stdin == nil)
        #expect(bare.zipResults == [JobPath.root: JobPath.root])
        #expect(throws: InvalidName.self) {
            try JobSpec(jobID: id, info: JobInfo(wasmBin: DataReference(name: "p", path: "../p.wasm")))
        }
        #expect(throws: InvalidName("a/b", .notSingleSegment)) { try JobSpec(jobID: "a/b", module: JobPath("x.wasm")) }
        #expect(throws: InvalidName("..", .parentSegment)) { try JobSpec(jobID: "..", module: JobPath("x.wasm")) }
        #expect(throws: InvalidName.self) {
            try JobSpec(jobID: id, info: JobInfo(wasmBin: DataReference(name: "p"), zipResults: ["/../etc": "/"]))
        }
    }

    @Test("SHA-256 matches the standard test vectors")
    func sha256() {
        #expect(
            ContentHash(of: [UInt8]()).description == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )
        #expect(
            ContentHash(of: Array("abc".utf8)).description
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            ContentHash(of: Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)).description
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(
            ContentHash(of: Array(repeating: UInt8(ascii: "a"), count: 1_000_000)).description
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}
