import Foundation
import Testing
import UCP
import WAT

/// Prints argv, one per line, then the environment, one `KEY=value` per line.
private let printArgsAndEnvironment = #"""
    (module
      (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      ;; Prints `count` NUL-terminated strings whose pointers start at `table`, each followed by "\n".
      (func $print_all (param $table i32) (param $count i32)
        (local $i i32) (local $p i32) (local $end i32)
        (block $done
          (loop $next
            (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
            (local.set $p (i32.load (i32.add (local.get $table) (i32.shl (local.get $i) (i32.const 2)))))
            (local.set $end (local.get $p))
            (block $found (loop $scan
              (br_if $found (i32.eqz (i32.load8_u (local.get $end))))
              (local.set $end (i32.add (local.get $end) (i32.const 1)))
              (br $scan)))
            (i32.store8 (local.get $end) (i32.const 10))
            (i32.store (i32.const 0) (local.get $p))
            (i32.store (i32.const 4) (i32.add (i32.sub (local.get $end) (local.get $p)) (i32.const 1)))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $next))))
      (func (export "_start")
        (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
        (drop (call $args_get (i32.const 1024) (i32.const 4096)))
        (call $print_all (i32.const 1024) (i32.load (i32.const 16)))
        (drop (call $environ_sizes_get (i32.const 16) (i32.const 20)))
        (drop (call $environ_get (i32.const 2048) (i32.const 16384)))
        (call $print_all (i32.const 2048) (i32.load (i32.const 16)))))
    """#

/// Grows its memory by 300 pages (18.75 MiB); exits 0 when that worked and 3 when it was refused.
private let growMemory = #"""
    (module
      (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (if (i32.eq (memory.grow (i32.const 300)) (i32.const -1))
          (then (call $proc_exit (i32.const 3))))))
    """#

/// Calls `poll_oneoff` (which could sleep past any deadline) and exits with the errno it got.
private let callPoll = #"""
    (module
      (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (call $proc_exit (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))
    """#

/// Imports a function no runner provides.
private let importsHost = #"""
    (module
      (import "env" "launch_missiles" (func $launch))
      (memory (export "memory") 1)
      (func (export "_start") (call $launch)))
    """#

@Suite("What a guest gets: argv, environment, memory")
struct GuestEnvironmentTests {
    @Test("argv[0] is the module's file name, then the job's args; the environment is the job's")
    func argsAndEnvironment() async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root)
            defer { runner.shutdown() }
            let folder = try runner.prepare(jobID: "job-args")
            try write(try wat2wasm(printArgsAndEnvironment), to: folder.code.path + "/bin/probe.wasm")
            let spec = try JobSpec(
                jobID: "job-args", module: JobPath("bin/probe.wasm"), args: ["one", "two words", ""],
                env: ["LANG": "C", "MODE": "x=y"])
            let report = try await runner.run(spec)
            #expect(report.outcome == .exited(code: 0))
            let lines = try read(folder.stdoutPath).split(separator: "\n", omittingEmptySubsequences: false)
            #expect(Array(lines.prefix(4)) == ["probe.wasm", "one", "two words", ""])
            #expect(Set(lines.dropFirst(4).dropLast()) == ["LANG=C", "MODE=x=y"])
        }
    }

    @Test("a guest's memory cannot grow past the runner's cap")
    func memoryCap() async throws {
        try await withTemporaryFolder { root in
            let capped = try makeRunner(root: root) { $0.maxMemoryBytes = 16 << 20 }
            defer { capped.shutdown() }
            let folder = try capped.prepare(jobID: "job-grow")
            try write(try wat2wasm(growMemory), to: folder.code.path + "/grow.wasm")
            #expect(
                try await capped.run(JobSpec(jobID: "job-grow", module: JobPath("grow.wasm"))).outcome
                    == .exited(code: 3))

            let roomy = try makeRunner(root: root) { $0.maxMemoryBytes = 64 << 20 }
            defer { roomy.shutdown() }
            #expect(
                try await roomy.run(JobSpec(jobID: "job-grow", module: JobPath("grow.wasm"))).outcome
                    == .exited(code: 0))
        }
    }

    @Test("poll_oneoff answers ENOSYS, and a module importing anything else fails to run")
    func refusedImports() async throws {
        try await withTemporaryFolder { root in
            let runner = try makeRunner(root: root)
            defer { runner.shutdown() }
            let poll = try runner.prepare(jobID: "job-poll")
            try write(try wat2wasm(callPoll), to: poll.code.path + "/poll.wasm")
            #expect(
                try await runner.run(JobSpec(jobID: "job-poll", module: JobPath("poll.wasm"))).outcome
                    == .exited(code: 52))

            let host = try runner.prepare(jobID: "job-host")
            try write(try wat2wasm(importsHost), to: host.code.path + "/host.wasm")
            let outcome = try await runner.run(JobSpec(jobID: "job-host", module: JobPath("host.wasm"))).outcome
            guard case .failed(let message) = outcome else {
                Issue.record("expected a failure, got \(outcome)")
                return
            }
            #expect(message.contains("launch_missiles"))
        }
    }
}
