import Foundation
import HTTPTypes
import Hummingbird
import NIOHTTP1

/// What every CausalUCP node serves besides its role's API, and the middleware that keeps its
/// clock and counts its requests:
///
/// | route | answer |
/// | --- | --- |
/// | `GET /ping` | the node's zeroconf instance name, as UCP answers |
/// | `GET /clock` | the node's ``ClockStamp`` as JSON, plus `"node"` and `"role"` |
/// | `GET /metrics` | Prometheus' text format |
///
/// Every request that carries `X-UCP-Clock` has it merged into the node's clock as a peer's
/// (``NodeClock/Source/peer``: known broker ids only, each moved a bounded step); with a
/// cluster key, only the clocks of requests with a proof are merged, and a dotted node takes
/// them as the group's (``NodeClock/Source/group``). A malformed clock or dot header is
/// answered 400 before the route runs. Every answer, errors included,
/// carries the node's clock (and, for dotted nodes, its latest dot). Requests without a clock
/// (plain UCP clients) are served as UCP serves them.
public struct NodeRoutes: Sendable {
    /// The node's clock.
    public let clock: NodeClock
    /// The node's metrics.
    public let metrics: NodeMetrics
    /// What `GET /ping` answers.
    public let instanceName: String
    /// When set, every request other than `GET` and `HEAD` must prove membership (``ClusterAuth``).
    public let auth: ClusterAuth?

    /// The common routes of one node; with `auth`, state-changing requests need its proof.
    public init(clock: NodeClock, metrics: NodeMetrics, instanceName: String, auth: ClusterAuth? = nil) {
        self.clock = clock
        self.metrics = metrics
        self.instanceName = instanceName
        self.auth = auth
    }

    /// UCP's zeroconf instance name for a node of `role` (`broker`, `executor`, `datastore`,
    /// `client`) with id `id`: `_<role><id>._urban-cp._tcp.local.`.
    public static func instanceName(role: String, id: String) -> String {
        "_\(role)\(id)._urban-cp._tcp.local."
    }

    /// Adds the middleware and the common routes to `router`; call it before adding the role's
    /// routes so that the middleware wraps them.
    public func install<Context: RequestContext>(on router: Router<Context>) {
        router.add(middleware: ClockMiddleware(clock: clock, counters: metrics.requestCounters, auth: auth))
        let routes = self
        router.get("ping") { _, _ in try JSONResponse.ok(routes.instanceName) }
        router.get("clock") { _, _ in try JSONResponse.ok(routes.clockView()) }
        router.get("metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: routes.metrics.exposition())))
        }
    }

    /// What `GET /clock` answers.
    public func clockView() -> ClockView {
        ClockView(node: clock.nodeID, role: clock.role, stamp: clock.now())
    }
}

/// The body of `GET /clock`: `{"node": id, "role": "member"|"dotted", "clock": {...}, "dot": ...}`.
public struct ClockView: Sendable, Hashable, Codable {
    /// The node's id.
    public var node: String
    /// Whether it owns a clock entry.
    public var role: NodeClock.Role
    /// Its clock and latest dot.
    public var stamp: ClockStamp

    private enum CodingKeys: String, CodingKey { case node, role, clock, dot }

    /// A view.
    public init(node: String, role: NodeClock.Role, stamp: ClockStamp) {
        self.node = node
        self.role = role
        self.stamp = stamp
    }

    /// Decodes the flat JSON form.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        node = try c.decode(String.self, forKey: .node)
        role = try c.decode(NodeClock.Role.self, forKey: .role)
        stamp = ClockStamp(
            clock: try c.decode([String: UInt64].self, forKey: .clock),
            dot: try c.decodeIfPresent(Dot.self, forKey: .dot))
    }

    /// Encodes the flat JSON form.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(node, forKey: .node)
        try c.encode(role, forKey: .role)
        try c.encode(stamp.clock, forKey: .clock)
        try c.encodeIfPresent(stamp.dot, forKey: .dot)
    }
}

