import AsyncHTTPClient
import Foundation
import NIOCore

/// A request body read to its end by its one owner and kept, so that it is checked before
/// anything acts on it and can be sent on as often as a retry needs.
///
/// Why a node keeps what it passes on, instead of streaming it through:
/// - An incoming body allows a single reader. Streamed through, it has two: the outgoing
///   client's writer, which may still be reading when the answer comes back early (the peer
///   answered before reading, or failed), and the server, which drains whatever is left once
///   the handler has answered. NIO stops the process when both read.
/// - A body cut off mid-way (the sender was killed) must change nothing: a result is judged on
///   its whole, verified bytes, never on a prefix.
/// - A kept body can be sent again when the first attempt found a connection the peer had
///   just closed.
///
/// Up to `memoryLimit` bytes stay in memory; a larger body goes to a file in the spool folder,
/// removed when the value is released. Immutable once received; thread-safe.
final class SpooledBody: Sendable {
    /// Where the bytes are.
    enum Storage: Sendable {
        case memory(ByteBuffer)
        case file(String)
    }

    /// The bytes.
    let storage: Storage
    /// How many there are.
    let count: Int64

    private init(storage: Storage, count: Int64) {
        self.storage = storage
        self.count = count
    }

    deinit {
        if case .file(let path) = storage { try? FileManager.default.removeItem(atPath: path) }
    }

    /// Reads `body` to its end.
    ///
    /// - Parameters:
    ///   - expected: the request's `Content-Length`, if it gave one; fewer bytes is a body cut off.
    ///   - limit: the most bytes accepted.
    ///   - folder: where a body larger than `memoryLimit` is written (created when needed).
    /// - Throws: ``SpoolError``: past the limit, cut off or broken off by the sender, or the
    ///   spool file could not be written.
    static func receive<Body: AsyncSequence>(
        _ body: Body, expected: Int64?, limit: Int64, folder: String, memoryLimit: Int = 1 << 20
    ) async throws(SpoolError) -> SpooledBody where Body.Element == ByteBuffer {
        if let expected, expected > limit { throw .tooLarge(limit: limit) }
        var buffer = ByteBuffer()
        var file: (path: String, handle: FileHandle)?
        var count: Int64 = 0
        do {
            for try await chunk in body {
                count += Int64(chunk.readableBytes)
                if count > limit { throw SpoolError.tooLarge(limit: limit) }
                if let file {
                    try file.handle.write(contentsOf: chunk.readableBytesView)
                    continue
                }
                var chunk = chunk
                buffer.writeBuffer(&chunk)
                if buffer.readableBytes > memoryLimit {
                    let opened = try openSpoolFile(in: folder)
                    file = opened
                    try opened.handle.write(contentsOf: buffer.readableBytesView)
                    buffer = ByteBuffer()
                }
            }
        } catch {
            if let file {
                try? file.handle.close()
                try? FileManager.default.removeItem(atPath: file.path)
            }
            if let error = error as? SpoolError { throw error }
            throw .interrupted(received: count, detail: "\(error)")
        }
        if let file {
            do {
                try file.handle.close()
            } catch {
                try? FileManager.default.removeItem(atPath: file.path)
                throw .storage("cannot write \(file.path): \(error)")
            }
        }
        let spooled = SpooledBody(storage: file.map { .file($0.path) } ?? .memory(buffer), count: count)
        if let expected, count != expected { throw .truncated(received: count, expected: expected) }
        return spooled
    }

    /// The body for a request that sends these bytes (again): AsyncHTTPClient may iterate it as
    /// often as it retries.
    var requestBody: HTTPClientRequest.Body {
        switch storage {
        case .memory(let buffer): .bytes(buffer)
        case .file(let path): .stream(FileChunks(path: path, head: [], tail: []), length: .known(count))
        }
    }

    /// The bytes in chunks, from the start; each call reads them anew.
    var chunks: FileChunks.OrBuffer {
        switch storage {
        case .memory(let buffer): .buffer(buffer)
        case .file(let path): .file(FileChunks(path: path, head: [], tail: []))
        }
    }

    private static func openSpoolFile(in folder: String) throws -> (path: String, handle: FileHandle) {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let path = folder + "/body-" + UUID().ucpString
        guard FileManager.default.createFile(atPath: path, contents: nil),
            let handle = FileHandle(forWritingAtPath: path)
        else {
            throw SpoolError.storage("cannot create \(path)")
        }
        return (path, handle)
    }
}

/// Why a body could not be kept.
enum SpoolError: Error, Hashable, CustomStringConvertible {
    /// It is larger than the limit.
    case tooLarge(limit: Int64)
    /// It ended before the `Content-Length` it announced.
    case truncated(received: Int64, expected: Int64)
    /// The sender broke it off (the connection closed or failed mid-body).
    case interrupted(received: Int64, detail: String)
    /// The spool file could not be written.
    case storage(String)

    var description: String {
        switch self {
        case .tooLarge(let limit): "the body is larger than the limit of \(limit) bytes"
        case .truncated(let received, let expected):
            "the body ended after \(received) of the \(expected) bytes its Content-Length announced"
        case .interrupted(let received, let detail): "the body broke off after \(received) bytes: \(detail)"
        case .storage(let detail): detail
        }
    }
}

extension FileChunks {
    /// A kept body's bytes in chunks: one buffer, or a file read anew.
    enum OrBuffer: AsyncSequence, Sendable {
        typealias Element = ByteBuffer
        case buffer(ByteBuffer)
        case file(FileChunks)

        struct AsyncIterator: AsyncIteratorProtocol {
            var buffer: ByteBuffer?
            var file: FileChunks.AsyncIterator?

            mutating func next() async throws -> ByteBuffer? {
                if file != nil { return try await file!.next() }
                defer { buffer = nil }
                return buffer
            }
        }

        func makeAsyncIterator() -> AsyncIterator {
            switch self {
            case .buffer(let buffer): AsyncIterator(buffer: buffer, file: nil)
            case .file(let chunks): AsyncIterator(buffer: nil, file: chunks.makeAsyncIterator())
            }
        }
    }
}
