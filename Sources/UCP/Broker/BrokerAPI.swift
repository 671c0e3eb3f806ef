import AsyncHTTPClient
import Causal
import Foundation
import Hummingbird
import Logging
import NIOCore

/// The broker's HTTP API, UCP's broker routes with UCP's answers, plus CausalUCP's extensions:
///
/// | route | answer |
/// | --- | --- |
/// | `PUT /executors/register` `{"hosts": [...], "executor": {...}}` | `null`; 400 "Could not ping to verify" |
/// | `PUT /executors/heartbeat/{exec_id}` body Capabilities | `null`; 404 unknown executor |
/// | `GET /executors/count` | the number of live executors |
/// | extension: `GET /datastores/count` | the number of live datastores |
/// | extension: `GET /status` | a ``BrokerStatus``: executors and their liveness, job counts, ledger counts, redeployments |
/// | `PUT /job/submit/{job_id}` `{"job_info": ..., "wait_for": [...]}` | the job id; 503 no capable executor (without `wait_for`), 404 `wait_for` names an unknown job, 409 id already submitted |
/// | `PUT /job/done/{job_id}` | `null`; 404 unknown job |
/// | `DELETE /job/{job_id}` | `null`; 404 unknown job, 502 a datastore failed to drop its data |
/// | `PUT /data/{name}` multipart field `data` | `null`; 503 no datastore with room, 413 over the limit, 502 datastore failure; `<job_id>/result` of a known job goes through the ledger (409 as for `PUT /result`) |
/// | `GET /data/{name}?job_id=` | the bytes, streamed from the datastore holding them; 404 unknown |
/// | `GET /list/data/{prefix}` | every name starting with `prefix` (a trailing `*` globs) |
/// | `PUT /result/{job_id}` multipart field `data` | `null`: forwarded to the job's `result_addr`, or stored as `<job_id>/result`; 404 unknown job, 409 (``LedgerConflict``) when another executor's result came first, 502/503 when it could not be delivered |
/// | extension: `PUT /datastores/register` `{"hosts": [...], "datastore": {"address": ..., "id": ...}}` | `null`; 400 "Could not ping to verify" |
/// | extension: `PUT /datastores/heartbeat/{id}` | `null`; 404 unknown datastore |
/// | extension: `GET /job/{job_id}` | a ``JobView``; 404 unknown job |
/// | extension: `GET /ledger/{job_id}` | a ``LedgerView``; 404 unknown job |
/// | extension: `PUT /emergency` `{"level": "HIGH", "reason": "..."}` | the ``EmergencyNotice`` issued; 422 bad body or level, 400 reason too long |
/// | extension: `DELETE /emergency?reason=` | the clearing ``EmergencyNotice`` |
/// | extension: `GET /emergency` | an ``EmergencyView`` |
/// | `GET /ping`, `GET /clock`, `GET /metrics` | as every node answers them (``NodeRoutes``) |
///
/// Bodies that are not the expected JSON are answered 422 with a detail naming the field, as
/// FastAPI does; ids that are not UUIDs and data names that could leave a datastore's folder
/// (`..`, absolute) are answered 400 before anything is stored. Errors answer
/// `{"detail": "..."}`.
public struct BrokerAPI: Sendable {
    /// The broker served.
    public let broker: Broker
    /// The node's clock, ping and metrics routes.
    public let node: NodeRoutes

    /// The largest JSON body accepted.
    static let maxJSONBytes = 4 << 20

    /// An API over `broker`.
    public init(broker: Broker) {
        self.broker = broker
        self.node = NodeRoutes(
            clock: broker.clock, metrics: broker.metrics, instanceName: broker.instanceName,
            auth: broker.configuration.auth)
    }

