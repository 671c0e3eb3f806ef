import Foundation
import ZIPFoundation

/// A job's result zip, read: `stdout.txt`, `stderr.txt` and the other entries.
public struct ResultZip: Sendable {
    /// Every file entry: path in the zip → bytes.
    public var entries: [String: [UInt8]]

    /// The most bytes a result zip is inflated to by default, all entries together.
    public static let defaultMaxBytes = 256 << 20

    /// The zip at `path`, inflated to at most `maxBytes` (a zip bomb stops there).
    ///
    /// - Throws: ``ResultZipError`` when it is not a readable zip or inflates past `maxBytes`.
    public init(path: String, maxBytes: Int = defaultMaxBytes) throws {
        do {
            try self.init(archive: try Archive(url: URL(fileURLWithPath: path), accessMode: .read), maxBytes: maxBytes)
        } catch let error as ResultZipError {
            throw error
        } catch {
            throw ResultZipError(source: path, problem: "\(error)")
        }
    }

    /// The zip in `bytes`, inflated to at most `maxBytes`.
    ///
    /// - Throws: ``ResultZipError`` when it is not a readable zip or inflates past `maxBytes`.
    public init(bytes: [UInt8], maxBytes: Int = defaultMaxBytes) throws {
        do {
            try self.init(archive: try Archive(data: Data(bytes), accessMode: .read), maxBytes: maxBytes)
        } catch let error as ResultZipError {
            throw error
        } catch {
            throw ResultZipError(source: "\(bytes.count) bytes", problem: "\(error)")
        }
    }

    private init(archive: Archive, maxBytes: Int) throws {
        var entries: [String: [UInt8]] = [:]
        var total = 0
        for entry in archive where entry.type == .file {
            var data = Data()
            // Counted as it inflates: the sizes an entry declares are the sender's word.
            _ = try archive.extract(entry, skipCRC32: false) { chunk in
                total += chunk.count
                guard total <= maxBytes else {
                    throw ResultZipError(source: entry.path, problem: "inflates past the limit of \(maxBytes) bytes")
                }
                data.append(chunk)
            }
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
