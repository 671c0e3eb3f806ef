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
///
/// The body can be read once: an incoming request's body allows a single iterator, and
/// AsyncHTTPClient asks for a second one when it retries a request on a fresh connection (a
/// pooled one that the peer closed meanwhile). A second iterator throws ``BodyAlreadyRead``,
/// which fails that call, instead of stopping the process.
struct LimitedBody<Base: AsyncSequence & Sendable>: AsyncSequence, Sendable where Base.Element == ByteBuffer {
    typealias Element = ByteBuffer
    let base: Base
    let limit: Int64
    /// Set when the limit was passed.
    let exceeded = Flag()
    /// Set when the first iterator was made.
    let iterated = Flag()

    init(_ base: Base, limit: Int64) {
        self.base = base
        self.limit = limit
    }

    final class Flag: Sendable {
        let value = Mutex(false)
    }

    struct AsyncIterator: AsyncIteratorProtocol {
        /// Nil for every iterator but the first.
        var base: Base.AsyncIterator?
        let limit: Int64
        let body: LimitedBody
        var count: Int64 = 0

        mutating func next() async throws -> ByteBuffer? {
            guard base != nil else { throw BodyAlreadyRead() }
            guard let chunk = try await base!.next() else { return nil }
            count += Int64(chunk.readableBytes)
            if count > limit {
                body.exceeded.value.withLock { $0 = true }
                throw BodyTooLarge(limit: limit)
            }
            return chunk
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        let first = iterated.value.withLock { done in
            defer { done = true }
            return !done
        }
        return AsyncIterator(base: first ? base.makeAsyncIterator() : nil, limit: limit, body: self)
    }

    /// True when the body went past its limit.
    var wasTooLarge: Bool { exceeded.value.withLock { $0 } }
}

/// A body passed through was asked for a second time (a retried call): it was read already.
struct BodyAlreadyRead: Error, CustomStringConvertible {
    var description: String { "the body was read already and cannot be sent again" }
}

/// A body went past the broker's upload limit.
struct BodyTooLarge: Error, CustomStringConvertible {
    let limit: Int64
    var description: String { "the body is larger than the limit of \(limit) bytes" }
}
