import Foundation
import Hummingbird

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
        let boundary = try MultipartDataField.boundary(of: request)
        let temporary = path + ".part-" + UUID().ucpString
        guard FileManager.default.createFile(atPath: temporary, contents: nil),
            let handle = FileHandle(forWritingAtPath: temporary)
        else {
            throw APIError(.internalServerError, "cannot create \(temporary)")
        }
        let sink = MultipartDataField(boundary: boundary) { buffer in
            try handle.write(contentsOf: buffer.readableBytesView)
        }
        do {
            for try await chunk in request.body {
                try sink.feed(chunk)
                if sink.written > maxBytes {
                    throw APIError(.contentTooLarge, "the data field is larger than \(maxBytes) bytes")
                }
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
