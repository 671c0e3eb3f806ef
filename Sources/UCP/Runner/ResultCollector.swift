import Foundation
import ZIPFoundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Collects a finished job's results, treating everything the guest left as hostile: only
/// regular files and folders are taken, symbolic links and special files are skipped, no link is
/// ever followed (files are opened with `O_NOFOLLOW` and checked with `fstat`), and the total size
/// and number of entries are bounded.
struct ResultCollector {
    /// Most bytes of file content in one zip.
    let maxBytes: Int64
    /// Most entries in one zip.
    let maxEntries: Int
    /// Deepest folder nesting walked.
    let maxDepth = 64

    /// Most skipped files described one by one; past that they are only counted.
    static let maxSkippedDetails = 100

    /// What a collection produced.
    struct Collected {
        var skipped: [String] = []
        var moreSkipped = 0
        var bytes: Int64 = 0
        var names: Set<String> = []
        /// Set once the entry limit is reached: the walk stops there.
        var full = false

        mutating func skip(_ line: String) {
            if skipped.count < ResultCollector.maxSkippedDetails { skipped.append(line) } else { moreSkipped += 1 }
        }
    }

    /// Writes `folder`'s result zip: `stdout.txt`, `stderr.txt`, then the `zipResults` entries in
    /// order of their job paths. Returns what was left out and why.
    ///
    /// - Throws: when the zip itself cannot be written (a host failure).
    func zip(_ folder: JobFolder, zipResults: [JobPath: JobPath]) throws -> [String] {
        let zipPath = folder.resultZipPath
        if FileKind.of(zipPath) != .missing { try FileManager.default.removeItem(atPath: zipPath) }
        // An empty archive (its end-of-central-directory record alone), opened for update:
        // ZIPFoundation's `.create` writes the same 22 bytes but with an fsync, which cost more
        // than the whole rest of a small job. The zip is a working file; its consumer reads it
        // whole, and a crash loses the job anyway.
        let fd = open(zipPath, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw UnsafePath(zipPath, .system(errno)) }
        let empty: [UInt8] = [0x50, 0x4B, 0x05, 0x06] + [UInt8](repeating: 0, count: 18)
        let written = empty.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard written == empty.count else { throw UnsafePath(zipPath, .system(EIO)) }
        let archive = try Archive(url: URL(fileURLWithPath: zipPath), accessMode: .update)
        var state = Collected()
        try add(file: folder.stdoutPath, as: "stdout.txt", shownAs: "out/stdout.txt", to: archive, &state)
        try add(file: folder.stderrPath, as: "stderr.txt", shownAs: "out/stderr.txt", to: archive, &state)
        for (inJob, inZip) in zipResults.sorted(by: { $0.key.rawValue < $1.key.rawValue }) where !state.full {
            let shown = "data/" + inJob.relative
            let host: String
            do {
                host = try folder.data.resolve(inJob)
            } catch {
                state.skip("\(shown): \(error.reasonText)")
                continue
            }
            switch FileKind.of(host) {
            case .regular:
                let name = inZip.isRoot ? String(inJob.segments.last ?? "") : inZip.relative
                try add(file: host, as: name, shownAs: shown, to: archive, &state)
            case .directory:
                try add(folder: host, as: inZip.relative, shownAs: shown, depth: 0, to: archive, &state)
            case .missing:
                state.skip("\(shown): missing")
            case .symbolicLink:
                state.skip("\(shown): symbolic link")
            case .other:
                state.skip("\(shown): not a regular file")
            }
        }
        if state.moreSkipped > 0 { state.skipped.append("… and \(state.moreSkipped) more skipped") }
        return state.skipped
    }

