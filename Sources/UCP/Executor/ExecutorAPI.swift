import Causal
import Foundation
import Hummingbird
import Logging

/// The executor node's HTTP API, UCP's routes plus one extension:
///
/// | route | answer |
/// | --- | --- |
/// | `PUT /submit/{job_id}` (body JobInfo) | `null`; 422 for a malformed body (the detail names the field) or job id; 503 when the job cannot be set up (a bad name or path, a duplicate id, shutting down) |
/// | `GET /capabilities` | this machine's ``Capabilities`` |
/// | `GET /job/list` | the ids of the jobs here |
/// | `DELETE /job/{job_id}` | `null`; 404 `Job not found` |
/// | `GET /job/{job_id}` | extension: the job's ``ExecutorJobStatus`` (state, outcome, stamped events); 404 unknown |
/// | `PUT /emergency` (body ``EmergencyNotice``) | extension: applies the notice to the executor's emergency mode (``Executor/applyEmergency(_:)``); ``EmergencyApplyAnswer`` `{"applied": bool, "current": notice or null}`; 400 malformed JSON, an unknown level or a reason over ``EmergencyNotice/maxReasonLength`` characters; 413 a body over ``maxEmergencyBytes`` |
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
            try JSONResponse.ok(api.executor.jobIDs().map { Membership.id(of: $0) })
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
        } catch {
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

    /// The `job_id` path parameter as a UUID; 422 otherwise, as FastAPI answers.
    static func jobID(_ context: some RequestContext) throws -> UUID {
        let text = try context.parameters.require("job_id")
        guard let id = UUID(uuidString: text) else {
            throw APIError(.unprocessableContent, "job_id \"\(text.prefix(80))\" is not a UUID")
        }
        return id
    }
}
