import Causal
import Foundation
import Hummingbird
import Logging

/// The datastore node's HTTP API, route for route UCP's:
///
/// | route | answer |
/// | --- | --- |
/// | `PUT /data/{name}` (multipart field `data`) | `true`; 400 bad name or body, 413 over the limit, 409 clash |
/// | `GET /data/{name}` | the bytes, streamed; 404 unknown |
/// | `DELETE /data/{name}` | `null`; 404 unknown |
/// | `DELETE /job_data/{job_id}` | `null`: the job's data is gone, except `<job_id>/result` |
/// | `GET /list` | every name |
/// | `GET /list/{prefix}?job_id=&page=&size=` | a ``DataPage`` (page from 1, size 1...100, default 50) |
/// | `GET /free` | free bytes |
/// | `GET /ping`, `GET /clock`, `GET /metrics` | as every node answers them (``NodeRoutes``) |
///
/// Names may contain slashes and are taken from the raw request path, percent-decoded once, then
/// validated as ``DataName``s; nothing is written for a refused name. Errors answer
/// `{"detail": "..."}` as FastAPI does. Uploads stream to disk: memory stays bounded whatever
/// the size of the body.
public struct DatastoreAPI: Sendable {
    /// The store served.
    public let store: Datastore
    /// The node's id (in the ping answer).
    public let id: UUID
    /// The node's clock, ping, and metrics routes.
    public let node: NodeRoutes

    /// An API over `store` for the node `id`; `node` defaults to a dotted clock named `id` and
    /// fresh metrics.
    public init(store: Datastore, id: UUID = UUID(), node: NodeRoutes? = nil) {
        self.store = store
        self.id = id
        self.node =
            node
            ?? NodeRoutes(
                clock: NodeClock(nodeID: id.ucpString, role: .dotted), metrics: NodeMetrics(),
                instanceName: NodeRoutes.instanceName(role: "datastore", id: id.ucpString))
    }

    /// The node's zeroconf instance name, as UCP builds it.
    public var instanceName: String { node.instanceName }

    /// Most bytes of multipart framing, headers and other fields tolerated around the `data` field.
    static let maxFramingBytes: Int64 = 1 << 20

