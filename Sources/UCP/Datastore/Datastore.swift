import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// File storage for named data under a root folder: the datastore node's state.
///
/// Layout: `rootdir/data/<name>` holds the data (a name's slashes are folders),
/// `rootdir/incoming/` holds uploads in progress, which are renamed into place only when complete,
/// so a reader never sees half a file and a failed upload leaves nothing behind. Names are
/// ``DataName``s and are resolved with ``FileRoot``, so nothing is ever read, written or deleted
/// outside the root; deleting data removes the folders it leaves empty, up to but never including
/// `rootdir/data` (UCP removed its own root that way).
///
/// An index of names is kept in memory (rebuilt from the disk at start) for listing. Structural
/// changes (rename into place, delete, folder clean-up) are serialised by one lock; streaming an
/// upload to its temporary file happens outside it. Thread-safe.
public final class Datastore: Sendable {
    /// The root folder given at start, made canonical.
    public let root: FileRoot
    /// Largest data item accepted, in bytes.
    public let maxItemBytes: Int64
    let data: FileRoot
    let incoming: FileRoot
    private let names: Mutex<Set<String>>

    /// Opens (creating if needed) the store at `rootdir`, drops unfinished uploads from an earlier
    /// run and indexes the data present.
    ///
    /// - Throws: ``UnsafePath`` when the folders cannot be made.
    public init(rootdir: String, maxItemBytes: Int64 = 1 << 30) throws(UnsafePath) {
        root = try FileRoot(rootdir)
        data = try FileRoot(try root.createFolders(["data"]), create: false)
        incoming = try FileRoot(try root.createFolders(["incoming"]), create: false)
        self.maxItemBytes = maxItemBytes
        for leftover in (try? FileManager.default.contentsOfDirectory(atPath: incoming.path)) ?? [] {
            unlink(incoming.path + "/" + leftover)
        }
        names = Mutex(Self.scan(data))
    }

