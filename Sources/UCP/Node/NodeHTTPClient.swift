import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// Calls other CausalUCP (or UCP) nodes over HTTP, stamping every request with this node's clock
/// and merging the clock every answer carries.
///
/// One client per node; it keeps connections alive between calls. Every call has a deadline.
/// Answers with a status of 400 or more become a ``NodeCallError`` carrying the status and the
/// answer's `detail`. Thread-safe. Call ``shutdown()`` before releasing it.
public final class NodeHTTPClient: Sendable {
    /// The node's clock, stamped on every request.
    public let clock: NodeClock
    /// The underlying client.
    public let http: HTTPClient
    /// Deadline of a call unless the call says otherwise.
    public let defaultTimeout: Duration
    /// When set, every request carries proof of membership (``ClusterAuth``).
    public let auth: ClusterAuth?

    /// A client for the node whose clock is `clock`; with `auth`, requests prove membership.
    public init(clock: NodeClock, auth: ClusterAuth? = nil, defaultTimeout: Duration = .seconds(30)) {
        self.clock = clock
        self.auth = auth
        self.defaultTimeout = defaultTimeout
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(60))
        configuration.connectionPool = .init(idleTimeout: .seconds(30))
        configuration.decompression = .disabled
        self.http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// Closes the connections.
    public func shutdown() async {
        try? await http.shutdown()
    }

    /// The URL of `path` (which starts with `/`) on the node at `address`.
    public static func url(_ address: Address, _ path: String) -> String {
        "http://\(address)\(path)"
    }

