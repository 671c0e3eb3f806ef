import Foundation

/// What an executor downloads into a job's folder before the job runs, named and placed exactly
/// as UCP's executor does:
///
/// | JobInfo field | data name fetched | `?job_id=` | placed at |
/// | --- | --- | --- | --- |
/// | `wasm_bin` (name) | the name | no | `code/exec.wasm` |
/// | `wasm_bin` ([name, path]) | the name | no | `code/<path>` |
/// | `job_data` {name: path} | the name | yes | `data/<path>` |
/// | `stdin` [name, path], not named | `<job_id>/<name>` | yes | `data/<path>` |
/// | `stdin` [name, path], `stdin_is_named` | the name | no | `data/<path>` |
/// | `named_data` {name: path} | the name | no | `data/<path>` |
/// | `named_data` {`prefix*`: `path*`} | each name listed by `GET /list/data/prefix` | no | `path` + the rest of the name |
///
/// A bare `stdin` name is a path inside `data/` that `job_data` fills (as UCP's client arranges);
/// nothing is fetched for it. When two entries land on the same file the first wins (UCP skips a
/// download whose file exists). Every name is a valid ``DataName`` and every path a valid
/// ``JobPath`` that is not the folder itself, checked when the plan is made.
///
/// UCP's faults fixed here: its executor never sent `?job_id=` (its request dropped the
/// parameter) and lost a `[name, path]` stdin (it was written into a dictionary that was then
/// replaced).
struct JobDownloads: Sendable {
    /// Where a download goes.
    enum Folder: Sendable { case code, data }

    /// One download.
    struct Item: Sendable {
        var name: DataName
        var jobID: UUID?
        var folder: Folder
        var path: JobPath
    }

    /// A `named_data` glob: every name starting with `prefix` goes to `pathPrefix` + the rest.
    struct Glob: Sendable {
        var prefix: String
        var pathPrefix: String
    }

    var items: [Item] = []
    var globs: [Glob] = []

    /// The plan for `info` of job `jobID`.
    ///
    /// - Throws: ``ExecutorError/invalidJob(_:problem:)`` naming the first bad name or path.
    init(jobID: UUID, info: JobInfo) throws(ExecutorError) {
        func name(_ text: String, _ field: String) throws(ExecutorError) -> DataName {
            do { return try DataName(text) } catch { throw .invalidJob(jobID, problem: "\(field): \(error)") }
        }
        func path(_ text: String, _ field: String) throws(ExecutorError) -> JobPath {
            let path: JobPath
            do { path = try JobPath(text) } catch { throw .invalidJob(jobID, problem: "\(field): \(error)") }
            if path.isRoot { throw .invalidJob(jobID, problem: "\(field): \"\(text)\" names the job's folder itself") }
            return path
        }
        var items: [Item] = []
        var globs: [Glob] = []
        var seen: Set<String> = []
        func add(_ item: Item) {
            let key = (item.folder == .code ? "code/" : "data/") + item.path.relative
            if seen.insert(key).inserted { items.append(item) }
        }

        add(
            Item(
                name: try name(info.wasmBin.name, "wasm_bin"), jobID: nil, folder: .code,
                path: try path(info.wasmBin.path ?? "exec.wasm", "wasm_bin")))
        for (data, target) in info.jobData.sorted(by: { $0.key < $1.key }) {
            add(Item(name: try name(data, "job_data"), jobID: jobID, folder: .data, path: try path(target, "job_data")))
        }
        if let target = info.stdin.path, !info.stdin.name.isEmpty {
            let fetched = info.stdinIsNamed ? info.stdin.name : UCPPaths.jobDataName(jobID, info.stdin.name)
            add(
                Item(
                    name: try name(fetched, "stdin"), jobID: info.stdinIsNamed ? nil : jobID, folder: .data,
                    path: try path(target, "stdin")))
        }
        for (data, target) in info.namedData.sorted(by: { $0.key < $1.key }) {
            if data.hasSuffix("*"), target.hasSuffix("*") {
                let prefix = String(data.dropLast())
                let pathPrefix = String(target.dropLast())
                if !prefix.isEmpty { _ = try name(prefix, "named_data") }
                if !pathPrefix.isEmpty, pathPrefix != "/" { _ = try path(pathPrefix, "named_data") }
                globs.append(Glob(prefix: prefix, pathPrefix: pathPrefix))
            } else {
                add(
                    Item(
                        name: try name(data, "named_data"), jobID: nil, folder: .data,
                        path: try path(target, "named_data")))
            }
        }
        self.items = items
        self.globs = globs
        self.seen = seen
    }

    private var seen: Set<String> = []

    /// The downloads of the glob `glob` for the listed `names` (names not starting with its
    /// prefix, and names or paths that are not valid, are left out and returned as problems).
    mutating func expand(_ glob: Glob, names: [String]) -> [String] {
        var problems: [String] = []
        for full in names where full.hasPrefix(glob.prefix) {
            let target = glob.pathPrefix + full.dropFirst(glob.prefix.count)
            do {
                let item = Item(name: try DataName(full), jobID: nil, folder: .data, path: try JobPath(target))
                if item.path.isRoot { throw InvalidName(target, .empty) }
                if seen.insert("data/" + item.path.relative).inserted { items.append(item) }
            } catch {
                problems.append("named_data \(full): \(error)")
            }
        }
        return problems
    }
}
