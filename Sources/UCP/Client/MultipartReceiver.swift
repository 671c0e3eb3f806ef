import Foundation
import Hummingbird
import MultipartKit

/// Receives the multipart/form-data field `data` of a request (how UCP's nodes send data and
/// results) into a file, streaming: memory stays bounded whatever the size of the body.
public enum MultipartReceiver {
    /// Writes the `data` field of `request`'s body to `path` (through a temporary file beside it,
    /// renamed when complete; a failed upload leaves nothing at `path`). Returns the bytes written.
    ///
    /// - Throws: ``APIError`` 400 for a body that is not multipart with a complete `data` field,
    ///   413 when the field is larger than `maxBytes`, 500 when the file cannot be written.
    @discardableResult
    public static func receive(_ request: Request, into path: String, maxBytes: Int64 = 1 << 30) async throws -> Int64 {
        guard let contentType = request.headers[.contentType], let media = MediaType(from: contentType),
            media.type == .multipart,
            let boundary = media.parameter.flatMap({ $0.name == "boundary" ? $0.value : nil }), !boundary.isEmpty
        else {
            throw APIError(.badRequest, "expected a multipart/form-data body with a boundary")
        }
        let temporary = path + ".part-" + UUID().uuidString.lowercased()
        guard FileManager.default.createFile(atPath: temporary, contents: nil),
            let handle = FileHandle(forWritingAtPath: temporary)
        else {
            throw APIError(.internalServerError, "cannot create \(temporary)")
        }
        let sink = FieldSink(handle: handle, boundary: boundary, maxBytes: maxBytes)
        do {
            for try await chunk in request.body {
                try sink.feed(chunk)
            }
            try sink.finish()
            try handle.close()
            if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
            try FileManager.default.moveItem(atPath: temporary, toPath: path)
        } catch {
            try? handle.close()
            try? FileManager.default.removeItem(atPath: temporary)
            if error is APIError { throw error }
            throw APIError(.internalServerError, "cannot store the upload: \(error)")
        }
        return sink.written
    }
}

/// Feeds a body through `MultipartParser`, writing the first `data` field to a file.
private final class FieldSink {
    private let parser: MultipartParser
    private let handle: FileHandle
    private let maxBytes: Int64
    private var headers: [(String, String)] = []
    private var inData = false
    private var sawData = false
    private var finishedData = false
    private var failure: (any Error)?
    private(set) var written: Int64 = 0

    init(handle: FileHandle, boundary: String, maxBytes: Int64) {
        self.parser = MultipartParser(boundary: boundary)
        self.handle = handle
        self.maxBytes = maxBytes
        parser.onHeader = { [unowned self] name, value in self.headers.append((name, value)) }
        parser.onBody = { [unowned self] buffer in
            if !self.headers.isEmpty {
                self.inData = !self.sawData && Self.isDataField(self.headers)
                if self.inData { self.sawData = true }
                self.headers.removeAll()
            }
            guard self.inData, self.failure == nil else { return }
            self.written += Int64(buffer.readableBytes)
            if self.written > self.maxBytes {
                self.failure = APIError(.contentTooLarge, "the data field is larger than \(self.maxBytes) bytes")
                return
            }
            do {
                try self.handle.write(contentsOf: buffer.readableBytesView)
            } catch {
                self.failure = error
            }
        }
        parser.onPartComplete = { [unowned self] in
            if !self.headers.isEmpty, !self.sawData, Self.isDataField(self.headers) {
                self.sawData = true
                self.inData = true
            }
            if self.inData { self.finishedData = true }
            self.inData = false
            self.headers.removeAll()
        }
    }

    func feed(_ chunk: ByteBuffer) throws {
        do {
            try parser.execute(chunk)
        } catch {
            throw APIError(.badRequest, "malformed multipart body")
        }
        if let failure { throw failure }
    }

    func finish() throws {
        guard sawData else { throw APIError(.badRequest, "the multipart body has no field named data") }
        guard finishedData else { throw APIError(.badRequest, "the multipart body ends inside the data field") }
    }

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
