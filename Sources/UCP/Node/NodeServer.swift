import Hummingbird
import NIOCore
import Logging

/// Builds the Hummingbird application of a node.
public enum NodeServer {
    /// How long a connection may send nothing before the server closes it: a connection between
    /// requests, or one stalled inside a request's head or body (a request the handler is still
    /// answering is not cut). Longer than the 30 s a ``NodeHTTPClient`` keeps an idle connection,
    /// so that clients close first.
    public static let idleTimeout: Duration = .seconds(60)

    /// An application serving `router` on `host`:`port` (0 picks a free port; `onServerRunning`
    /// is told the port once the server listens). Paths that do not percent-decode to UTF-8 are
    /// answered 400 before routing. A connection silent for `idleTimeout` is closed; a request
    /// head is bounded by Hummingbird's defaults (80 KiB, 1000 fields).
    public static func application<Context: RequestContext>(
        router: Router<Context>, host: String, port: Int, logger: Logger? = nil, idleTimeout: Duration = idleTimeout,
        onServerRunning: @escaping @Sendable (_ port: Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol where Context.Source == ApplicationRequestContextSource {
        let (seconds, attoseconds) = idleTimeout.components
        let idle = TimeAmount.nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        return Application(
            responder: PathEncodingResponder(next: router.buildResponder()),
            server: .http1(configuration: .init(idleTimeout: idle)),
            configuration: .init(address: .hostname(host, port: port), serverName: "CausalUCP"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) }, logger: logger)
    }
}