extension HTTPField.Name {
    /// `X-UCP-Clock`: the sender's vector clock as a JSON object.
    public static let ucpClock = HTTPField.Name(ClockStamp.clockHeader)!
    /// `X-UCP-Dot`: the sender's event dot, `node:seq`.
    public static let ucpDot = HTTPField.Name(ClockStamp.dotHeader)!
}

extension Request {
    /// The request's `Content-Length`, read over the header's whole range and clamped to
    /// `Int64`: a length past `Int64.max` still counts as one, larger than any limit.
    var declaredLength: Int64? {
        headers[.contentLength].flatMap { UInt64($0) }.map { Int64(clamping: $0) }
    }
}

extension ClockStamp {
    /// The stamp a request carries, or nil when it carries no clock (a plain UCP client).
    ///
    /// - Throws: ``APIError`` 400 for a malformed header.
    public static func of(_ request: Request) throws -> ClockStamp? {
        guard let value = request.headers[.ucpClock] else {
            if request.headers[.ucpDot] != nil {
                throw APIError(.badRequest, "\(dotHeader) needs an \(clockHeader) beside it")
            }
            return nil
        }
        let clock: [String: UInt64]
        do throws(ClockHeaderError) {
            clock = try Self.clock(fromHeader: value)
        } catch {
            throw APIError(.badRequest, error.description)
        }
        var dot: Dot?
        if let text = request.headers[.ucpDot] {
            guard let parsed = Dot(header: text) else {
                throw APIError(.badRequest, "\(dotHeader) must be <node>:<seq>, not \(text.prefix(80))")
            }
            dot = parsed
        }
        return ClockStamp(clock: clock, dot: dot)
    }
}

/// Checks proofs of membership, merges each request's clock into the node's (with a cluster
/// key, only the clocks of proven requests), stamps every answer with the node's clock and
/// counts answers by status.
struct ClockMiddleware<Context: RequestContext>: RouterMiddleware {
    let clock: NodeClock
    let counters: RequestCounters
    let auth: ClusterAuth?

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        var response: Response
        do {
            let reading = request.method == .get || request.method == .head
            if let auth, !reading,
                let problem = auth.problem(
                    method: request.method.rawValue, path: request.uri.description,
                    clock: request.headers[.ucpClock], dot: request.headers[.ucpDot],
                    proof: request.headers[.ucpAuth], now: ClusterAuth.now())
            {
                context.logger.warning("refused: \(problem)", metadata: ["path": "\(request.uri.path)"])
                throw APIError(.unauthorized, problem)
            }
            // With a key, only a request whose proof was checked changes the clock: a reading
            // request is not asked for one, so its clock is parsed (and refused when malformed)
            // but not merged.
            // A dotted node learns the broker group from a proven request too (the federation's
            // brokers are keyed): a notice a peer broker raised reaches it before its next
            // heartbeat tells it of that broker. A member learns it only from its federation.
            if let stamp = try ClockStamp.of(request), auth == nil || !reading {
                let proven = auth != nil
                clock.receive(stamp.clock, from: proven && clock.role == .dotted ? .group : .peer)
            }
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        } catch let error as HTTPParserError {
            // The client broke its own request (a body shorter than its Content-Length, cut off):
            // its error, not the node's.
            response = try APIError(.badRequest, "the request was cut short: \(error)").response(
                from: request, context: context)
        } catch {
            // Not an HTTP error: Hummingbird would answer 500; answer it here so it is stamped.
            context.logger.error("request failed: \(error)", metadata: ["path": "\(request.uri.path)"])
            response = try APIError(.internalServerError, "\(error)").response(from: request, context: context)
        }
        let now = clock.now()
        response.headers[.ucpClock] = now.clockHeaderValue
        if let dot = now.dot { response.headers[.ucpDot] = dot.description }
        counters.record(method: request.method.rawValue, status: response.status.code)
        return response
    }
}
