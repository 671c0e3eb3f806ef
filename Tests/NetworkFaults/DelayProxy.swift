import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A TCP proxy on 127.0.0.1 for tests: listens on a free port, forwards each connection to
/// `127.0.0.1:target`, and holds every chunk it forwards for a random 0...`maxDelay` before
/// writing it on. The order within a direction is kept (a chunk never overtakes the one
/// before it), but traffic on different links, and the two directions of one link, are
/// delayed independently, so they get reordered relative to each other.
///
/// `cut()` drops every current connection at once, losing the chunks in flight, as a
/// network failure would; later connections go through again. The target may be set after
/// the proxy has started (a process that picks its own port), and changed (a restart).
///
/// Threads: one accepting, two per direction of each connection (reading, writing).
public final class DelayProxy: @unchecked Sendable {
    /// The port the proxy listens on.
    public let port: Int
    private let maxDelay: Duration
    private let listener: Int32
    private let wake: (read: Int32, write: Int32)
    private let state = Mutex(State())
    private let acceptDone = DispatchSemaphore(value: 0)

    private struct State {
        var target: Int?
        var links: [ObjectIdentifier: Link] = [:]
        var closed = false
        var accepted = 0
        var cuts = 0
        var partitioned = false
    }

    /// Starts a proxy to `127.0.0.1:target` (nil: set it with `setTarget` before anyone connects;
    /// until then connections are dropped).
    public init(target: Int? = nil, maxDelay: Duration = .milliseconds(3)) throws {
        ignoreBrokenPipes()
        self.maxDelay = maxDelay
        listener = try Socket.listen()
        port = try Socket.localPort(listener)
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw Socket.Failure("pipe", errno) }
        wake = (fds[0], fds[1])
        state.withLock { $0.target = target }
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    deinit {
        close()
    }

    /// Sets the port new connections are forwarded to.
    public func setTarget(_ port: Int) {
        state.withLock { $0.target = port }
    }

    /// Connections accepted so far.
    public var accepted: Int { state.withLock { $0.accepted } }
    /// Connections open now.
    public var open: Int { state.withLock { $0.links.count } }

    /// Drops every current connection: both sides see it end, data in flight is lost.
    public func cut() {
        let links = state.withLock { state in
            state.cuts += 1
            return Array(state.links.values)
        }
        for link in links { link.cut() }
    }

    /// Cuts the link until ``heal()``: every current connection is dropped and new ones are
    /// closed as soon as they are accepted, as a network partition would.
    public func partition() {
        state.withLock { $0.partitioned = true }
        cut()
    }

    /// Lets connections through again after ``partition()``.
    public func heal() {
        state.withLock { $0.partitioned = false }
    }

    /// Stops accepting and drops every connection. Waits for the accepting thread.
    public func close() {
        let first = state.withLock { state in
            defer { state.closed = true }
            return !state.closed
        }
        guard first else { return }
        var byte: UInt8 = 1
        _ = Glibc.write(wake.write, &byte, 1)
        acceptDone.wait()
        cut()
        Glibc.close(listener)
        Glibc.close(wake.read)
        Glibc.close(wake.write)
    }

    private func acceptLoop() {
        defer { acceptDone.signal() }
        while true {
            var fds = [
                pollfd(fd: listener, events: Int16(POLLIN), revents: 0),
                pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0),
            ]
            let n = poll(&fds, 2, -1)
            if n < 0 && errno == EINTR { continue }
            if n < 0 || fds[1].revents != 0 { return }
            let client = accept(listener, nil, nil)
            guard client >= 0 else { continue }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            let target = state.withLock { state -> Int? in
                state.accepted += 1
                return state.closed || state.partitioned ? nil : state.target
            }
            guard let target, let upstream = try? Socket.connect(port: target) else {
                Glibc.close(client)
                continue
            }
            let link = Link(client: client, upstream: upstream, maxDelay: maxDelay) { [weak self] link in
                self?.state.withLock { _ = $0.links.removeValue(forKey: ObjectIdentifier(link)) }
            }
            let closed = state.withLock { state in
                if !state.closed { state.links[ObjectIdentifier(link)] = link }
                return state.closed
            }
            link.start()
            if closed { link.cut() }
        }
    }
}

/// One proxied connection: two sockets, a delayed pump each way.
private final class Link: @unchecked Sendable {
    let client: Int32
    let upstream: Int32
    private let maxDelay: Duration
    private let onClose: (Link) -> Void
    private let lock = NSCondition()
    private var cutDown = false
    private var threadsLeft = 4

    init(client: Int32, upstream: Int32, maxDelay: Duration, onClose: @escaping (Link) -> Void) {
        self.client = client
        self.upstream = upstream
        self.maxDelay = maxDelay
        self.onClose = onClose
    }

    func start() {
        for (from, to) in [(client, upstream), (upstream, client)] {
            let queue = ChunkQueue()
            Thread { [self] in
                read(from: from, into: queue)
                threadDone()
            }.start()
            Thread { [self] in
                write(from: queue, to: to, source: from)
                threadDone()
            }.start()
        }
    }

