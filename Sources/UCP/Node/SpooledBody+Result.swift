import Foundation
import NIOCore

extension SpooledBody {
    /// Checks that these bytes are a whole job result as UCP's nodes send one: a multipart body
    /// (`contentType` gives the boundary) whose `data` field is complete and a zip that reads to
    /// the end with matching checksums. A result cut off anywhere fails here.
    ///
    /// - Throws: ``InvalidResult`` naming what is wrong.
    func verifyResult(contentType: String?) async throws(InvalidResult) {
        guard let boundary = MultipartDataField.boundary(ofContentType: contentType) else {
            throw InvalidResult("the result is not a multipart/form-data body with a boundary")
        }
        switch storage {
        case .memory:
            let zip = Collected()
            try await feed(MultipartDataField(boundary: boundary) { zip.data.append(contentsOf: $0.readableBytesView) })
            do {
                try ResultZip.verify(bytes: zip.data)
            } catch {
                throw InvalidResult("the result's data field is not a readable zip: \(error.problem)")
            }
        case .file(let path):
            let zipPath = path + ".zip"
            guard FileManager.default.createFile(atPath: zipPath, contents: nil),
                let handle = FileHandle(forWritingAtPath: zipPath)
            else { throw InvalidResult("cannot write \(zipPath) to check the result") }
            defer { try? FileManager.default.removeItem(atPath: zipPath) }
            do {
                defer { try? handle.close() }
                try await feed(MultipartDataField(boundary: boundary) { try handle.write(contentsOf: $0.readableBytesView) })
            }
            do {
                try ResultZip.verify(path: zipPath)
            } catch {
                throw InvalidResult("the result's data field is not a readable zip: \(error.problem)")
            }
        }
    }

    /// Feeds every chunk to `field` and checks that its `data` field is complete.
    private func feed(_ field: MultipartDataField) async throws(InvalidResult) {
        do {
            for try await chunk in chunks { try field.feed(chunk) }
            try field.finish()
        } catch let error as APIError {
            throw InvalidResult("the result is not a whole multipart body: \(error.detail)")
        } catch {
            throw InvalidResult("cannot read the kept result: \(error)")
        }
    }

    /// Bytes gathered by a parser callback.
    private final class Collected {
        var data = Data()
    }
}

/// A result that is not whole: not multipart, no complete `data` field, or not a readable zip.
struct InvalidResult: Error, Hashable, CustomStringConvertible {
    /// What is wrong.
    let description: String

    init(_ description: String) { self.description = description }
}