    /// Starts storing `name`: bytes go to a temporary file until ``Upload/commit()``.
    ///
    /// - Throws: ``DatastoreError/storage(_:_:)`` when the temporary file cannot be made.
    public func beginUpload(_ name: DataName) throws(DatastoreError) -> Upload {
        let temporary = incoming.path + "/" + UUID().ucpString
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .storage(name.rawValue, UnsafePath(temporary, .system(errno))) }
        return Upload(store: self, name: name, temporary: temporary, fd: fd)
    }

    /// Stores `bytes` as `name`, replacing what was there.
    public func put(_ name: DataName, bytes: some Collection<UInt8>) throws(DatastoreError) {
        let upload = try beginUpload(name)
        do {
            try upload.write(Array(bytes))
            try upload.commit()
        } catch {
            upload.abort()
            throw error
        }
    }

    /// Opens `name` for reading. The file stays readable through the returned value even if the
    /// data is deleted or replaced meanwhile.
    ///
    /// - Throws: ``DatastoreError/notFound(_:)`` when there is no such data.
    public func openForReading(_ name: DataName) throws(DatastoreError) -> StoredFile {
        let host: String
        do {
            host = try data.resolve(name)
        } catch {
            throw .notFound(name.rawValue)
        }
        let fd = systemOpen(host, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw .notFound(name.rawValue) }
        var info = stat()
        guard fstat(fd, &info) == 0, FileKind.kind(mode: info.st_mode) == .regular else {
            close(fd)
            throw .notFound(name.rawValue)
        }
        return StoredFile(fd: fd, size: Int64(info.st_size))
    }

    /// The whole content of `name` (for small data and tests).
    public func bytes(of name: DataName) throws(DatastoreError) -> [UInt8] {
        let file = try openForReading(name)
        defer { file.close() }
        var result: [UInt8] = []
        do throws(UnsafePath) {
            while let chunk = try file.read(upTo: 1 << 16) { result += chunk }
        } catch {
            throw .storage(name.rawValue, error)
        }
        return result
    }

    /// Deletes `name` and the folders it leaves empty (never `rootdir/data` itself).
    ///
    /// - Throws: ``DatastoreError/notFound(_:)`` when there is no such data.
    public func delete(_ name: DataName) throws(DatastoreError) {
        try names.withLock { names throws(DatastoreError) in
            try removeLocked(name, names: &names)
        }
    }

    /// Deletes the data of job `jobID` (every name under `<jobID>/`) except `<jobID>/result`, and
    /// returns the names deleted, sorted.
    public func deleteJobData(_ jobID: String) -> [String] {
        let prefix = jobID + "/"
        let keep = prefix + "result"
        return names.withLock { names in
            let doomed = names.filter { $0.hasPrefix(prefix) && $0 != keep }.sorted()
            for text in doomed {
                if let name = try? DataName(text) { try? removeLocked(name, names: &names) }
            }
            return doomed
        }
    }

    /// Every name, sorted.
    public func list() -> [String] {
        names.withLock { $0.sorted() }
    }

    /// Page `page` (from 1) of `size` names that start with both `prefix` and `jobID`, sorted.
    public func list(prefix: String, jobID: String = "", page: Int = 1, size: Int = 50) -> DataPage {
        precondition(page >= 1 && size >= 1, "page and size start at 1")
        let matching = names.withLock { names in
            names.filter { $0.hasPrefix(prefix) && $0.hasPrefix(jobID) }
        }.sorted()
        let (offset, overflow) = (page - 1).multipliedReportingOverflow(by: size)
        let start = overflow ? matching.count : min(matching.count, offset)
        let end = start + min(size, matching.count - start)
        return DataPage(
            items: Array(matching[start..<end]), total: matching.count, page: page, size: size,
            pages: (matching.count + size - 1) / size)
    }

    /// Bytes free for unprivileged users on the store's file system.
    ///
    /// - Throws: ``DatastoreError/storage(_:_:)`` when `statvfs` fails.
    public func freeBytes() throws(DatastoreError) -> Int {
        do {
            return try Capabilities.availableDisk(path: root.path)
        } catch {
            throw .storage("", UnsafePath(root.path, .system(EIO)))
        }
    }

    // MARK: - Internals

    fileprivate func commit(_ name: DataName, temporary: String) throws(DatastoreError) {
        try names.withLock { names throws(DatastoreError) in
            let target: String
            do throws(UnsafePath) {
                target = try data.createParents(of: name)
            } catch {
                throw .conflict(name.rawValue, error)
            }
            if FileKind.of(target) == .directory {
                throw .conflict(name.rawValue, UnsafePath(target, .notARegularFile))
            }
            guard rename(temporary, target) == 0 else {
                let code = errno
                removeEmptyParents(of: target)
                throw .storage(name.rawValue, UnsafePath(target, .system(code)))
            }
            names.insert(name.rawValue)
        }
    }

    private func removeLocked(_ name: DataName, names: inout Set<String>) throws(DatastoreError) {
        let host: String
        do {
            host = try data.resolve(name)
        } catch {
            throw .notFound(name.rawValue)
        }
        guard FileKind.of(host) == .regular else { throw .notFound(name.rawValue) }
        guard unlink(host) == 0 else { throw .storage(name.rawValue, UnsafePath(host, .system(errno))) }
        names.remove(name.rawValue)
        removeEmptyParents(of: host)
    }

    /// Removes the empty folders above `host`, stopping at the first one that is not empty and
    /// never touching `rootdir/data` or anything above it.
    private func removeEmptyParents(of host: String) {
        var folder = (host as NSString).deletingLastPathComponent
        while folder.count > data.path.count, folder.hasPrefix(data.path + "/") {
            guard rmdir(folder) == 0 else { return }
            folder = (folder as NSString).deletingLastPathComponent
        }
    }

    private static func scan(_ data: FileRoot) -> Set<String> {
        var found = Set<String>()
        func walk(_ folder: String, _ prefix: String, depth: Int) {
            guard depth < 64, let entries = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
            for entry in entries {
                let path = folder + "/" + entry
                let name = prefix.isEmpty ? entry : prefix + "/" + entry
                switch FileKind.of(path) {
                case .regular: if (try? DataName(name)) != nil { found.insert(name) }
                case .directory: walk(path, name, depth: depth + 1)
                default: continue
                }
            }
        }
        walk(data.path, "", depth: 0)
        return found
    }
}

