import Foundation
import Hummingbird
import MultipartKit

/// Streams the `data` field out of a multipart/form-data body (how UCP's nodes send data and
/// results) as it arrives, through multipart-kit's `MultipartParser`.
///
/// Memory stays bounded: the parser keeps only the current header line; the first field named
/// `data` goes to `write` chunk by chunk; other fields are dropped. Not thread-safe: one body,
/// one task.
final class MultipartDataField {
    private let parser: MultipartParser
    private let write: (ByteBuffer) throws -> Void
    private var headers: [(String, String)] = []
    private var inData = false
    private var sawData = false
    private var finishedData = false
    private var failure: (any Error)?
    /// Bytes fed so far, framing included.
    private(set) var fed: Int64 = 0
    /// Bytes of the `data` field so far.
    private(set) var written: Int64 = 0

    /// A reader of a body with `boundary`, handing the `data` field's bytes to `write` (which may
    /// throw to stop the upload; its error comes out of ``feed(_:)``).
    init(boundary: String, write: @escaping (ByteBuffer) throws -> Void) {
        self.parser = MultipartParser(boundary: boundary)
        self.write = write
        parser.onHeader = { [unowned self] name, value in
            self.headers.append((name, value))
        }
        parser.onBody = { [unowned self] buffer in
            if !self.headers.isEmpty {
                self.inData = !self.sawData && Self.isDataField(self.headers)
                if self.inData { self.sawData = true }
                self.headers.removeAll()
            }
            guard self.inData, self.failure == nil else { return }
            self.written += Int64(buffer.readableBytes)
            do {
                try self.write(buffer)
            } catch {
                self.failure = error
            }
        }
        parser.onPartComplete = { [unowned self] in
            // A part with an empty body never reached onBody: decide here.
            if !self.headers.isEmpty, !self.sawData, Self.isDataField(self.headers) {
                self.sawData = true
                self.inData = true
            }
            if self.inData { self.finishedData = true }
            self.inData = false
            self.headers.removeAll()
        }
    }

    /// The boundary of a multipart/form-data request.
    ///
    /// - Throws: ``APIError`` 400 when the body is not multipart/form-data with a boundary.
    static func boundary(of request: Request) throws -> String {
        guard let boundary = boundary(ofContentType: request.headers[.contentType]) else {
            throw APIError(.badRequest, "expected a multipart/form-data body with a boundary")
        }
        return boundary
    }

    /// The boundary of a multipart `Content-Type`, or nil when it is not one or has none.
    static func boundary(ofContentType contentType: String?) -> String? {
        guard let contentType, let media = MediaType(from: contentType), media.type == .multipart,
            let boundary = media.parameter.flatMap({ $0.name == "boundary" ? $0.value : nil }), !boundary.isEmpty
        else { return nil }
        return boundary
    }

    /// Parses the next chunk of the body.
    ///
    /// - Throws: ``APIError`` 400 for a malformed body; whatever `write` threw.
    func feed(_ chunk: ByteBuffer) throws {
        fed += Int64(chunk.readableBytes)
        do {
            try parser.execute(chunk)
        } catch {
            throw APIError(.badRequest, "malformed multipart body")
        }
        if let failure { throw failure }
    }

    /// Checks that a complete `data` field arrived.
    ///
    /// - Throws: ``APIError`` 400 when there was none or the body ended inside it.
    func finish() throws {
        guard sawData else { throw APIError(.badRequest, "the multipart body has no field named data") }
        guard finishedData else { throw APIError(.badRequest, "the multipart body ends inside the data field") }
    }

    /// True when the part's `Content-Disposition` is `form-data` with `name="data"`.
    static func isDataField(_ headers: [(String, String)]) -> Bool {
        guard let disposition = headers.first(where: { $0.0.lowercased() == "content-disposition" })?.1 else {
            return false
        }
        for parameter in disposition.split(separator: ";").dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2, pair[0].lowercased() == "name" {
                return pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"")) == "data"
            }
        }
        return false
    }
}