    private func add(
        folder host: String, as prefix: String, shownAs shown: String, depth: Int, to archive: Archive,
        _ state: inout Collected
    ) throws {
        guard depth < maxDepth else {
            state.skip("\(shown): nested deeper than \(maxDepth) folders")
            return
        }
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: host) else {
            state.skip("\(shown): cannot be listed")
            return
        }
        for name in names.sorted() {
            if state.full { return }
            let child = host + "/" + name
            let inZip = prefix.isEmpty ? name : prefix + "/" + name
            let childShown = shown.hasSuffix("/") ? shown + name : shown + "/" + name
            switch FileKind.of(child) {
            case .regular:
                try add(file: child, as: inZip, shownAs: childShown, to: archive, &state)
            case .directory:
                try add(folder: child, as: inZip, shownAs: childShown, depth: depth + 1, to: archive, &state)
            case .symbolicLink:
                state.skip("\(childShown): symbolic link")
            case .other:
                state.skip("\(childShown): not a regular file")
            case .missing:
                continue
            }
        }
    }

    private func add(
        file host: String, as name: String, shownAs shown: String, to archive: Archive, _ state: inout Collected
    )
        throws
    {
        guard !name.isEmpty, !state.names.contains(name) else {
            state.skip("\(shown): duplicate entry \"\(name)\"")
            return
        }
        guard state.names.count < maxEntries else {
            state.skip("\(shown) and what follows: over the limit of \(maxEntries) entries")
            state.full = true
            return
        }
        let fd = open(host, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            state.skip("\(shown): \(errno == ELOOP ? "symbolic link" : String(cString: strerror(errno)))")
            return
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, FileKind.kind(mode: info.st_mode) == .regular else {
            state.skip("\(shown): not a regular file")
            return
        }
        let size = Int64(info.st_size)
        guard state.bytes + size <= maxBytes else {
            state.skip("\(shown): over the result size limit of \(maxBytes) bytes")
            return
        }
        try archive.addEntry(
            with: name, type: .file, uncompressedSize: size, modificationDate: Date(), permissions: 0o644,
            compressionMethod: .none
        ) { position, chunk in
            var data = Data(count: chunk)
            let read = data.withUnsafeMutableBytes { pread(fd, $0.baseAddress, chunk, off_t(position)) }
            guard read == chunk else { throw UnsafePath(host, .system(read < 0 ? errno : EIO)) }
            return data
        }
        state.bytes += size
        state.names.insert(name)
    }

    /// The files of `namedResults` to store as named data (at most `maxEntries`), each checked to
    /// be a regular file inside the job's data folder, and what was left out.
    func namedResults(_ folder: JobFolder, _ namedResults: [JobPath: String]) -> ([NamedResult], [String]) {
        var results: [NamedResult] = []
        var skipped: [String] = []
        func append(host: String, path: String, nameText: String, shown: String) {
            switch FileKind.of(host) {
            case .regular:
                guard results.count < maxEntries else {
                    if skipped.count < Self.maxSkippedDetails {
                        skipped.append("\(shown): over the limit of \(maxEntries) named results")
                    }
                    return
                }
                do {
                    results.append(NamedResult(path: path, hostPath: host, name: try DataName(nameText)))
                } catch {
                    skipped.append("\(shown): \(error)")
                }
            case .missing: skipped.append("\(shown): missing")
            case .symbolicLink: skipped.append("\(shown): symbolic link")
            case .directory, .other: skipped.append("\(shown): not a regular file")
            }
        }

        for (inJob, nameText) in namedResults.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            let shown = "data/" + inJob.relative
            let isGlob =
                nameText.hasSuffix("*") && inJob.relative.hasSuffix("*")
                && inJob.relative.filter({ $0 == "*" }).count == 1
            if isGlob {
                let prefix = String(inJob.segments.last!.dropLast())
                let parentSegments = Array(inJob.segments.dropLast())
                guard let parent = try? folder.data.resolve(segments: parentSegments),
                    FileKind.of(parent) == .directory,
                    let names = try? FileManager.default.contentsOfDirectory(atPath: parent)
                else {
                    skipped.append("\(shown): no such folder")
                    continue
                }
                for entry in names.sorted() where entry.hasPrefix(prefix) {
                    let host = parent + "/" + entry
                    let text = String(nameText.dropLast()) + entry.dropFirst(prefix.count)
                    let path = "/" + (parentSegments + [Substring(entry)]).joined(separator: "/")
                    append(host: host, path: path, nameText: text, shown: "data" + path)
                }
            } else {
                guard let host = try? folder.data.resolve(inJob) else {
                    skipped.append("\(shown): runs through a symbolic link")
                    continue
                }
                append(host: host, path: "/" + inJob.relative, nameText: nameText, shown: shown)
            }
        }
        return (results, skipped)
    }
}