    /// Adds the node's common routes and middleware and the broker's routes to `router`.
    public func addRoutes(to router: Router<BrokerRequestContext>) {
        node.install(on: router)
        let broker = self.broker
        router.put("executors/register") { request, context in
            let body = try await Self.decode(ExecutorRegistration.self, request)
            try await broker.registerExecutor(body, remoteHost: context.remoteHost)
            return JSONResponse.null()
        }
        router.put("executors/heartbeat/:exec_id") { request, context in
            let id = try Self.uuid(context, "exec_id")
            let capabilities = try await Self.decode(Capabilities.self, request)
            try broker.heartbeatExecutor(id, capabilities: capabilities)
            return JSONResponse.null()
        }
        router.get("executors/count") { _, _ in
            try JSONResponse.ok(try broker.executorCount())
        }
        router.get("datastores/count") { _, _ in
            try JSONResponse.ok(try broker.datastoreCount())
        }
        router.get("status") { _, _ in
            try JSONResponse.ok(try await broker.status())
        }
        router.put("datastores/register") { request, context in
            let body = try await Self.decode(DatastoreRegistration.self, request)
            try await broker.registerDatastore(body, remoteHost: context.remoteHost)
            return JSONResponse.null()
        }
        router.put("datastores/heartbeat/:id") { _, context in
            let id = try Self.uuid(context, "id")
            try broker.heartbeatDatastore(id)
            return JSONResponse.null()
        }
        router.put("job/submit/:job_id") { request, context in
            let id = try Self.uuid(context, "job_id")
            let body = try await Self.decode(JobSubmitBody.self, request)
            let cause = try ClockStamp.of(request)?.dot
            let accepted = try await broker.submit(id, body, cause: cause, remoteHost: context.remoteHost)
            return try JSONResponse.ok(accepted.ucpString)
        }
        router.put("job/done/:job_id") { request, context in
            let id = try Self.uuid(context, "job_id")
            let cause = try ClockStamp.of(request)?.dot
            try broker.done(id, cause: cause)
            return JSONResponse.null()
        }
        router.delete("job/:job_id") { request, context in
            let id = try Self.uuid(context, "job_id")
            let cause = try ClockStamp.of(request)?.dot
            try await broker.delete(id, cause: cause)
            return JSONResponse.null()
        }
        router.get("job/:job_id") { _, context in
            let id = try Self.uuid(context, "job_id")
            return try JSONResponse.ok(JobView(try broker.job(id)))
        }
        router.put("data/**") { request, _ in
            let name = try DatastoreAPI.name(in: request.uri.path, after: "/data/")
            let cause = try ClockStamp.of(request)?.dot
            try await broker.storeData(
                name, body: request.body, contentType: request.headers[.contentType],
                contentLength: request.declaredLength, cause: cause)
            return JSONResponse.null()
        }
        router.get("data/**") { request, _ in
            let name = try DatastoreAPI.name(in: request.uri.path, after: "/data/")
            var jobID: UUID?
            if let text = request.uri.queryParameters["job_id"], !text.isEmpty {
                guard let id = UUID(uuidString: String(text)) else {
                    throw APIError(.badRequest, "job_id \"\(text)\" is not a UUID")
                }
                jobID = id
            }
            return Self.streamed(try await broker.fetchData(name, jobID: jobID), name: name)
        }
        router.get("list/data") { _, _ in
            try JSONResponse.ok(try await broker.listData(prefix: ""))
        }
        router.get("list/data/**") { request, _ in
            let prefix = try DatastoreAPI.percentDecoded(String(request.uri.path.dropFirst("/list/data/".count)))
            return try JSONResponse.ok(try await broker.listData(prefix: prefix))
        }
        router.put("result/:job_id") { request, context in
            let id = try Self.uuid(context, "job_id")
            let cause = try ClockStamp.of(request)?.dot
            try await broker.deliverResult(
                of: id, body: request.body, contentType: request.headers[.contentType],
                contentLength: request.declaredLength, cause: cause)
            return JSONResponse.null()
        }
        router.put("emergency") { request, _ in
            let body = try await Self.decode(EmergencyRequest.self, request)
            return try JSONResponse.ok(try await broker.setEmergency(level: body.level, reason: body.reason))
        }
        router.delete("emergency") { request, _ in
            let reason = request.uri.queryParameters.get("reason") ?? "cleared"
            return try JSONResponse.ok(try await broker.setEmergency(level: nil, reason: reason))
        }
        router.get("emergency") { _, _ in
            try JSONResponse.ok(EmergencyView(broker.emergencyMode))
        }
        router.get("ledger/:job_id") { _, context in
            let id = try Self.uuid(context, "job_id")
            return try JSONResponse.ok(try broker.ledger.view(of: id))
        }
    }