/// An upload in progress: bytes go to a temporary file; ``commit()`` renames it into place,
/// ``abort()`` (or going past the size limit) removes it. Use from one task at a time.
public final class Upload: @unchecked Sendable {
    /// The data being stored.
    public let name: DataName
    /// Bytes written so far.
    public private(set) var count: Int64 = 0
    private let store: Datastore
    private let temporary: String
    private var fd: CInt

    fileprivate init(store: Datastore, name: DataName, temporary: String, fd: CInt) {
        self.store = store
        self.name = name
        self.temporary = temporary
        self.fd = fd
    }

    deinit {
        abort()
    }

    /// Appends `bytes`.
    ///
    /// - Throws: ``DatastoreError/tooLarge(_:limit:)`` past the store's limit (the upload is then
    ///   aborted); ``DatastoreError/storage(_:_:)`` when the disk refuses.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(DatastoreError) {
        guard fd >= 0 else { throw .storage(name.rawValue, UnsafePath(temporary, .system(EBADF))) }
        guard count + Int64(bytes.count) <= store.maxItemBytes else {
            abort()
            throw .tooLarge(name.rawValue, limit: store.maxItemBytes)
        }
        var offset = 0
        while offset < bytes.count {
            let written = systemWrite(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                let code = errno
                abort()
                throw .storage(name.rawValue, UnsafePath(temporary, .system(code)))
            }
            offset += written
        }
        count += Int64(bytes.count)
    }

    /// Appends `bytes`; see ``write(_:)-(UnsafeRawBufferPointer)``.
    public func write(_ bytes: [UInt8]) throws(DatastoreError) {
        var failure: DatastoreError?
        bytes.withUnsafeBytes { raw in
            do throws(DatastoreError) {
                try write(raw)
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
    }

    /// Makes the data visible under its name, replacing what was there.
    ///
    /// - Throws: ``DatastoreError/conflict(_:_:)`` when a folder is in the way (or a file where a
    ///   folder must go), ``DatastoreError/storage(_:_:)`` on a disk failure. Either way the
    ///   upload is removed.
    public func commit() throws(DatastoreError) {
        guard fd >= 0 else { throw .storage(name.rawValue, UnsafePath(temporary, .system(EBADF))) }
        let closed = systemClose(fd)
        fd = -1
        guard closed == 0 else {
            unlink(temporary)
            throw .storage(name.rawValue, UnsafePath(temporary, .system(errno)))
        }
        do {
            try store.commit(name, temporary: temporary)
        } catch {
            unlink(temporary)
            throw error
        }
    }

    /// Drops the upload; harmless after ``commit()`` or a second time.
    public func abort() {
        guard fd >= 0 else { return }
        systemClose(fd)
        fd = -1
        unlink(temporary)
    }
}

/// A stored file open for reading; close it when done. Use from one task at a time.
public final class StoredFile: @unchecked Sendable {
    /// Its size when opened.
    public let size: Int64
    private var fd: CInt
    private var offset: Int64 = 0

    init(fd: CInt, size: Int64) {
        self.fd = fd
        self.size = size
    }

    deinit {
        close()
    }

    /// The next at most `count` bytes, or nil at the end.
    ///
    /// - Throws: ``UnsafePath`` when reading fails.
    public func read(upTo count: Int) throws(UnsafePath) -> [UInt8]? {
        guard fd >= 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: count)
        let read = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        guard read >= 0 else { throw UnsafePath("fd \(fd)", .system(errno)) }
        if read == 0 { return nil }
        offset += Int64(read)
        buffer.removeLast(count - read)
        return buffer
    }

    /// Closes the file; harmless a second time.
    public func close() {
        guard fd >= 0 else { return }
        systemClose(fd)
        fd = -1
    }
}

// The system calls under names that methods called `open`, `write` and `close` do not shadow.
private func systemOpen(_ path: String, _ flags: CInt) -> CInt { open(path, flags) }
private func systemWrite(_ fd: CInt, _ bytes: UnsafeRawPointer, _ count: Int) -> Int { write(fd, bytes, count) }
@discardableResult private func systemClose(_ fd: CInt) -> CInt { close(fd) }
