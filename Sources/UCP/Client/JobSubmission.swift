import Causal
import Foundation

/// A WASI job as a client submits it: the module, its inputs and where its results go.
///
/// ``UCPClient/submit(_:)`` turns it into UCP's JobInfo the way UCP's client does: the module,
/// stdin and job data given as bytes are uploaded as the job's data `<job_id>/<path>` and named
/// in `job_data`; named inputs are referred to as they are.
public struct JobSubmission: Sendable {
    /// Where a job's module or stdin comes from.
    public enum Input: Sendable, Hashable {
        /// Bytes uploaded with the job; `path` is where the job sees them (nil: UCP's default,
        /// `exec.wasm` for a module, `stdin` for stdin).
        case bytes([UInt8], path: String? = nil)
        /// Data already stored under `name`; `path` as above.
        case named(String, path: String? = nil)
    }

    /// The job's id; a new one by default.
    public var jobID: UUID
    /// The WebAssembly module.
    public var module: Input
    /// Arguments after argv[0].
    public var args: [String]
    /// The environment.
    public var env: [String: String]
    /// What the job reads on stdin, or nil for nothing.
    public var stdin: Input?
    /// Files uploaded with the job: path inside the job → bytes.
    public var jobData: [String: [UInt8]]
    /// Stored data the job reads: data name → path inside the job (`prefix*` → `path*` globs).
    public var namedData: [String: String]
    /// Folders to create inside the job.
    public var directories: [String]
    /// What goes into the result zip: path in the job → path in the zip.
    public var zipResults: [String: String]
    /// What is stored as named data: path in the job → data name.
    public var namedResults: [String: String]
    /// Jobs that must be done before this one starts, or nil to start it at once.
    public var waitFor: [UUID]?
    /// How urgent the job is.
    public var emergency: EmergencyLevel
    /// What the job needs from its executor.
    public var capabilities: Capabilities
    /// Where the result goes: a ``ResultListener``'s address, or unset (the default) to store it
    /// as `<job_id>/result`.
    public var resultAddr: Address
    /// Whether the job's data is deleted once it is done.
    public var delete: Bool

    /// A submission; every argument but `module` defaults as UCP's JobInfo does.
    public init(
        jobID: UUID = UUID(), module: Input, args: [String] = [], env: [String: String] = [:], stdin: Input? = nil,
        jobData: [String: [UInt8]] = [:], namedData: [String: String] = [:], directories: [String] = [],
        zipResults: [String: String] = ["/": "/"], namedResults: [String: String] = [:], waitFor: [UUID]? = nil,
        emergency: EmergencyLevel = .low, capabilities: Capabilities = Capabilities(), resultAddr: Address = Address(),
        delete: Bool = true
    ) {
        self.jobID = jobID
        self.module = module
        self.args = args
        self.env = env
        self.stdin = stdin
        self.jobData = jobData
        self.namedData = namedData
        self.directories = directories
        self.zipResults = zipResults
        self.namedResults = namedResults
        self.waitFor = waitFor
        self.emergency = emergency
        self.capabilities = capabilities
        self.resultAddr = resultAddr
        self.delete = delete
    }

    /// One upload of the job's own data: data name → bytes.
    public typealias Upload = (name: String, bytes: [UInt8])

    /// UCP's JobInfo for this job and the uploads it needs first, as UCP's client builds them:
    ///
    /// - module bytes, no path: uploaded as `<job_id>/exec.wasm`, `wasm_bin: "<job_id>/exec.wasm"`;
    ///   with a path: uploaded as `<job_id>/<path>`, `wasm_bin: ["<job_id>/<path>", path]`;
    /// - stdin bytes, no path: uploaded as `<job_id>/stdin`, `job_data["<job_id>/stdin"] = "stdin"`,
    ///   `stdin: "stdin"`; with a path: `<job_id>/<path>`, `stdin: [path, path]` (the name
    ///   without a leading slash);
    /// - named module or stdin: `wasm_bin`/`stdin` name it (`[name, path]` with a path; a named
    ///   stdin is always a pair, `stdin` its default path) and `*_is_named` is true;
    /// - job data: uploaded as `<job_id>/<path>`, `job_data["<job_id>/<path>"] = path`.
    ///
    /// The name is formed from the path without its leading slash.
    ///
    /// - Throws: ``InvalidName`` for a path or name that is not valid.
    public func jobInfo() throws(InvalidName) -> (info: JobInfo, uploads: [Upload]) {
        var uploads: [Upload] = []
        var info = JobInfo(wasmBin: DataReference(name: ""))
        func own(_ path: String) throws(InvalidName) -> String {
            let relative = try JobPath(path).relative
            if relative.isEmpty { throw InvalidName(path, .empty) }
            return UCPPaths.jobDataName(jobID, relative)
        }
        switch module {
        case .bytes(let bytes, nil):
            let name = UCPPaths.jobDataName(jobID, "exec.wasm")
            uploads.append((name, bytes))
            info.wasmBin = DataReference(name: name)
        case .bytes(let bytes, let path?):
            let name = try own(path)
            uploads.append((name, bytes))
            info.wasmBin = DataReference(name: name, path: path)
        case .named(let name, let path):
            _ = try DataName(name)
            info.wasmBin = path.map { DataReference(name: name, path: $0) } ?? DataReference(name: name)
            info.wasmBinIsNamed = true
        }
        var jobData: [String: String] = [:]
        switch stdin {
        case nil:
            break
        case .bytes(let bytes, nil):
            let name = UCPPaths.jobDataName(jobID, "stdin")
            uploads.append((name, bytes))
            jobData[name] = "stdin"
            info.stdin = DataReference(name: "stdin")
        case .bytes(let bytes, let path?):
            let name = try own(path)
            uploads.append((name, bytes))
            jobData[name] = path
            info.stdin = DataReference(name: try JobPath(path).relative, path: path)
        case .named(let name, let path):
            _ = try DataName(name)
            info.stdin = DataReference(name: name, path: path ?? "stdin")
            info.stdinIsNamed = true
        }
        for (path, bytes) in self.jobData.sorted(by: { $0.key < $1.key }) {
            let name = try own(path)
            uploads.append((name, bytes))
            jobData[name] = path
        }
        info.jobData = jobData
        info.namedData = namedData
        info.directories = directories
        info.args = args
        info.env = env
        info.zipResults = zipResults
        info.namedResults = namedResults
        info.capabilities = capabilities
        info.resultAddr = resultAddr
        info.delete = delete
        info.emergency = emergency
        return (info, uploads)
    }
}
