import Causal
import Foundation
import Hummingbird
import Logging
import NIOCore

/// The executor node's HTTP API, UCP's routes plus one extension:
///
/// | route | answer |
/// | --- | --- |
/// | `PUT /submit/{job_id}` (body JobInfo) | `null`; 422 for a malformed body (the detail names the field) or job id; 503 when the job cannot be set up (a bad name or path, a duplicate id, shutting down) |
/// | `GET /capabilities` | this machine's ``Capabilities`` |
/// | `GET /job/list` | the ids of the jobs here |
/// | `DELETE /job/{job_id}` | `null`; 404 `Job not found` |
/// | `GET /job/{job_id}` | extension: the job's ``ExecutorJobStatus`` (state, outcome, stamped events); 404 unknown |
/// | `PUT /emergency` (body ``EmergencyNotice``) | extension: applies the notice to the executor's emergency mode (``Executor/applyEmergency(_:)``); ``EmergencyApplyAnswer`` `{"applied": bool, "current": notice or null}`; 400 malformed JSON, an unknown level, a reason over ``EmergencyNotice/maxReasonLength`` characters or a stamp ahead of the executor's clock; 403 a notice whose origin is not a broker the executor knows; 413 a body over ``maxEmergencyBytes`` |
/// | `GET /emergency` | extension: ``EmergencyView`` `{"current": notice or null, "applied": [notices in applied order]}` |
/// | `GET /ping`, `GET /clock`, `GET /metrics` | as every node answers them (``NodeRoutes``) |
///
/// Errors answer `{"detail": "..."}` as FastAPI does. With a cluster key, every state-changing
/// route (`PUT /submit`, `DELETE /job`, `PUT /emergency`) needs the caller's proof (``NodeRoutes``'s
/// middleware checks it before the route runs).
public struct ExecutorAPI: Sendable {
    /// The executor served.
    public let executor: Executor
    /// The node's clock, ping and metrics routes.
    public let node: NodeRoutes

    /// Largest JobInfo body accepted.
    public static let maxBodyBytes = 4 << 20

    /// Largest emergency notice body accepted (64 KiB).
    public static let maxEmergencyBytes = 64 << 10

    /// An API over `executor`, whose common routes are `node`.
    public init(executor: Executor, node: NodeRoutes) {
        self.executor = executor
        self.node = node
    }

    /// Adds the node's common routes and middleware and the executor's routes to `router`.
    public func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        node.install(on: router)
        let api = self
        router.put("submit/:job_id") { request, context in
            let jobID = try Self.jobID(context)
            let body = try await request.body.collect(upTo: Self.maxBodyBytes)
            let info: JobInfo
            do {
                info = try UCPJSON.decode(JobInfo.self, from: Data(body.readableBytesView))
            } catch {
                throw APIError(.unprocessableContent, "\(error)")
            }
            do throws(ExecutorError) {
                try api.executor.submit(jobID: jobID, info: info)
            } catch {
                context.logger.error("refused job: \(error)")
                throw APIError(.serviceUnavailable, error.description)
            }
            return JSONResponse.null()
        }
        router.get("capabilities") { _, _ in
            let capabilities: Capabilities
            do {
                capabilities = try api.executor.capabilities()
            } catch {
                throw APIError(.internalServerError, "\(error)")
            }
            return try JSONResponse.ok(capabilities)
        }
        router.get("job/list") { _, _ in
            try JSONResponse.ok(api.executor.jobIDs().map { $0.ucpString })
        }
        router.delete("job/:job_id") { _, context in
            let jobID = try Self.jobID(context)
            do throws(ExecutorError) {
                try api.executor.delete(jobID: jobID)
            } catch {
                throw APIError(.notFound, error.description)
            }
            return JSONResponse.null()
        }
        router.get("job/:job_id") { _, context in
            let jobID = try Self.jobID(context)
            guard let status = api.executor.status(of: jobID) else { throw APIError(.notFound, "Job not found") }
            return try JSONResponse.ok(status)
        }
        router.put("emergency") { request, _ in
            let notice = try await Self.emergencyNotice(request)
            try Self.check(notice, seen: api.node.clock.now().clock)
            let (applied, current) = api.executor.applyEmergency(notice)
            return try JSONResponse.ok(EmergencyApplyAnswer(applied: applied, current: current))
        }
        router.get("emergency") { _, _ in
            try JSONResponse.ok(EmergencyView(api.executor.emergencyMode))
        }
    }

    /// The request's body as a checked ``EmergencyNotice``.
    ///
    /// - Throws: ``APIError`` 413 past ``maxEmergencyBytes``; 400 for malformed JSON, an unknown
    ///   level or a reason longer than ``EmergencyNotice/maxReasonLength``.
    static func emergencyNotice(_ request: Request) async throws -> EmergencyNotice {
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: maxEmergencyBytes)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "the emergency notice is larger than \(maxEmergencyBytes) bytes")
        }
        let notice: EmergencyNotice
        do {
            notice = try UCPJSON.decode(EmergencyNotice.self, from: Data(body.readableBytesView))
        } catch let error as ModelDecodingError where error.field == "level" {
            throw APIError(.badRequest, "unknown emergency level: \(error.problem)")
        } catch {
            throw APIError(.badRequest, "malformed emergency notice: \(error)")
        }
        guard notice.reason.count <= EmergencyNotice.maxReasonLength else {
            let limit = EmergencyNotice.maxReasonLength
            throw APIError(
                .badRequest, "the reason has \(notice.reason.count) characters, over the limit of \(limit)")
        }
        return notice
    }

    /// Refuses a notice that cannot come from this executor's broker group: its origin must be
    /// a broker the executor has heard of (an entry of its clock, learned from its broker), and
    /// its stamp may not be ahead of what the executor has seen, the request's own clock
    /// included (a stamp of 2^64-1 would otherwise beat every later notice).
    ///
    /// - Throws: ``APIError`` 403 for an unknown origin, 400 for a stamp ahead of `seen`.
    static func check(_ notice: EmergencyNotice, seen: [String: UInt64]) throws {
        guard seen[notice.origin] != nil else {
            throw APIError(
                .forbidden, "the notice comes from broker \(notice.origin.prefix(80)), which this executor does not know")
        }
        if let (id, value) = notice.stamp.clock.first(where: { $0.value > seen[$0.key] ?? 0 }) {
            throw APIError(
                .badRequest,
                "the notice's stamp is ahead of what this executor has seen: \(id.prefix(80)) at \(value), seen"
                    + " \(seen[id] ?? 0)")
        }
    }

    /// The `job_id` path parameter as a UUID; 422 otherwise, as FastAPI answers.
    static func jobID(_ context: some RequestContext) throws -> UUID {
        let text = try context.parameters.require("job_id")
        guard let id = UUID(uuidString: text) else {
            throw APIError(.unprocessableContent, "job_id \"\(text.prefix(80))\" is not a UUID")
        }
        return id
    }
}
