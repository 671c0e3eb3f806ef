// The receiving side of the transport benchmarks: a process of its own (this executable started
// again with TRANSPORT_RECEIVER=node or pump), and the handle the benchmark process keeps on it.
//
// The receiver prints `port <n>` once it listens on 127.0.0.1, then answers the lines on its
// standard input: `wait <total>` with `done` once `total` messages have arrived since it
// started; `tell` with `<p50> <p99> <mallocs>`, the one-way latencies (ns) of the messages that
// arrived since the previous `tell` and its own malloc calls meanwhile (-1 when it cannot count
// them). Sorting the latencies is thus kept out of the measurement. It exits when its standard
// input ends, that is when the benchmark process does. Neither side allocates per message or
// per answer.
import CRawPump
import Causal
import Dispatch
import Synchronization

#if canImport(MallocInterposerSwift)
    import MallocInterposerSwift
#endif
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What the receiver measured for the messages of one wait.
struct ReceiverReport {
    var p50 = 0
    var p99 = 0
    /// malloc calls in the receiver process meanwhile; -1 when it cannot count them.
    var mallocs = -1
}

/// Latencies in nanoseconds, in a buffer allocated once.
final class Latencies: @unchecked Sendable {
    private let storage: UnsafeMutableBufferPointer<UInt64>
    private(set) var count = 0

    init(capacity: Int) {
        storage = .allocate(capacity: capacity)
        storage.initialize(repeating: 0)
    }

    func removeAll() { count = 0 }

    /// Keeps `value` (the newest `capacity` are kept).
    func append(_ value: Int) {
        storage[count % storage.count] = UInt64(max(value, 0))
        count += 1
    }

    /// The 50th and 99th percentile of what was appended; sorts in place.
    func percentiles() -> (p50: Int, p99: Int) {
        let n = min(count, storage.count)
        guard n > 0 else { return (0, 0) }
        var sample = UnsafeMutableBufferPointer(rebasing: storage[0..<n])
        sample.sort()
        return (Int(sample[n / 2]), Int(sample[min(n - 1, n * 99 / 100)]))
    }
}

/// Counts arrivals on the receiving loop thread, keeps each one's one-way latency in a
/// preallocated ring, and wakes the waiting thread when the awaited total is in.
final class Arrivals: @unchecked Sendable {
    let count = Atomic<Int>(0)
    let expected = Atomic<Int>(Int.max)
    let done = DispatchSemaphore(value: 0)
    /// One-way latencies in ns, by arrival number modulo their count; receiving thread only
    /// (read by the waiting thread after `wait`, which orders it).
    private let latencies: UnsafeMutableBufferPointer<UInt64>
    private let scratch: Latencies

    init(capacity: Int = 1 << 20) {
        latencies = .allocate(capacity: capacity)
        latencies.initialize(repeating: 0)
        scratch = Latencies(capacity: capacity)
    }

    /// A message stamped at `sentAt` arrived. Receiving thread.
    @inline(__always)
    func record(sentAt: UInt64) {
        let index = count.load(ordering: .relaxed)
        latencies[index & (latencies.count - 1)] = monotonicNanoseconds() &- sentAt
        // Sequentially consistent, as in `wait`: of this increment and the waiter's store of
        // `expected`, one sees the other (acquire/release alone would let both miss, and the
        // waiter sleep forever).
        let now = count.add(1, ordering: .sequentiallyConsistent).newValue
        if now == expected.load(ordering: .sequentiallyConsistent) { done.signal() }
    }

    /// Waits until `total` messages have arrived since the start. A signal meant for an
    /// earlier wait that returned without taking it only makes this one look again. Ends the
    /// process if nothing arrives for 30 s: a benchmark must not hang on a lost message.
    func wait(forTotal total: Int) {
        expected.store(total, ordering: .sequentiallyConsistent)
        var seen = count.load(ordering: .sequentiallyConsistent)
        while seen < total {
            if done.wait(timeout: .now() + .seconds(30)) == .timedOut {
                let now = count.load(ordering: .sequentiallyConsistent)
                if now == seen { fatalError("receiver: stuck at \(now) of \(total) messages") }
            }
            seen = count.load(ordering: .sequentiallyConsistent)
        }
    }

    /// The 50th and 99th percentile of the latencies of arrivals `range` (the newest
    /// `capacity` of them).
    func percentiles(_ range: Range<Int>) -> (p50: Int, p99: Int) {
        scratch.removeAll()
        for index in range.suffix(latencies.count) { scratch.append(Int(latencies[index & (latencies.count - 1)])) }
        return scratch.percentiles()
    }
}

/// A receiver process, seen from the benchmark process.
final class ReceiverProcess: @unchecked Sendable {
    enum Role: String {
        case node, pump
    }

    static let roleVariable = "TRANSPORT_RECEIVER"
    static let keyVariable = "TRANSPORT_KEY"

    /// The port the receiver listens on.
    let port: Int
    private let pid: pid_t
    private let input: Int32  // the receiver's standard input
    private let output: Int32  // its standard output
    private let line = LineBuffer()

