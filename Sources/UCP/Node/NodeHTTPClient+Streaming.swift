import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

extension NodeHTTPClient {
    /// Sends `request` stamped with this node's clock and returns the answer with its body still
    /// streaming (for data passed through without buffering), after merging the clock it carries.
    /// Unlike ``call(_:_:_:json:timeout:maxBytes:)`` it does not turn a status of 400 or more
    /// into an error: the caller reads the status.
    ///
    /// - Throws: ``NodeCallError`` (no status) when there is no answer.
    func stream(_ request: HTTPClientRequest, timeout: Duration) async throws(NodeCallError) -> HTTPClientResponse {
        var request = request
        stamp(&request)
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: .init(timeout))
        } catch {
            throw NodeCallError(url: request.url, status: nil, detail: "\(error)")
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

/// A request body passed through to another node, which stops with ``BodyTooLarge`` past
/// `limit` bytes (so a body without a `Content-Length` is bounded too).
struct LimitedBody<Base: AsyncSequence & Sendable>: AsyncSequence, Sendable where Base.Element == ByteBuffer {
    typealias Element = ByteBuffer
    let base: Base
    let limit: Int64
    /// Set when the limit was passed.
    let exceeded = Flag()

    init(_ base: Base, limit: Int64) {
        self.base = base
        self.limit = limit
    }

    final class Flag: Sendable {
        let value = Mutex(false)
    }

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: Base.AsyncIterator
        let limit: Int64
        let body: LimitedBody
        var count: Int64 = 0

        mutating func next() async throws -> ByteBuffer? {
            guard let chunk = try await base.next() else { return nil }
            count += Int64(chunk.readableBytes)
            if count > limit {
                body.exceeded.value.withLock { $0 = true }
                throw BodyTooLarge(limit: limit)
            }
            return chunk
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: base.makeAsyncIterator(), limit: limit, body: self)
    }

    /// True when the body went past its limit.
    var wasTooLarge: Bool { exceeded.value.withLock { $0 } }
}

/// A body went past the broker's upload limit.
struct BodyTooLarge: Error, CustomStringConvertible {
    let limit: Int64
    var description: String { "the body is larger than the limit of \(limit) bytes" }
}
