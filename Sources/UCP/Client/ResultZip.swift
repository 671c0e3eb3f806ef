import Foundation
import ZIPFoundation

/// A job's result zip, read: `stdout.txt`, `stderr.txt` and the other entries.
public struct ResultZip: Sendable {
    /// Every file entry: path in the zip → bytes.
    public var entries: [String: [UInt8]]

    /// The zip at `path`.
    ///
    /// - Throws: ``ResultZipError`` when it is not a readable zip.
    public init(path: String) throws {
        do {
            try self.init(archive: try Archive(url: URL(fileURLWithPath: path), accessMode: .read))
        } catch let error as ResultZipError {
            throw error
        } catch {
            throw ResultZipError(source: path, problem: "\(error)")
        }
    }

    /// The zip in `bytes`.
    ///
    /// - Throws: ``ResultZipError`` when it is not a readable zip.
    public init(bytes: [UInt8]) throws {
        do {
            try self.init(archive: try Archive(data: Data(bytes), accessMode: .read))
        } catch let error as ResultZipError {
            throw error
        } catch {
            throw ResultZipError(source: "\(bytes.count) bytes", problem: "\(error)")
        }
    }

    private init(archive: Archive) throws {
        var entries: [String: [UInt8]] = [:]
        for entry in archive where entry.type == .file {
            var data = Data()
            _ = try archive.extract(entry, skipCRC32: false) { data.append($0) }
            entries[entry.path] = Array(data)
        }
        self.entries = entries
    }

    /// `stdout.txt` as text (empty when missing).
    public var stdout: String { String(decoding: entries["stdout.txt"] ?? [], as: UTF8.self) }
    /// `stderr.txt` as text (empty when missing).
    public var stderr: String { String(decoding: entries["stderr.txt"] ?? [], as: UTF8.self) }

    /// Writes every entry under `folder`, refusing entries whose path could leave it.
    ///
    /// - Throws: ``InvalidName`` for such an entry, ``UnsafePath`` or a file error otherwise.
    public func unpack(into folder: String) throws {
        let root = try FileRoot(folder)
        for (path, bytes) in entries.sorted(by: { $0.key < $1.key }) {
            let target = try root.createParents(of: try JobPath(path))
            try Data(bytes).write(to: URL(fileURLWithPath: target))
        }
    }
}

/// A result zip that could not be read.
public struct ResultZipError: Error, Hashable, CustomStringConvertible {
    /// The file (or bytes) read.
    public var source: String
    /// What went wrong.
    public var problem: String

    /// One line.
    public var description: String { "cannot read the result zip \(source): \(problem)" }
}
