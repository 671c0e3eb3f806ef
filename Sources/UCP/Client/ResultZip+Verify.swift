import Foundation
import ZIPFoundation

extension ResultZip {
    /// Checks that the zip at `path` is whole: its central directory reads and every file entry
    /// extracts with a matching CRC-32. Memory stays bounded (entries are read and dropped).
    ///
    /// - Throws: ``ResultZipError`` naming what is wrong.
    public static func verify(path: String) throws(ResultZipError) {
        do {
            try verify(try Archive(url: URL(fileURLWithPath: path), accessMode: .read))
        } catch {
            throw ResultZipError(source: path, problem: "\(error)")
        }
    }

    /// Checks that `bytes` are a whole zip, as ``verify(path:)`` does.
    ///
    /// - Throws: ``ResultZipError`` naming what is wrong.
    public static func verify(bytes: Data) throws(ResultZipError) {
        do {
            try verify(try Archive(data: bytes, accessMode: .read))
        } catch {
            throw ResultZipError(source: "\(bytes.count) bytes", problem: "\(error)")
        }
    }

    private static func verify(_ archive: Archive) throws {
        for entry in archive where entry.type == .file {
            _ = try archive.extract(entry, skipCRC32: false) { _ in }
        }
    }
}
