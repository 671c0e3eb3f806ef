import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A path under a ``FileRoot`` that may not be used: it runs through a symbolic link, a parent is
/// not a folder, or the file system refused an operation on it.
public struct UnsafePath: Error, Hashable, CustomStringConvertible {
    /// What is wrong at ``path``.
    public enum Reason: Hashable, Sendable {
        /// A component is a symbolic link.
        case symbolicLink
        /// A component that must be a folder is something else.
        case notADirectory
        /// The final component exists but is not a regular file.
        case notARegularFile
        /// A system call failed with this `errno`.
        case system(Int32)
    }

    /// The host path that failed.
    public var path: String
    /// Why.
    public var reason: Reason

    /// A refusal at `path`.
    public init(_ path: String, _ reason: Reason) {
        self.path = path
        self.reason = reason
    }

    /// One line naming the path.
    public var description: String { "\(path): \(reasonText)" }

    /// The reason in words, e.g. `symbolic link`.
    public var reasonText: String {
        switch reason {
        case .symbolicLink: "symbolic link"
        case .notADirectory: "not a folder"
        case .notARegularFile: "not a regular file"
        case .system(let code): String(cString: strerror(code))
        }
    }
}

/// A folder that names are resolved under, such that a resolved path can never leave it.
///
/// The root is made canonical once (`realpath`); a name is joined to it segment by segment
/// (validated names have no `..`), and every existing component is checked with `lstat` to be no
/// symbolic link. The check is exact when nothing else changes the tree at the same moment: the
/// datastore is the only writer of its root, and a job's guest has finished before its folder
/// is read.
///
/// A value type; may be shared between threads.
public struct FileRoot: Sendable, Hashable {
    /// The canonical path of the root, without a trailing slash.
    public let path: String

    /// The root at `path`, created (with its parents) when `create` is true and it is missing.
    ///
    /// - Throws: ``UnsafePath`` when it cannot be created, resolved or is not a folder.
    public init(_ path: String, create: Bool = true) throws(UnsafePath) {
        if create {
            // mkdir -p, keeping the errno of the step that failed.
            var prefix = path.hasPrefix("/") ? "" : "."
            for component in path.split(separator: "/") {
                prefix += "/" + component
                if mkdir(prefix, 0o755) != 0, errno != EEXIST { throw UnsafePath(prefix, .system(errno)) }
            }
        }
        guard let real = realpath(path, nil) else { throw UnsafePath(path, .system(errno)) }
        defer { free(real) }
        let canonical = String(cString: real)
        guard FileKind.of(canonical) == .directory else { throw UnsafePath(canonical, .notADirectory) }
        self.path = canonical == "/" ? "" : canonical
    }

    /// A root at `path`, which the caller has just checked to be a canonical folder (made with
    /// ``createFolders(_:)`` under a canonical root): skips `realpath`.
    init(verified path: String) {
        self.path = path
    }

    /// The host path of `segments` below the root, checked: no existing component is a symbolic
    /// link and every existing parent is a folder. The final component may be missing.
    public func resolve(segments: [Substring]) throws(UnsafePath) -> String {
        var current = path
        for (index, segment) in segments.enumerated() {
            current += "/" + segment
            switch FileKind.of(current) {
            case .missing:
                return current + segments[(index + 1)...].map { "/" + $0 }.joined()
            case .symbolicLink:
                throw UnsafePath(current, .symbolicLink)
            case .directory:
                continue
            case .regular, .other:
                if index < segments.count - 1 { throw UnsafePath(current, .notADirectory) }
            }
        }
        return segments.isEmpty ? (path.isEmpty ? "/" : path) : current
    }

    /// The host path of the data `name` under the root; see ``resolve(segments:)``.
    public func resolve(_ name: DataName) throws(UnsafePath) -> String {
        try resolve(segments: name.segments)
    }

    /// The host path of the job path `path` under the root; see ``resolve(segments:)``.
    public func resolve(_ path: JobPath) throws(UnsafePath) -> String {
        try resolve(segments: path.segments)
    }

    /// Creates the folders `segments` (all of them) below the root, refusing to pass through a
    /// symbolic link or a file, and returns the host path of the last one.
    @discardableResult
    public func createFolders(_ segments: ArraySlice<Substring>) throws(UnsafePath) -> String {
        var current = path
        for segment in segments {
            current += "/" + segment
            switch FileKind.of(current) {
            case .directory:
                continue
            case .missing:
                if mkdir(current, 0o755) == 0 { continue }
                guard errno == EEXIST else { throw UnsafePath(current, .system(errno)) }
                // Another creator won the race; what is there now must still be a folder.
                switch FileKind.of(current) {
                case .directory: continue
                case .symbolicLink: throw UnsafePath(current, .symbolicLink)
                default: throw UnsafePath(current, .notADirectory)
                }
            case .symbolicLink:
                throw UnsafePath(current, .symbolicLink)
            case .regular, .other:
                throw UnsafePath(current, .notADirectory)
            }
        }
        return current.isEmpty ? "/" : current
    }

    /// Creates the parent folders of `name` and returns the host path of `name` itself.
    public func createParents(of name: DataName) throws(UnsafePath) -> String {
        let segments = name.segments
        try createFolders(segments.dropLast())
        return try resolve(segments: segments)
    }

    /// Creates the parent folders of the job path `path` (where a download into a job's folder
    /// goes) and returns the host path of `path` itself.
    public func createParents(of path: JobPath) throws(UnsafePath) -> String {
        try createFolders(path.segments.dropLast())
        return try resolve(segments: path.segments)
    }

    /// The name of `hostPath` relative to the root, or nil when it is not strictly below it.
    public func relativeName(of hostPath: String) -> String? {
        let prefix = path + "/"
        guard hostPath.hasPrefix(prefix), hostPath.count > prefix.count else { return nil }
        return String(hostPath.dropFirst(prefix.count))
    }
}

/// What is at a path, without following a final symbolic link (`lstat`).
enum FileKind: Equatable {
    case missing, regular, directory, symbolicLink, other

    static func of(_ path: String) -> FileKind {
        var info = stat()
        guard lstat(path, &info) == 0 else { return .missing }
        return kind(mode: info.st_mode)
    }

    static func kind(mode: mode_t) -> FileKind {
        switch mode & S_IFMT {
        case S_IFREG: .regular
        case S_IFDIR: .directory
        case S_IFLNK: .symbolicLink
        default: .other
        }
    }
}
