import NetworkFaults
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A child process for integration tests: started with `posix_spawn`, its standard input a
/// pipe the test writes lines to, its standard output and error read line by line (on a
/// thread each) into `LineLog`s. `terminate()` kills it (SIGKILL) unless it has exited, and
/// waits for it; tests call it in a `defer` so that nothing outlives them.
final class ChildProcess: Sendable {
    let pid: pid_t
    let arguments: [String]
    /// Standard output, line by line.
    let output = LineLog()
    /// Standard error, line by line.
    let errors = LineLog()
    private let input: Mutex<Int32>
    private let exit = Mutex<(status: Int32?, waiters: [@Sendable (Int32) -> Void])>((nil, []))

    /// Starts `executable` with `arguments`.
    init(_ executable: String, _ arguments: [String]) throws {
        ignoreBrokenPipes()
        self.arguments = arguments
        var stdinPipe: [Int32] = [0, 0]
        var stdoutPipe: [Int32] = [0, 0]
        var stderrPipe: [Int32] = [0, 0]
        guard pipe(&stdinPipe) == 0, pipe(&stdoutPipe) == 0, pipe(&stderrPipe) == 0 else {
            throw Socket.Failure("pipe", errno)
        }
        // Not inherited by other children started meanwhile (dup2 in the child clears the flag).
        for fd in stdinPipe + stdoutPipe + stderrPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdinPipe[0], 0)
        posix_spawn_file_actions_adddup2(&actions, stdoutPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, stderrPipe[1], 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The child starts with default signal handling, whatever the test process ignores.
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        sigaddset(&defaults, SIGINT)
        sigaddset(&defaults, SIGTERM)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid = pid_t()
        let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        for fd in [stdinPipe[0], stdoutPipe[1], stderrPipe[1]] { close(fd) }
        guard rc == 0 else {
            for fd in [stdinPipe[1], stdoutPipe[0], stderrPipe[0]] { close(fd) }
            throw Socket.Failure("posix_spawn \(executable)", rc)
        }
        self.pid = pid
        let child = pid
        input = Mutex(stdinPipe[1])
        Self.readLines(from: stdoutPipe[0], into: output)
        Self.readLines(from: stderrPipe[0], into: errors)
        Thread { [self] in
            var status: Int32 = 0
            while waitpid(child, &status, 0) < 0 && errno == EINTR {}
            let waiters = exit.withLock { state in
                state.status = status
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter(status) }
        }.start()
    }

    /// Writes `line` and a newline to the child's standard input; false once it is closed.
    @discardableResult
    func send(_ line: String) -> Bool {
        input.withLock { fd in
            guard fd >= 0 else { return false }
            return Socket.writeAll(fd, Array((line + "\n").utf8))
        }
    }

    /// Closes the child's standard input (it sees end of input).
    func closeInput() {
        input.withLock { fd in
            if fd >= 0 { close(fd) }
            fd = -1
        }
    }

    /// Sends `signal` unless the child has exited.
    func signal(_ signal: Int32) {
        exit.withLock { state in
            if state.status == nil { _ = kill(pid, signal) }
        }
    }

    /// The raw wait status once the child has exited, nil before.
    var status: Int32? { exit.withLock { $0.status } }

    /// Waits until the child exits, or until `deadline`; returns its exit code (128 + the
    /// signal for a killed child), or nil at the deadline.
    func wait(until deadline: ContinuousClock.Instant) async -> Int32? {
        let status = await withCheckedContinuation { (continuation: CheckedContinuation<Int32?, Never>) in
            let relay = Relay(continuation)
            exit.withLock { state in
                if let status = state.status {
                    relay.resume(status)
                } else {
                    state.waiters.append { relay.resume($0) }
                }
            }
            Task {
                try? await Task.sleep(until: deadline, clock: .continuous)
                relay.resume(nil)
            }
        }
        guard let status else { return nil }
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    /// Kills the child unless it has exited, closes its input and waits for it (bounded).
    func terminate() async {
        closeInput()
        signal(SIGKILL)
        _ = await wait(until: .now + .seconds(10))
    }

    private static func readLines(from fd: Int32, into log: LineLog) {
        Thread {
            var pending: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { break }
                var start = 0
                for i in 0..<n where buffer[i] == UInt8(ascii: "\n") {
                    pending.append(contentsOf: buffer[start..<i])
                    log.append(String(decoding: pending, as: UTF8.self))
                    pending.removeAll(keepingCapacity: true)
                    start = i + 1
                }
                pending.append(contentsOf: buffer[start..<n])
            }
            if !pending.isEmpty { log.append(String(decoding: pending, as: UTF8.self)) }
            close(fd)
            log.finish()
        }.start()
    }
}

/// Resumes a continuation once, whichever of several paths gets there first.
private final class Relay: Sendable {
    private let continuation: Mutex<CheckedContinuation<Int32?, Never>?>
    init(_ continuation: CheckedContinuation<Int32?, Never>) { self.continuation = Mutex(continuation) }
    func resume(_ value: Int32?) {
        let taken = continuation.withLock { stored in
            defer { stored = nil }
            return stored
        }
        taken?.resume(returning: value)
    }
}
