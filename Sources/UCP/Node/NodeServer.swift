import Hummingbird
import Logging

/// Builds the Hummingbird application of a node.
public enum NodeServer {
    /// An application serving `router` on `host`:`port` (0 picks a free port; `onServerRunning`
    /// is told the port once the server listens). Paths that do not percent-decode to UTF-8 are
    /// answered 400 before routing.
    public static func application<Context: RequestContext>(
        router: Router<Context>, host: String, port: Int, logger: Logger? = nil,
        onServerRunning: @escaping @Sendable (_ port: Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol where Context.Source == ApplicationRequestContextSource {
        Application(
            responder: PathEncodingResponder(next: router.buildResponder()),
            configuration: .init(address: .hostname(host, port: port), serverName: "CausalUCP"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) }, logger: logger)
    }
}
