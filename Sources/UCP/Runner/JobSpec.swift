import Causal
import Foundation

/// What the runner needs to run one job, every path already validated.
///
/// Build one from a ``JobInfo`` with ``init(jobID:info:timeLimit:)`` (UCP's rules for where the
/// binary and stdin live) or field by field.
public struct JobSpec: Sendable, Hashable {
    /// The job's id: the name of its folder under the runner's root (one safe segment).
    public var jobID: DataName
    /// The module file inside the job's `code/` folder; its last segment is argv[0].
    public var module: JobPath
    /// Arguments after argv[0].
    public var args: [String]
    /// The guest's environment.
    public var env: [String: String]
    /// A file inside the job's `data/` folder fed to stdin, or nil for an empty stdin.
    public var stdin: JobPath?
    /// What goes into the result zip: path in the job → path in the zip (`/` means the zip's root).
    public var zipResults: [JobPath: JobPath]
    /// What is handed back as named data: path in the job → data name. A path and a name that both
    /// end in `*` (one `*` in the path) match every regular file in that folder whose name starts
    /// with the path's last segment, as UCP's glob does.
    public var namedResults: [JobPath: String]
    /// The job's time limit; nil uses the runner's default.
    public var timeLimit: Duration?

    /// A job spec; see the properties.
    ///
    /// - Throws: ``InvalidName`` when `jobID` is not a single safe segment.
    public init(
        jobID: String, module: JobPath, args: [String] = [], env: [String: String] = [:], stdin: JobPath? = nil,
        zipResults: [JobPath: JobPath] = [.root: .root], namedResults: [JobPath: String] = [:],
        timeLimit: Duration? = nil
    ) throws(InvalidName) {
        let id = try DataName(jobID)
        if id.segments.count != 1 { throw InvalidName(jobID, .notSingleSegment) }
        self.jobID = id
        self.module = module
        self.args = args
        self.env = env
        self.stdin = stdin
        self.zipResults = zipResults
        self.namedResults = namedResults
        self.timeLimit = timeLimit
    }

    /// The spec UCP's executor derives from `info`: the binary is `code/exec.wasm` when
    /// `wasm_bin` is a bare name and `code/<path>` for a `[name, path]` pair; stdin is the file at
    /// the stdin path inside `data/` (none for `["", ""]`); results as `zip_results` and
    /// `named_results` say.
    ///
    /// - Throws: ``InvalidName`` naming the first path in `info` that could leave the job's folder.
    public init(jobID: UUID, info: JobInfo, timeLimit: Duration? = nil) throws(InvalidName) {
        let module: JobPath
        if let path = info.wasmBin.path { module = try JobPath(path) } else { module = try JobPath("exec.wasm") }
        if module.isRoot { throw InvalidName(info.wasmBin.path ?? "", .empty) }
        var stdin: JobPath?
        if let path = info.stdin.path {
            if !info.stdin.name.isEmpty { stdin = try JobPath(path) }
        } else if !info.stdin.name.isEmpty {
            stdin = try JobPath(info.stdin.name)
        }
        var zip: [JobPath: JobPath] = [:]
        for (inJob, inZip) in info.zipResults { zip[try JobPath(inJob)] = try JobPath(inZip) }
        var named: [JobPath: String] = [:]
        for (inJob, name) in info.namedResults { named[try JobPath(inJob)] = name }
        try self.init(
            jobID: jobID.ucpString, module: module, args: info.args, env: info.env, stdin: stdin,
            zipResults: zip, namedResults: named, timeLimit: timeLimit)
    }
}

/// How a job ended.
public enum JobOutcome: Sendable, Hashable, CustomStringConvertible {
    /// The guest returned from `_start` (code 0) or called `proc_exit(code)`.
    case exited(code: UInt32)
    /// The guest trapped (`unreachable`, out-of-bounds access, ...); the message is WasmKit's.
    case trapped(message: String)
    /// The guest ran out of its time budget and was stopped after `ran`.
    case timedOut(limit: Duration, ran: Duration)
    /// The job could not run: the module is not valid WebAssembly, imports something the runner
    /// does not provide, its stdin file is missing, or it wrote more output than allowed.
    case failed(message: String)
    /// The executor preempted the run for a more urgent job (``PreemptionFlag``): the guest was
    /// stopped at a WASI call. Not a result: no zip is written, and the job is to run again from
    /// the start (files the partial run wrote in its folder remain).
    case preempted

    /// True for `exited(code: 0)`.
    public var succeeded: Bool { self == .exited(code: 0) }

    /// One line, e.g. `exited with code 0`, `trapped: unreachable`.
    public var description: String {
        switch self {
        case .exited(let code): "exited with code \(code)"
        case .trapped(let message): "trapped: \(message)"
        case .timedOut(let limit, let ran): "time limit \(limit) reached after \(ran)"
        case .failed(let message): "failed: \(message)"
        case .preempted: "preempted"
        }
    }
}

/// A file of a finished job to store as named data.
public struct NamedResult: Sendable, Hashable {
    /// The file's path inside the job, as the guest sees it (e.g. `/out/a.txt`).
    public var path: String
    /// The regular file on the host, checked to lie inside the job's folder.
    public var hostPath: String
    /// The data name to store it under.
    public var name: DataName
}

/// What the runner hands back for a finished job.
public struct JobReport: Sendable {
    /// The job's id.
    public var jobID: DataName
    /// How it ended.
    public var outcome: JobOutcome
    /// Wall-clock time of the guest's run (set-up and result collection excluded).
    public var duration: Duration
    /// The result zip, `rootdir/<job_id>/<job_id>.zip` (not written for ``JobOutcome/preempted``).
    public var resultZip: String
    /// Files to store as named data.
    public var namedResults: [NamedResult]
    /// Files the collector left out, with the reason (`"data/link: symbolic link"`, ...).
    public var skipped: [String]
}

/// A failure of the host, not of the job: the job's folder or its result zip could not be
/// written. A job's own failures are ``JobOutcome`` values instead.
public struct JobRunnerError: Error, Hashable, CustomStringConvertible {
    /// The job concerned.
    public var jobID: String
    /// What failed.
    public var problem: String

    /// One line naming the job.
    public var description: String { "job \(jobID): \(problem)" }
}