    /// Adds the node's common routes and middleware (``NodeRoutes``) and the datastore's routes
    /// to `router`.
    public func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        node.install(on: router)
        let api = self
        router.put("data/**") { request, _ in try await api.put(request) }
        router.get("data/**") { request, _ in try api.get(request) }
        router.delete("data/**") { request, _ in try api.delete(request) }
        router.delete("job_data/:job_id") { request, context in
            let text = try context.parameters.require("job_id")
            guard let jobID = UUID(uuidString: text) else {
                throw APIError(.badRequest, "job_id \"\(text)\" is not a UUID")
            }
            _ = api.store.deleteJobData(jobID.ucpString)
            return JSONResponse.null()
        }
        router.get("list") { _, _ in try JSONResponse.ok(api.store.list()) }
        router.get("list/**") { request, _ in try api.page(request) }
        router.get("free") { _, _ in
            let free: Int
            do throws(DatastoreError) {
                free = try api.store.freeBytes()
            } catch {
                throw APIError(error)
            }
            return try JSONResponse.ok(free)
        }
    }

    /// A Hummingbird application serving this API on `host`:`port` (0 picks a free port;
    /// `onServerRunning` is told the port once the server listens).
    public func application(
        host: String = "127.0.0.1", port: Int = 8002, logger: Logger? = nil,
        onServerRunning: @escaping @Sendable (_ port: Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router()
        addRoutes(to: router)
        return NodeServer.application(
            router: router, host: host, port: port, logger: logger, onServerRunning: onServerRunning)
    }

    // MARK: - Routes

    /// The data name in `path` after `prefix`, percent-decoded once and validated.
    static func name(in path: String, after prefix: String) throws -> DataName {
        guard path.hasPrefix(prefix) else { throw APIError(.badRequest, "path must start with \(prefix)") }
        let decoded = try percentDecoded(String(path.dropFirst(prefix.count)))
        do {
            return try DataName(decoded)
        } catch {
            throw APIError(.badRequest, "\(error)")
        }
    }

    /// `raw` with every `%XX` decoded, once (a request path as it arrives).
    ///
    /// - Throws: ``APIError`` 400 for a `%` without two hex digits after it, or bytes that are
    ///   not UTF-8.
    public static func percentDecoded(_ raw: String) throws -> String {
        guard raw.contains("%") else { return raw }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(raw.utf8.count)
        var iterator = raw.utf8.makeIterator()
        func hex(_ byte: UInt8?) -> UInt8? {
            switch byte {
            case .some(let b) where b >= 0x30 && b <= 0x39: b - 0x30
            case .some(let b) where b >= 0x41 && b <= 0x46: b - 0x41 + 10
            case .some(let b) where b >= 0x61 && b <= 0x66: b - 0x61 + 10
            default: nil
            }
        }
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = hex(iterator.next()), let low = hex(iterator.next()) else {
                throw APIError(.badRequest, "malformed percent-encoding in \"\(raw)\"")
            }
            bytes.append(high << 4 | low)
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw APIError(.badRequest, "\"\(raw)\" does not decode to UTF-8")
        }
        return text
    }

    private func put(_ request: Request) async throws -> Response {
        let name = try Self.name(in: request.uri.path, after: "/data/")
        let boundary = try MultipartDataField.boundary(of: request)
        if let length = request.declaredLength, length - Self.maxFramingBytes > store.maxItemBytes {
            throw APIError(.contentTooLarge, "\(DatastoreError.tooLarge(name.rawValue, limit: store.maxItemBytes))")
        }
        let upload: Upload
        do throws(DatastoreError) {
            upload = try store.beginUpload(name)
        } catch {
            throw APIError(error)
        }
        let reader = MultipartUpload(upload: upload, boundary: boundary, maxFramingBytes: Self.maxFramingBytes)
        do {
            for try await chunk in request.body {
                try reader.feed(chunk)
            }
            try reader.finish()
            try upload.commit()
        } catch let error as DatastoreError {
            upload.abort()
            throw APIError(error)
        } catch {
            upload.abort()
            throw error
        }
        return try JSONResponse.ok(true)
    }

    private func get(_ request: Request) throws -> Response {
        let name = try Self.name(in: request.uri.path, after: "/data/")
        let file: StoredFile
        do throws(DatastoreError) {
            file = try store.openForReading(name)
        } catch {
            throw APIError(error)
        }
        let size = Int(file.size)
        let body = ResponseBody(contentLength: size) { writer in
            defer { file.close() }
            while let chunk = try file.read(upTo: 1 << 16) {
                try await writer.write(ByteBuffer(bytes: chunk))
            }
            try await writer.finish(nil)
        }
        return Response(
            status: .ok,
            headers: [
                .contentType: "application/octet-stream",
                .contentDisposition: Self.attachment(String(name.lastSegment)),
            ], body: body)
    }

    private func delete(_ request: Request) throws -> Response {
        let name = try Self.name(in: request.uri.path, after: "/data/")
        do throws(DatastoreError) {
            try store.delete(name)
        } catch {
            throw APIError(error)
        }
        return JSONResponse.null()
    }

    private func page(_ request: Request) throws -> Response {
        let prefix = try Self.percentDecoded(String(request.uri.path.dropFirst("/list/".count)))
        let query = request.uri.queryParameters
        func integer(_ key: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
            guard let text = query[Substring(key)], !text.isEmpty else { return value }
            guard let number = Int(text), range.contains(number) else {
                throw APIError(
                    .badRequest,
                    "\(key) must be an integer in \(range.lowerBound)...\(range.upperBound), not \"\(text)\"")
            }
            return number
        }
        let page = try integer("page", default: 1, range: 1...Int(Int32.max))
        let size = try integer("size", default: 50, range: 1...100)
        var jobID = ""
        if let text = query["job_id"], !text.isEmpty {
            guard let uuid = UUID(uuidString: String(text)) else {
                throw APIError(.badRequest, "job_id \"\(text)\" is not a UUID")
            }
            jobID = uuid.ucpString
        }
        return try JSONResponse.ok(store.list(prefix: prefix, jobID: jobID, page: page, size: size))
    }

    /// `Content-Disposition` for a download named `file`, as Starlette's `FileResponse` writes it.
    static func attachment(_ file: String) -> String {
        let plain = file.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7F && $0 != "\"" && $0 != "\\" }
        if plain { return "attachment; filename=\"\(file)\"" }
        let encoded = file.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
        return "attachment; filename*=utf-8''\(encoded)"
    }
}

/// Answers 400 for a request whose path does not percent-decode to UTF-8, which the router would
/// match to no route and answer 404: such a name is malformed, not unknown.
struct PathEncodingResponder<Next: HTTPResponder>: HTTPResponder where Next.Context: RequestContext {
    let next: Next

    func respond(to request: Request, context: Next.Context) async throws -> Response {
        do {
            _ = try DatastoreAPI.percentDecoded(request.uri.path)
        } catch let error as APIError {
            return try error.response(from: request, context: context)
        }
        return try await next.respond(to: request, context: context)
    }
}

/// Streams the `data` field of a request body into a datastore upload, with at most
/// `maxFramingBytes` outside that field (framing, headers, other fields).
final class MultipartUpload {
    private let field: MultipartDataField
    private let upload: Upload
    private let maxFramingBytes: Int64

    init(upload: Upload, boundary: String, maxFramingBytes: Int64) {
        self.upload = upload
        self.maxFramingBytes = maxFramingBytes
        self.field = MultipartDataField(boundary: boundary) { buffer in
            try buffer.withUnsafeReadableBytes { bytes throws(DatastoreError) in try upload.write(bytes) }
        }
    }

    /// Parses the next chunk of the body.
    func feed(_ chunk: ByteBuffer) throws {
        try field.feed(chunk)
        if field.fed - upload.count > maxFramingBytes {
            throw APIError(.badRequest, "more than \(maxFramingBytes) bytes outside the data field")
        }
    }

    /// Checks that a complete `data` field arrived.
    func finish() throws { try field.finish() }
}