    /// Sends `method path` with a JSON body (or none) and returns the answer's body, read up to
    /// `maxBytes`.
    ///
    /// - Throws: ``NodeCallError`` for a refused connection, a timeout, a status of 400 or more,
    ///   or a body over `maxBytes`.
    @discardableResult
    public func call(
        _ method: HTTPMethod, _ address: Address, _ path: String, json body: (some Encodable & Sendable)? = nil as Int?,
        timeout: Duration? = nil, maxBytes: Int = 16 << 20
    ) async throws -> NodeAnswer {
        var request = HTTPClientRequest(url: Self.url(address, path))
        request.method = method
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try UCPJSON.encode(body)))
        }
        return try await send(request, timeout: timeout, maxBytes: maxBytes)
    }

    /// Sends `method path` and decodes a JSON answer as `T`.
    ///
    /// - Throws: ``NodeCallError`` as ``call(_:_:_:json:timeout:maxBytes:)`` does, and when the
    ///   answer is not a `T`.
    public func decode<T: Decodable>(
        _ type: T.Type, _ method: HTTPMethod, _ address: Address, _ path: String,
        json body: (some Encodable & Sendable)? = nil as Int?, timeout: Duration? = nil
    ) async throws -> T {
        let answer = try await call(method, address, path, json: body, timeout: timeout)
        do {
            return try UCPJSON.decode(type, from: Data(answer.body))
        } catch {
            throw NodeCallError(url: Self.url(address, path), status: answer.status, detail: "unexpected answer: \(error)")
        }
    }

    /// Uploads `bytes` as the multipart field `data` (file name `filename`), as UCP's nodes send
    /// data and results.
    @discardableResult
    public func upload(
        _ method: HTTPMethod = .PUT, _ address: Address, _ path: String, bytes: some Collection<UInt8>,
        filename: String = "data", timeout: Duration? = nil
    ) async throws -> NodeAnswer {
        let form = MultipartForm(filename: filename)
        var buffer = ByteBuffer()
        buffer.writeBytes(form.head)
        buffer.writeBytes(bytes)
        buffer.writeBytes(form.tail)
        var request = HTTPClientRequest(url: Self.url(address, path))
        request.method = method
        request.headers.add(name: "Content-Type", value: form.contentType)
        request.body = .bytes(buffer)
        return try await send(request, timeout: timeout, maxBytes: 1 << 20)
    }

    /// Uploads the file at `filePath` as the multipart field `data`, streaming it from disk.
    @discardableResult
    public func upload(
        _ method: HTTPMethod = .PUT, _ address: Address, _ path: String, filePath: String,
        filename: String? = nil, timeout: Duration? = nil
    ) async throws -> NodeAnswer {
        let size = try FileManager.default.attributesOfItem(atPath: filePath)[.size] as? Int ?? 0
        let form = MultipartForm(filename: filename ?? (filePath as NSString).lastPathComponent)
        var request = HTTPClientRequest(url: Self.url(address, path))
        request.method = method
        request.headers.add(name: "Content-Type", value: form.contentType)
        let length = form.head.count + size + form.tail.count
        request.body = .stream(FileChunks(path: filePath, head: form.head, tail: form.tail), length: .known(Int64(length)))
        return try await send(request, timeout: timeout, maxBytes: 1 << 20)
    }

    /// Downloads `path` into the file at `filePath` (replaced), at most `maxBytes`; returns the
    /// number of bytes written. A failed download leaves no file behind.
    @discardableResult
    public func download(
        _ address: Address, _ path: String, to filePath: String, maxBytes: Int64 = 1 << 30, timeout: Duration? = nil
    ) async throws -> Int64 {
        var request = HTTPClientRequest(url: Self.url(address, path))
        request.method = .GET
        stamp(&request)
        let url = Self.url(address, path)
        let response: HTTPClientResponse
        do {
            response = try await execute(request, timeout: timeout ?? defaultTimeout)
        } catch {
            throw NodeCallError(url: url, status: nil, detail: "\(error)")
        }
        merge(response.headers)
        guard response.status.code < 400 else {
            let body = (try? await response.body.collect(upTo: 1 << 16)).map { Array($0.readableBytesView) } ?? []
            throw NodeCallError(url: url, status: Int(response.status.code), body: body)
        }
        guard FileManager.default.createFile(atPath: filePath, contents: nil),
            let handle = FileHandle(forWritingAtPath: filePath)
        else {
            throw NodeCallError(url: url, status: nil, detail: "cannot create \(filePath)")
        }
        var written: Int64 = 0
        do {
            defer { try? handle.close() }
            for try await chunk in response.body {
                written += Int64(chunk.readableBytes)
                if written > maxBytes {
                    throw NodeCallError(url: url, status: nil, detail: "answer is larger than \(maxBytes) bytes")
                }
                try handle.write(contentsOf: chunk.readableBytesView)
            }
        } catch {
            try? FileManager.default.removeItem(atPath: filePath)
            if let error = error as? NodeCallError { throw error }
            throw NodeCallError(url: url, status: nil, detail: "\(error)")
        }
        return written
    }

    /// Executes `request`, after checking the port its URL names: an address read from the
    /// network (a `result_addr`, a registration) must not reach NIO's socket address with a port
    /// past 65535, where it traps.
    func execute(_ request: HTTPClientRequest, timeout: Duration) async throws -> HTTPClientResponse {
        if let port = URLComponents(string: request.url)?.port, !(1...65535).contains(port) {
            throw NodeCallError(url: request.url, status: nil, detail: "port \(port) is not in 1...65535")
        }
        return try await http.execute(request, timeout: .init(timeout))
    }

    /// Stamps `request` with a new event of this node's clock and, with a key, its proof.
    func stamp(_ request: inout HTTPClientRequest) {
        let now = clock.event()
        request.headers.replaceOrAdd(name: ClockStamp.clockHeader, value: now.clockHeaderValue)
        if let dot = now.dot { request.headers.replaceOrAdd(name: ClockStamp.dotHeader, value: dot.description) }
        if let auth, request.method != .GET, request.method != .HEAD {
            let path = Self.target(of: request.url)
            let proof = auth.proof(
                method: request.method.rawValue, path: path, clock: now.clockHeaderValue, dot: now.dot?.description,
                at: ClusterAuth.now())
            request.headers.replaceOrAdd(name: ClusterAuth.header, value: proof)
        }
    }

    /// The request target (path and query, as sent) of an absolute `http://` URL.
    static func target(of url: String) -> String {
        guard let scheme = url.range(of: "://") else { return url }
        let rest = url[scheme.upperBound...]
        guard let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) else { return "/" }
        return rest[slash] == "?" ? "/" + rest[slash...] : String(rest[slash...])
    }

    /// Merges the clock an answer carries (a malformed one is ignored) and returns it. A dotted
    /// node learns the broker group from the nodes it calls (``NodeClock/Source/group``); a
    /// member learns it only from its federation, so the answers it gets are a peer's clock.
    @discardableResult
    func merge(_ headers: HTTPHeaders) -> [String: UInt64]? {
        guard let value = headers.first(name: ClockStamp.clockHeader),
            let clock = try? ClockStamp.clock(fromHeader: value)
        else { return nil }
        self.clock.receive(clock, from: self.clock.role == .dotted ? .group : .peer)
        return clock
    }

    /// Sends `request` (its body can be sent again: bytes, or a file read anew) and reads the
    /// answer, through ``retrying(_:)``.
    private func send(_ request: HTTPClientRequest, timeout: Duration?, maxBytes: Int) async throws -> NodeAnswer {
        let url = request.url
        let (response, bytes) = try await retrying { () async throws(NodeCallError) in
            var request = request
            stamp(&request)
            do {
                let response = try await execute(request, timeout: timeout ?? defaultTimeout)
                return (response, Array(try await response.body.collect(upTo: maxBytes).readableBytesView))
            } catch {
                throw NodeCallError(url: url, failure: error)
            }
        }
        let clock = merge(response.headers)
        let status = Int(response.status.code)
        if status >= 400 { throw NodeCallError(url: url, status: status, body: bytes) }
        return NodeAnswer(status: status, body: bytes, clock: clock)
    }

    /// Runs `attempt`, and runs it again, at most twice, after 50 and 200 ms, when it got no
    /// answer because the connection was refused or closed before one came
    /// (``NodeCallError/mayRetry``). Every call between UCP nodes is a `GET`, a `PUT` or a
    /// `DELETE` of a named thing, which the receiver can take twice. A job id submitted twice is
    /// refused (409 at a broker), so a retried submission never runs twice, though when the first
    /// attempt did get through its caller sees that refusal.
    func retrying<T>(_ attempt: () async throws(NodeCallError) -> T) async throws(NodeCallError) -> T {
        var tries = 0
        while true {
            tries += 1
            do {
                return try await attempt()
            } catch {
                guard error.mayRetry, tries < 3 else { throw error }
                try? await Task.sleep(for: .milliseconds(tries == 1 ? 50 : 200))
            }
        }
    }
}