    /// A Hummingbird application serving this API on `host`:`port` (0 picks a free port;
    /// `onServerRunning` is told the port once the server listens).
    public func application(
        host: String, port: Int, logger: Logger? = nil,
        onServerRunning: @escaping @Sendable (_ port: Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router(context: BrokerRequestContext.self)
        addRoutes(to: router)
        return NodeServer.application(
            router: router, host: host, port: port, logger: logger, onServerRunning: onServerRunning)
    }

    // MARK: - Helpers

    /// The path parameter `name` as a UUID.
    static func uuid(_ context: BrokerRequestContext, _ name: String) throws -> UUID {
        let text = try context.parameters.require(name)
        guard let id = UUID(uuidString: text) else { throw APIError(.badRequest, "\(name) \"\(text)\" is not a UUID") }
        return id
    }

    /// The request's JSON body as `T`.
    ///
    /// - Throws: ``APIError`` 413 past ``maxJSONBytes``, 422 naming the failing field; a body cut
    ///   short is answered 400 by the node's middleware.
    static func decode<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: maxJSONBytes)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "the JSON body is larger than \(maxJSONBytes) bytes")
        }
        do {
            return try UCPJSON.decode(type, from: Data(buffer.readableBytesView))
        } catch let error as ModelDecodingError {
            throw APIError(.unprocessableContent, error.description)
        } catch {
            throw APIError(.unprocessableContent, "\(String(describing: type)): \(error)")
        }
    }

    /// A datastore's answer passed on, its body streamed.
    static func streamed(_ response: HTTPClientResponse, name: DataName) -> Response {
        let headers: HTTPFields = [
            .contentType: "application/octet-stream",
            .contentDisposition: DatastoreAPI.attachment(String(name.lastSegment)),
        ]
        let write: @Sendable (inout any ResponseBodyWriter) async throws -> Void = { writer in
            for try await chunk in response.body {
                try await writer.write(chunk)
            }
            try await writer.finish(nil)
        }
        let length = response.headers.first(name: "Content-Length").flatMap { Int($0) }
        let body = ResponseBody(contentLength: length, write)
        return Response(status: .ok, headers: headers, body: body)
    }
}

/// The broker's request context: Hummingbird's basics plus the caller's address, which UCP's
/// broker uses (a registering node's own host is pinged first; a `result_addr` host `"this"`
/// is the submitting client).
public struct BrokerRequestContext: RequestContext, RemoteAddressRequestContext {
    /// Hummingbird's storage.
    public var coreContext: CoreRequestContextStorage
    /// The caller's address.
    public let remoteAddress: SocketAddress?

    /// A context for a request arriving on `source`'s channel.
    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }

    /// The caller's IP address as text.
    public var remoteHost: String? { remoteAddress?.ipAddress }
}

/// The 409 answer for a result the ledger refused: `{"detail": "...", "accepted_executor":
/// "<uuid>", "accepted_clock": {...}, "accepted_dot": "node:seq"}`, where `accepted_clock` is
/// the broker's clock when it accepted the first result (`accepted_executor` and
/// `accepted_dot` are null when unknown).
public struct LedgerConflict: HTTPResponseError, Sendable, Hashable, Codable {
    /// Why the result was refused.
    public var detail: String
    /// The executor whose result was accepted.
    public var acceptedExecutor: String?
    /// The broker's clock when it accepted that result.
    public var acceptedClock: [String: UInt64]
    /// The dot of the request that carried that result.
    public var acceptedDot: String?

    /// The answer for a result refused because of `accepted`.
    public init(detail: String, accepted: LedgerEntry) {
        self.detail = detail
        acceptedExecutor = accepted.executor.map { $0.ucpString }
        acceptedClock = accepted.stamp.clock
        acceptedDot = accepted.dot?.description
    }

    private enum CodingKeys: String, CodingKey {
        case detail
        case acceptedExecutor = "accepted_executor"
        case acceptedClock = "accepted_clock"
        case acceptedDot = "accepted_dot"
    }

    /// Encodes every field, nulls included.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(detail, forKey: .detail)
        try c.encode(acceptedExecutor, forKey: .acceptedExecutor)
        try c.encode(acceptedClock, forKey: .acceptedClock)
        try c.encode(acceptedDot, forKey: .acceptedDot)
    }

    /// The status: 409.
    public var status: HTTPResponse.Status { .conflict }

    /// The answer: 409 with the JSON body.
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = (try? UCPJSON.encode(self)) ?? Data(#"{"detail": "conflict"}"#.utf8)
        return Response(
            status: .conflict, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}