    var isCut: Bool {
        lock.lock()
        defer { lock.unlock() }
        return cutDown
    }

    /// Ends both sockets now; the threads notice and finish. Safe to call repeatedly.
    func cut() {
        // Under the lock: the sockets are closed (and their numbers reused) under it too.
        lock.lock()
        defer { lock.unlock() }
        guard !cutDown && threadsLeft > 0 else { return }
        cutDown = true
        // RST rather than FIN: the peers see a broken connection, as after a network failure.
        for fd in [client, upstream] {
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            shutdown(fd, Int32(SHUT_RDWR))
        }
    }

    private func read(from fd: Int32, into queue: ChunkQueue) {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        let maxMicroseconds = Int(
            maxDelay.components.seconds * 1_000_000 + maxDelay.components.attoseconds / 1_000_000_000_000)
        var last = ContinuousClock.now
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            let delay = Duration.microseconds(maxMicroseconds > 0 ? Int.random(in: 0...maxMicroseconds) : 0)
            let due = max(ContinuousClock.now + delay, last)
            last = due
            queue.push(Array(buffer[0..<n]), due: due)
        }
        queue.finish()
    }

    private func write(from queue: ChunkQueue, to fd: Int32, source: Int32) {
        while let (chunk, due) = queue.pop() {
            let wait = due - ContinuousClock.now
            if wait > .zero {
                Thread.sleep(
                    forTimeInterval: Double(wait.components.attoseconds) * 1e-18 + Double(wait.components.seconds))
            }
            if isCut { continue }  // dropped with the connection
            var sent = 0
            while sent < chunk.count {
                let n = chunk.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    cut()
                    break
                }
                sent += n
            }
        }
        // The other side finished sending: pass the end on, unless the link is cut anyway.
        if !isCut { shutdown(fd, Int32(SHUT_WR)) }
    }

    private func threadDone() {
        lock.lock()
        threadsLeft -= 1
        let last = threadsLeft == 0
        if last {
            Glibc.close(client)
            Glibc.close(upstream)
        }
        lock.unlock()
        if last { onClose(self) }
    }
}

/// Chunks waiting for their time, in order; `pop` blocks until one is there or the end.
private final class ChunkQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var chunks: [([UInt8], ContinuousClock.Instant)] = []
    private var head = 0
    private var finished = false

    func push(_ chunk: [UInt8], due: ContinuousClock.Instant) {
        condition.lock()
        chunks.append((chunk, due))
        condition.signal()
        condition.unlock()
    }

    func finish() {
        condition.lock()
        finished = true
        condition.signal()
        condition.unlock()
    }

    func pop() -> ([UInt8], ContinuousClock.Instant)? {
        condition.lock()
        defer { condition.unlock() }
        while head == chunks.count && !finished { condition.wait() }
        guard head < chunks.count else { return nil }
        let next = chunks[head]
        head += 1
        if head > 1024 {
            chunks.removeFirst(head)
            head = 0
        }
        return next
    }
}

/// Blocking POSIX socket calls for test helpers, on 127.0.0.1 only.
public enum Socket {
    /// A failed socket call.
    public struct Failure: Error, CustomStringConvertible {
        let call: String
        let code: Int32
        public init(_ call: String, _ code: Int32) {
            self.call = call
            self.code = code
        }
        public var description: String { "\(call): \(String(cString: strerror(code)))" }
    }

    public static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        return address
    }

    /// A listening socket on 127.0.0.1, port 0.
    public static func listen() throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket", errno) }
        var address = loopback(port: 0)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0, Glibc.listen(fd, 128) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw Failure("bind/listen", code)
        }
        return fd
    }

    /// A connected socket to 127.0.0.1:`port`.
    public static func connect(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket", errno) }
        var address = loopback(port: port)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else {
            let code = errno
            Glibc.close(fd)
            throw Failure("connect", code)
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    public static func localPort(_ fd: Int32) throws -> Int {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0 else { throw Failure("getsockname", errno) }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Writes all of `bytes`; false when the connection broke.
    @discardableResult
    public static func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL))
            }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            sent += n
        }
        return true
    }

    /// Writes all of `bytes` to a pipe or file; false when the reader has gone.
    @discardableResult
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            written += n
        }
        return true
    }

    /// Waits up to `timeout` for the peer to close the connection (reading and discarding
    /// what it sends); true when it did.
    public static func waitForClose(_ fd: Int32, timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { return false }
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
            let ms = Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            let n = poll(&fds, 1, ms)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { continue }
            let got = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if got < 0 && errno == EINTR { continue }
            if got <= 0 { return true }
        }
    }
}

extension Socket {
    /// `waitForClose` on a thread of its own, so that the calling task does not block.
    public static func closed(_ fd: Int32, timeout: Duration) async -> Bool {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: waitForClose(fd, timeout: timeout)) }.start()
        }
    }
}

/// Writes to a closed pipe or socket must fail with EPIPE, not end the test process.
public func ignoreBrokenPipes() {
    _ = brokenPipesIgnored
}

private let brokenPipesIgnored: Void = {
    signal(SIGPIPE, SIG_IGN)
}()