/// An answer from another node.
public struct NodeAnswer: Sendable {
    /// Its status (below 400).
    public var status: Int
    /// Its body.
    public var body: [UInt8]
    /// The clock it carried, if any.
    public var clock: [String: UInt64]?

    /// The body as text.
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// A call to another node that failed: no answer, or an answer with a status of 400 or more.
public struct NodeCallError: Error, Hashable, CustomStringConvertible {
    /// What was called.
    public var url: String
    /// The answer's status, or nil when there was no answer.
    public var status: Int?
    /// The answer's `detail` (UCP's error field), its body, or what went wrong on the way.
    public var detail: String
    /// The answer's body (at most its first 64 KiB), empty when there was no answer; read it for
    /// fields beside `detail` (a ledger refusal's `accepted_executor`, for example).
    public var body: [UInt8]
    /// True when no answer came because the connection was refused or closed before one did (a
    /// pooled connection the peer had just closed, say): sending the same request again is
    /// worth it. False for a timeout and for every answer.
    public var mayRetry: Bool

    /// An error.
    public init(url: String, status: Int?, detail: String, body: [UInt8] = [], mayRetry: Bool = false) {
        self.url = url
        self.status = status
        self.detail = detail
        self.body = body
        self.mayRetry = mayRetry
    }

    /// The error for a call that got no answer because of `error`.
    init(url: String, failure error: any Error) {
        self.init(url: url, status: nil, detail: "\(error)", mayRetry: Self.connectionLost(error))
    }

    /// True for the errors that mean the connection was refused or closed before an answer.
    static func connectionLost(_ error: any Error) -> Bool {
        if let error = error as? HTTPClientError {
            return error == .remoteConnectionClosed || error == .connectTimeout
        }
        // NIOPosix's NIOConnectionError (refused, unreachable) and socket errors.
        return error is IOError || String(describing: type(of: error)).contains("ConnectionError")
    }

    /// An error for an answer with `status` and `body`, its detail read from `{"detail": ...}`.
    public init(url: String, status: Int, body: [UInt8]) {
        var detail = String(decoding: body.prefix(512), as: UTF8.self)
        if let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let text = object["detail"]
        {
            detail = "\(text)"
        }
        self.init(url: url, status: status, detail: detail, body: Array(body.prefix(1 << 16)))
    }

    /// `PUT http://... answered 404: unknown job` or `... failed: connection refused`.
    public var description: String {
        status.map { "\(url) answered \($0): \(detail)" } ?? "\(url) failed: \(detail)"
    }
}

/// The framing around a single multipart/form-data field named `data`.
struct MultipartForm {
    let boundary = "causalucp-\(UUID().ucpString)"
    let filename: String

    var contentType: String { "multipart/form-data; boundary=\(boundary)" }

    var head: [UInt8] {
        let safe = filename.replacingOccurrences(of: "\"", with: "_").replacingOccurrences(of: "\r", with: "_")
            .replacingOccurrences(of: "\n", with: "_")
        return Array(
            ("--\(boundary)\r\nContent-Disposition: form-data; name=\"data\"; filename=\"\(safe)\"\r\n"
                + "Content-Type: application/octet-stream\r\n\r\n").utf8)
    }

    var tail: [UInt8] { Array("\r\n--\(boundary)--\r\n".utf8) }
}

/// A file's bytes in 64 KiB chunks between a head and a tail (either may be empty), for a
/// streamed request body. Each iterator opens the file anew, so a retried request sends it again.
struct FileChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let path: String
    let head: [UInt8]
    let tail: [UInt8]

    struct AsyncIterator: AsyncIteratorProtocol {
        let path: String
        let head: [UInt8]
        let tail: [UInt8]
        var stage = 0
        var handle: FileHandle?

        mutating func next() async throws -> ByteBuffer? {
            switch stage {
            case 0:
                stage = 1
                guard let opened = FileHandle(forReadingAtPath: path) else {
                    throw NodeCallError(url: path, status: nil, detail: "cannot open \(path)")
                }
                handle = opened
                return head.isEmpty ? try await next() : ByteBuffer(bytes: head)
            case 1:
                if let data = try handle?.read(upToCount: 1 << 16), !data.isEmpty {
                    return ByteBuffer(bytes: data)
                }
                try? handle?.close()
                handle = nil
                stage = 2
                return tail.isEmpty ? nil : ByteBuffer(bytes: tail)
            default:
                return nil
            }
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(path: path, head: head, tail: tail) }
}
