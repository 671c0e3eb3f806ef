import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A node of the demo cluster: this executable started again with a role's arguments, its
/// standard output read until the node prints the line that says where it listens, its standard
/// error appended to a log file. ``stop()`` sends SIGTERM, waits (bounded) and then SIGKILLs;
/// ``crash()`` SIGKILLs at once; ``pause()`` and ``resume()`` send SIGSTOP and SIGCONT.
final class ClusterProcess: Sendable {
    /// The child's process id.
    let pid: pid_t
    /// What the demo calls it (`broker`, `executor-1`, ...).
    let name: String
    /// Where its standard error goes.
    let logPath: String
    /// Its arguments (the executable's path excluded).
    let arguments: [String]
    /// The executable it runs.
    let executable: String
    private let stdoutFD: Int32
    private let exited = Mutex<Int32?>(nil)

    /// The path of this executable.
    static var executablePath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// Starts `executable arguments...` (this `ucp` by default), its standard error appended to
    /// `logPath`.
    init(name: String, arguments: [String], logPath: String, executable: String = ClusterProcess.executablePath) throws {
        self.name = name
        self.logPath = logPath
        self.arguments = arguments
        self.executable = executable
        var out: [Int32] = [0, 0]
        guard pipe(&out) == 0 else { throw DemoError("pipe: \(String(cString: strerror(errno)))") }
        _ = fcntl(out[0], F_SETFD, FD_CLOEXEC)
        let logFD = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard logFD >= 0 else { throw DemoError("cannot open \(logPath): \(String(cString: strerror(errno)))") }
        defer { close(logFD) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, out[1], 1)
        posix_spawn_file_actions_adddup2(&actions, logFD, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGINT, SIGTERM] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid = pid_t()
        let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        close(out[1])
        guard rc == 0 else {
            close(out[0])
            throw DemoError("cannot start \(name): \(String(cString: strerror(rc)))")
        }
        self.pid = pid
        self.stdoutFD = out[0]
    }

    /// Reads standard output until a line `listening on HOST:PORT` and returns the port.
    ///
    /// - Throws: ``DemoError`` when the child exits or prints nothing of the kind within `timeout`.
    func waitUntilListening(timeout: Duration) throws -> Int {
        let deadline = ContinuousClock.now + timeout
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw DemoError("\(name) did not start within \(timeout); see \(logPath)") }
            var poll = pollfd(fd: stdoutFD, events: Int16(POLLIN), revents: 0)
            let ms = Int32(max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            let ready = Glibc.poll(&poll, 1, ms)
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { continue }
            let n = read(stdoutFD, &byte, 1)
            guard n > 0 else { throw DemoError("\(name) exited while starting; see \(logPath)") }
            if byte != UInt8(ascii: "\n") {
                line.append(byte)
                continue
            }
            let text = String(decoding: line, as: UTF8.self)
            line.removeAll()
            if let range = text.range(of: "listening on "), let colon = text[range.upperBound...].lastIndex(of: ":"),
                let port = Int(text[text.index(after: colon)...].prefix { $0.isNumber })
            {
                return port
            }
        }
    }

    /// Sends `signal` (SIGKILL for a crash, SIGTERM for a clean stop).
    func send(_ signal: Int32) {
        if exited.withLock({ $0 }) == nil { kill(pid, signal) }
    }

    /// Kills the child with SIGKILL (a crash: nothing is flushed or said goodbye) and reaps it.
    @discardableResult
    func crash() -> Int32 {
        if let status = exited.withLock({ $0 }) { return status }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        close(stdoutFD)
        exited.withLock { $0 = status }
        return status
    }

    /// Stops the child with SIGSTOP: it stays alive but silent until ``resume()``.
    func pause() { send(SIGSTOP) }

    /// Lets a paused child go on (SIGCONT).
    func resume() { send(SIGCONT) }

    /// The same command started again (after a crash or a stop), on `port` instead of the port
    /// it was given, its standard error appended to the same log.
    func restarted(port: Int) throws -> ClusterProcess {
        var arguments = self.arguments
        if let index = arguments.firstIndex(of: "--port"), index + 1 < arguments.count {
            arguments[index + 1] = String(port)
        } else {
            arguments += ["--port", String(port)]
        }
        return try ClusterProcess(name: name, arguments: arguments, logPath: logPath, executable: executable)
    }

    /// Stops the child: SIGTERM, then SIGKILL if it has not exited after `grace`; reaps it.
    @discardableResult
    func stop(grace: Duration = .seconds(10)) -> Int32 {
        if let status = exited.withLock({ $0 }) { return status }
        kill(pid, SIGCONT)  // a paused child cannot handle SIGTERM
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + grace
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid || (r < 0 && errno != EINTR) { break }
            if ContinuousClock.now > deadline {
                kill(pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                break
            }
            usleep(10_000)  // polling a child's exit: waitpid has no timeout
        }
        close(stdoutFD)
        exited.withLock { $0 = status }
        return status
    }
}

/// A demo step that failed, with what to look at.
struct DemoError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
