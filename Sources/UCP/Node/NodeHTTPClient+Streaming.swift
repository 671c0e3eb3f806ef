import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

extension NodeHTTPClient {
    /// Sends `request` stamped with this node's clock and returns the answer with its body still
    /// streaming, after merging the clock it carries; a call the connection dropped before an
    /// answer is sent again (``retrying(_:)``), so `request`'s body must be one that can be sent
    /// again (bytes, or a kept body). Unlike ``call(_:_:_:json:timeout:maxBytes:)`` it does not
    /// turn a status of 400 or more into an error: the caller reads the status.
    ///
    /// - Throws: ``NodeCallError`` (no status) when there is no answer.
    func stream(_ request: HTTPClientRequest, timeout: Duration) async throws(NodeCallError) -> HTTPClientResponse {
        let response = try await retrying { () async throws(NodeCallError) in
            var request = request
            stamp(&request)
            do {
                return try await execute(request, timeout: timeout)
            } catch {
                throw NodeCallError(url: request.url, failure: error)
            }
        }
        merge(response.headers)
        return response
    }

    /// The error for an answer of 400 or more, its detail read from the body (at most 64 KiB).
    static func failure(_ response: HTTPClientResponse, url: String) async -> NodeCallError {
        let body = (try? await response.body.collect(upTo: 1 << 16)).map { Array($0.readableBytesView) } ?? []
        return NodeCallError(url: url, status: Int(response.status.code), body: body)
    }
}