    /// Starts a receiver and waits until it listens.
    init(role: Role, key: ClusterKey?) throws {
        var toChild: [Int32] = [0, 0]
        var fromChild: [Int32] = [0, 0]
        // Close-on-exec: the receiver gets only the ends dup2 gives it (dup2 clears the flag), so
        // it sees its input end when this process ends, and a second receiver does not hold
        // the first one's pipes open.
        guard pipe(&toChild) == 0, pipe(&fromChild) == 0 else { throw ReceiverFailure("pipe failed") }
        for fd in toChild + fromChild { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var environment = [Self.roleVariable + "=" + role.rawValue]
        if let key { environment.append(Self.keyVariable + "=" + key.hex) }
        var entry = environ
        while let variable = entry.pointee {
            let text = String(cString: variable)
            if !text.hasPrefix(Self.roleVariable + "="), !text.hasPrefix(Self.keyVariable + "=") {
                environment.append(text)
            }
            entry += 1
        }
        let path = Self.executablePath()
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var child: pid_t = 0
        let arguments = [path]
        let rc = withCStrings(arguments) { argv in
            withCStrings(environment) { envp in posix_spawn(&child, path, &actions, &attributes, argv, envp) }
        }
        close(toChild[0])
        close(fromChild[1])
        guard rc == 0 else { throw ReceiverFailure("cannot start \(path): \(String(cString: strerror(rc)))") }
        pid = child
        input = toChild[1]
        output = fromChild[0]
        guard let words = line.read(output), words.count == 2, words[0] == Word.port else {
            throw ReceiverFailure("the \(role) receiver did not start")
        }
        port = words[1]
    }

    deinit {
        close(input)  // the receiver exits at the end of its input
        close(output)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    /// Waits until the receiver has had `total` messages since it started.
    func wait(forTotal total: Int) {
        line.write(input, command: Word.wait, total)
        guard let words = line.read(output), words.count == 1, words[0] == Word.done else {
            fatalError("the receiver went away")
        }
    }

    /// What the receiver measured since the previous report.
    func report() -> ReceiverReport {
        line.write(input, command: Word.tell)
        guard let words = line.read(output), words.count == 3 else { fatalError("the receiver went away") }
        return ReceiverReport(p50: words[0], p99: words[1], mallocs: words[2])
    }

    // MARK: The receiver process

    /// The role this process was started for, if it is a receiver.
    static var roleOfThisProcess: Role? {
        getenv(roleVariable).flatMap { Role(rawValue: String(cString: $0)) }
    }

    /// Runs this process as a receiver until its input ends.
    static func run(_ role: Role) -> Never {
        let arrivals = Arrivals()
        var port = 0
        var node: CausalNode?
        switch role {
        case .node:
            guard let hex = getenv(keyVariable), let key = try? ClusterKey(hex: String(cString: hex)) else {
                fatalError("receiver: no key in \(keyVariable)")
            }
            var options = CausalNode.Options()
            options.sendWindow = window
            do {
                // Slot 0 dials; the address given for it here is never used.
                node = try CausalNode(
                    slot: 1, width: width, listen: ("127.0.0.1", 0),
                    peers: [.init(slot: 0, host: "127.0.0.1", port: 9)],
                    key: key, options: options,
                    onDeliver: { message in
                        if message.sender == 0 { arrivals.record(sentAt: message.payload.load(as: UInt64.self)) }
                    })
            } catch {
                fatalError("receiver: \(error)")
            }
            port = node!.port
        case .pump:
            var receiver: OpaquePointer?
            var bound: UInt16 = 0
            let rc = raw_pump_listen(
                { ctx, frame, _ in
                    let arrivals = Unmanaged<Arrivals>.fromOpaque(ctx!).takeUnretainedValue()
                    arrivals.record(sentAt: UnsafeRawPointer(frame! + 32 + width * 8).loadUnaligned(as: UInt64.self))
                }, Unmanaged.passRetained(arrivals).toOpaque(), &receiver, &bound)
            guard rc == 0 else { fatalError("receiver: raw_pump_listen: \(rc)") }
            port = Int(bound)
        }
        #if canImport(MallocInterposerSwift)
            MallocInterposerSwift.initialize()
            MallocInterposerSwift.hook()
            func mallocs() -> Int { MallocInterposerSwift.getStatistics().mallocCount }
        #else
            func mallocs() -> Int { -1 }
        #endif
        let line = LineBuffer()
        line.write(1, command: Word.port, port)
        var reported = 0
        // The mallocs between the end of one answer to `tell` and the next `done`: receiving the
        // messages, not the sorting of their latencies (which allocates its merge buffer).
        var base = mallocs()
        var counted = 0
        while let words = line.read(0) {
            if words.count == 2, words[0] == Word.wait {
                arrivals.wait(forTotal: words[1])
                let now = mallocs()
                counted += now - base
                base = now
                line.write(1, command: Word.done)
            } else if words.count == 1, words[0] == Word.tell {
                let now = arrivals.count.load(ordering: .acquiring)
                let (p50, p99) = arrivals.percentiles(reported..<now)
                reported = now
                line.write(1, p50, p99, base < 0 ? -1 : counted)
                counted = 0
                base = mallocs()
            } else {
                fatalError("receiver: bad command")
            }
        }
        withExtendedLifetime(node) {}
        exit(0)
    }

    /// This executable.
    private static func executablePath() -> String {
        #if canImport(Darwin)
            var size: UInt32 = 4096
            var buffer = [CChar](repeating: 0, count: Int(size))
            _NSGetExecutablePath(&buffer, &size)
            return String(cString: buffer)
        #else
            var buffer = [CChar](repeating: 0, count: 4096)
            let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
            precondition(n > 0, "cannot find this executable")
            return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        #endif
    }
}

struct ReceiverFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The words of the receiver's lines: four ASCII letters, read as one big-endian number.
enum Word {
    static let port = 0x706F_7274
    static let wait = 0x7761_6974
    static let done = 0x646F_6E65
    static let tell = 0x7465_6C6C
}

/// Lines of decimal numbers on a pipe, read and written through one buffer allocated once. A
/// command word (`Word`) is written as its four letters, and reads back as its number.
final class LineBuffer: @unchecked Sendable {
    private let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 512)
    private var start = 0
    private var end = 0
    private var words: [Int] = []

    init() { words.reserveCapacity(8) }

    /// Writes a command word and up to one number as a line.
    func write(_ fd: Int32, command: Int, _ number: Int? = nil) {
        var n = 0
        for shift in stride(from: 24, through: 0, by: -8) {
            buffer[n] = UInt8(truncatingIfNeeded: command >> shift)
            n += 1
        }
        if let number { append(number, at: &n) }
        flush(fd, n)
    }

    /// Writes three numbers as a line. (Not variadic: a variadic call allocates its array.)
    func write(_ fd: Int32, _ a: Int, _ b: Int, _ c: Int) {
        var n = 0
        append(a, at: &n)
        append(b, at: &n)
        append(c, at: &n)
        flush(fd, n)
    }

    private func append(_ number: Int, at n: inout Int) {
        if n > 0 {
            buffer[n] = 0x20
            n += 1
        }
        if number < 0 {
            buffer[n] = 0x2D
            n += 1
        }
        var digits = number.magnitude
        let first = n
        repeat {
            buffer[n] = 0x30 + UInt8(digits % 10)
            n += 1
            digits /= 10
        } while digits > 0
        buffer[first..<n].reverse()
    }

    private func flush(_ fd: Int32, _ length: Int) {
        var n = length
        buffer[n] = 0x0A
        n += 1
        var done = 0
        while done < n {
            let w = writeBytes(fd, buffer.baseAddress! + done, n - done)
            if w <= 0 {
                if w < 0 && errno == EINTR { continue }
                return
            }
            done += w
        }
    }

    /// The next line's words (a leading four-letter word as its number); nil at the end.
    func read(_ fd: Int32) -> [Int]? {
        let half = buffer.count / 2  // reads land in the upper half; writes use the lower
        while true {
            if let newline = buffer[(half + start)..<(half + end)].firstIndex(of: 0x0A) {
                parse(half + start..<newline)
                start = newline + 1 - half
                if start == end { start = 0; end = 0 }
                return words
            }
            if start > 0 {
                buffer.baseAddress!.advanced(by: half).update(
                    from: buffer.baseAddress! + half + start, count: end - start)
                end -= start
                start = 0
            }
            guard end < half else { return nil }
            let r = readBytes(fd, buffer.baseAddress! + half + end, half - end)
            if r < 0 && errno == EINTR { continue }
            guard r > 0 else { return nil }
            end += r
        }
    }

    private func parse(_ range: Range<Int>) {
        words.removeAll(keepingCapacity: true)
        var index = range.lowerBound
        while index < range.upperBound {
            while index < range.upperBound && buffer[index] == 0x20 { index += 1 }
            guard index < range.upperBound else { break }
            var value = 0
            var negative = false
            let first = buffer[index]
            if first >= 0x61 && first <= 0x7A {  // a word of four letters
                for _ in 0..<4 where index < range.upperBound {
                    value = value << 8 | Int(buffer[index])
                    index += 1
                }
            } else {
                if first == 0x2D {
                    negative = true
                    index += 1
                }
                while index < range.upperBound, buffer[index] >= 0x30, buffer[index] <= 0x39 {
                    value = value * 10 + Int(buffer[index] - 0x30)
                    index += 1
                }
            }
            words.append(negative ? -value : value)
        }
    }
}

// The system calls, under names that the methods of LineBuffer do not hide.
private func writeBytes(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int { write(fd, bytes, count) }
private func readBytes(_ fd: Int32, _ bytes: UnsafeMutableRawPointer, _ count: Int) -> Int { read(fd, bytes, count) }

/// Calls `body` with a NULL-terminated array of C strings.
private func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    var pointers = strings.map { strdup($0) }
    pointers.append(nil)
    defer { pointers.forEach { free($0) } }
    return body(pointers)
}
