import Causal
import Foundation
import HTTPTypes
import Hummingbird

/// Proof of membership on HTTP calls between CausalUCP nodes that share a ``ClusterKey``.
///
/// UCP's state-changing calls (job done, results, registration, deletion) are unauthenticated,
/// so anyone could release or delete jobs. With a key configured, a node requires every
/// request other than `GET` and `HEAD` to carry `X-UCP-Auth: <unix seconds>:<64 hex digits>`,
/// the key's authenticator (HMAC-SHA-512-256) of
///
///     <METHOD>\n<path and query>\n<unix seconds>\n<X-UCP-Clock value>\n<X-UCP-Dot value>
///
/// made at most ``maxSkew`` from the receiver's time. A missing, malformed, stale or wrong proof
/// is answered 401 before the route runs. The body is not covered (bodies stream); the clock
/// is, so a replayed request within the window carries an old clock. Without a key, nodes
/// behave as UCP's do.
public struct ClusterAuth: Sendable, Hashable {
    /// The shared key.
    public let key: ClusterKey
    /// Largest accepted difference between the sender's and the receiver's clocks.
    public var maxSkew: Duration = .seconds(300)

    /// The header that carries the proof.
    public static let header = "X-UCP-Auth"

    /// Proofs under `key`.
    public init(key: ClusterKey) {
        self.key = key
    }

    /// The `X-UCP-Auth` value for a request.
    public func proof(method: String, path: String, clock: String?, dot: String?, at seconds: Int64) -> String {
        let tag = key.authenticator(for: Self.message(method: method, path: path, clock: clock, dot: dot, at: seconds))
        return "\(seconds):" + tag.map { String(format: "%02x", $0) }.joined()
    }

    /// Checks a request's proof; nil when it is good, otherwise why it is not.
    public func problem(
        method: String, path: String, clock: String?, dot: String?, proof: String?, now seconds: Int64
    ) -> String? {
        guard let proof else { return "\(Self.header) is missing: this cluster requires proof of membership" }
        guard let (sent, tag) = HeaderValues.proof(proof, tagByteCount: ClusterKey.authenticatorByteCount) else {
            return "\(Self.header) must be <unix seconds>:<\(2 * ClusterKey.authenticatorByteCount) hex digits>"
        }
        guard HeaderValues.isWithin(sent, of: seconds, skew: maxSkew.components.seconds.magnitude) else {
            return "\(Self.header) was made at \(sent), not within ±\(maxSkew.components.seconds) s of this node's time"
                + " \(seconds)"
        }
        guard key.verify(tag, for: Self.message(method: method, path: path, clock: clock, dot: dot, at: sent)) else {
            return "\(Self.header) does not match this cluster's key"
        }
        return nil
    }

    static func message(method: String, path: String, clock: String?, dot: String?, at seconds: Int64) -> [UInt8] {
        Array("\(method)\n\(path)\n\(seconds)\n\(clock ?? "")\n\(dot ?? "")".utf8)
    }

    /// Seconds since 1970 now.
    static func now() -> Int64 { Int64(Date().timeIntervalSince1970) }
}

extension HTTPField.Name {
    /// `X-UCP-Auth`: proof of membership (see ``ClusterAuth``).
    public static let ucpAuth = HTTPField.Name(ClusterAuth.header)!
}
