import Foundation
import WasmKit

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Limits and choices of a ``JobRunner``.
public struct JobRunnerConfiguration: Sendable {
    /// Threads that run guests; at most this many jobs run at once. Default: the core count.
    public var workers: Int
    /// The time limit of a job whose spec sets none. Default 60 s.
    public var defaultTimeLimit: Duration
    /// Budget multiplier over the calibrated rate, so that calibration noise never stops a job
    /// early. Default 1.5.
    public var fuelSafetyFactor: Double
    /// A known fuel rate, or nil to measure it when the runner starts (about 0.1–0.3 s).
    public var fuelRate: FuelRate?
    /// Largest module file accepted. Default 64 MiB.
    public var maxModuleBytes: Int
    /// Largest linear memory a guest may grow to. Default 512 MiB.
    public var maxMemoryBytes: Int
    /// Largest `stdout.txt` / `stderr.txt`; a guest that writes more fails. Default 64 MiB.
    public var maxOutputBytes: Int64
    /// Most bytes of file content in a result zip. Default 1 GiB.
    public var maxResultBytes: Int64
    /// Most entries in a result zip. Default 10 000.
    public var maxResultEntries: Int
    /// Distinct modules kept parsed. Default 64.
    public var moduleCacheCapacity: Int
    /// How guest memory accesses are bounds-checked. Default `.software`: each live instance
    /// then reserves only what it uses (about 64 KiB for a small guest) instead of about 4 GiB of
    /// address space with `.mprotect`, at some cost in speed; see the README.
    public var memoryBoundsChecking: EngineConfiguration.MemoryBoundsChecking

    /// The defaults described on each property.
    public init(
        workers: Int = ProcessInfo.processInfo.activeProcessorCount, defaultTimeLimit: Duration = .seconds(60),
        fuelSafetyFactor: Double = 1.5, fuelRate: FuelRate? = nil, maxModuleBytes: Int = 64 << 20,
        maxMemoryBytes: Int = 512 << 20, maxOutputBytes: Int64 = 64 << 20, maxResultBytes: Int64 = 1 << 30,
        maxResultEntries: Int = 10_000, moduleCacheCapacity: Int = 64,
        memoryBoundsChecking: EngineConfiguration.MemoryBoundsChecking = .software
    ) {
        self.workers = workers
        self.defaultTimeLimit = defaultTimeLimit
        self.fuelSafetyFactor = fuelSafetyFactor
        self.fuelRate = fuelRate
        self.maxModuleBytes = maxModuleBytes
        self.maxMemoryBytes = maxMemoryBytes
        self.maxOutputBytes = maxOutputBytes
        self.maxResultBytes = maxResultBytes
        self.maxResultEntries = maxResultEntries
        self.moduleCacheCapacity = moduleCacheCapacity
        self.memoryBoundsChecking = memoryBoundsChecking
    }
}

/// Runs WASI jobs in-process with WasmKit, each in its folder `rootdir/<job_id>/`.
///
/// A job's guest sees `data/` as `/`, gets argv[0] = the module's file name, the spec's args and
/// environment, stdin from a file in `data/` (or an empty stdin), and writes stdout and stderr to
/// `out/stdout.txt` and `out/stderr.txt`. Afterwards the runner writes `<job_id>.zip` (stdout,
/// stderr and the `zip_results` entries) and lists the `named_results` files.
///
/// Guests run on the runner's own threads (``JobRunnerConfiguration/workers``), never on Swift's
/// cooperative pool. Time limits are fuel budgets (see ``FuelRate``) plus a deadline check in every
/// WASI call; memory is capped per guest. Each distinct module is parsed once (``ModuleCache``).
///
/// Thread-safe: `run` may be called from any task, concurrently. Call ``shutdown()`` when done.
public final class JobRunner: Sendable {
    /// Where job folders live.
    public let root: FileRoot
    /// The limits in force.
    public let configuration: JobRunnerConfiguration
    /// The fuel rate time limits are computed from.
    public let fuelRate: FuelRate
    /// The parsed-module cache.
    public let modules: ModuleCache
    let engine: Engine
    private let pool: WorkerPool

    /// A runner over `rootdir` (created if missing). Measures the fuel rate unless the
    /// configuration gives one.
    ///
    /// - Throws: ``UnsafePath`` when the root cannot be made; ``ModuleError`` when calibration fails.
    public init(rootdir: String, configuration: JobRunnerConfiguration = JobRunnerConfiguration()) throws {
        root = try FileRoot(rootdir)
        self.configuration = configuration
        engine = Engine(
            configuration: EngineConfiguration(
                memoryBoundsChecking: configuration.memoryBoundsChecking, fuelMetering: true))
        fuelRate = try configuration.fuelRate ?? FuelRate.measure(engine: engine)
        modules = ModuleCache(capacity: configuration.moduleCacheCapacity)
        pool = WorkerPool(count: max(1, configuration.workers), name: "ucp-job")
    }

    /// Creates the folder of `jobID` (`code/`, `data/`, `out/` and `directories` inside `data/`),
    /// for the caller to fill before ``run(_:)``.
    ///
    /// - Throws: ``InvalidName`` or ``UnsafePath``.
    public func prepare(jobID: String, directories: [JobPath] = []) throws -> JobFolder {
        try JobFolder(root: root, jobID: try DataName(jobID), directories: directories)
    }

    /// Runs the job `spec` describes in its folder (made if missing) and collects its results.
    ///
    /// The job's own failures (invalid module, trap, time limit, missing stdin) come back as the
    /// report's ``JobReport/outcome``, with a line about them appended to `stderr.txt`. Raising
    /// `preemption` stops the guest at its next WASI call; the report then says
    /// ``JobOutcome/preempted`` and no result zip or named results are collected.
    ///
    /// - Throws: ``InvalidName`` or ``UnsafePath`` when the job's folder cannot be made safely;
    ///   ``JobRunnerError`` when the host cannot write the job's files or its zip;
    ///   `CancellationError` after ``shutdown()``.
    public func run(_ spec: JobSpec, preemption: PreemptionFlag? = nil) async throws -> JobReport {
        let folder = try JobFolder(root: root, jobID: spec.jobID)
        return try await pool.run { [self] in
            Result { try self.runNow(spec, in: folder, preemption: preemption) }
        }.get()
    }

    /// Stops the worker threads once the jobs already queued are done; later runs throw.
    public func shutdown() {
        pool.shutdown()
    }

    deinit {
        pool.shutdown()
    }

    private func runNow(_ spec: JobSpec, in folder: JobFolder, preemption: PreemptionFlag?) throws -> JobReport {
        let id = spec.jobID.rawValue
        let stdout = open(folder.stdoutPath, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard stdout >= 0 else {
            throw JobRunnerError(jobID: id, problem: "cannot create out/stdout.txt: \(errnoText())")
        }
        defer { close(stdout) }
        let stderr = open(folder.stderrPath, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard stderr >= 0 else {
            throw JobRunnerError(jobID: id, problem: "cannot create out/stderr.txt: \(errnoText())")
        }
        defer { close(stderr) }

        let limit = spec.timeLimit ?? configuration.defaultTimeLimit
        let clock = ContinuousClock()
        let start = clock.now
        let end = execute(spec, folder: folder, stdout: stdout, stderr: stderr, limit: limit, preemption: preemption)
        let ran = clock.now - start
        let outcome: JobOutcome
        switch end {
        case .exited(let code): outcome = .exited(code: code)
        case .trapped(let message): outcome = .trapped(message: message)
        case .outOfTime: outcome = .timedOut(limit: limit, ran: ran)
        case .failed(let message): outcome = .failed(message: message)
        case .preempted: outcome = .preempted
        }
        switch outcome {
        case .preempted:
            return JobReport(
                jobID: spec.jobID, outcome: outcome, duration: ran, resultZip: folder.resultZipPath, namedResults: [],
                skipped: [])
        case .exited: break
        case .trapped(let message): append("Encountered Webassembly Trap: \(message)\n", to: stderr)
        case .timedOut: append("Time limit of \(limit) reached\n", to: stderr)
        case .failed(let message): append("Failed to run: \(message)\n", to: stderr)
        }

        let collector = ResultCollector(
            maxBytes: configuration.maxResultBytes, maxEntries: configuration.maxResultEntries)
        let skippedInZip: [String]
        do {
            skippedInZip = try collector.zip(folder, zipResults: spec.zipResults)
        } catch {
            throw JobRunnerError(jobID: id, problem: "cannot write the result zip: \(error)")
        }
        let (named, skippedNamed) = collector.namedResults(folder, spec.namedResults)
        return JobReport(
            jobID: spec.jobID, outcome: outcome, duration: ran, resultZip: folder.resultZipPath,
            namedResults: named, skipped: skippedInZip + skippedNamed)
    }

    private func execute(
        _ spec: JobSpec, folder: JobFolder, stdout: CInt, stderr: CInt, limit: Duration, preemption: PreemptionFlag?
    ) -> GuestRun.End {
        let compiled: CompiledModule
        do {
            compiled = try modules.module(for: try readModule(spec.module, in: folder))
        } catch {
            return .failed("\(error)")
        }
        var stdin: CInt
        if let path = spec.stdin {
            do {
                stdin = try openRegularFile(try folder.data.resolve(path))
            } catch {
                return .failed("stdin \(path): \(error)")
            }
        } else {
            stdin = open("/dev/null", O_RDONLY | O_CLOEXEC)
            if stdin < 0 { return .failed("cannot open /dev/null: \(errnoText())") }
        }
        defer { close(stdin) }
        var run = GuestRun(
            engine: engine, module: compiled, args: [String(spec.module.segments.last ?? "")] + spec.args,
            env: spec.env, dataFolder: folder.data.path, stdin: stdin, stdout: stdout, stderr: stderr,
            fuel: fuelRate.budget(for: limit, safetyFactor: configuration.fuelSafetyFactor),
            deadline: ContinuousClock.now + limit, maxOutputBytes: configuration.maxOutputBytes,
            maxMemoryBytes: configuration.maxMemoryBytes)
        run.preemption = preemption
        return run.run()
    }

    private func readModule(_ path: JobPath, in folder: JobFolder) throws -> [UInt8] {
        let host = try folder.code.resolve(path)
        let fd = try openRegularFile(host)
        defer { close(fd) }
        var info = stat()
        _ = fstat(fd, &info)
        let size = Int(info.st_size)
        guard size <= configuration.maxModuleBytes else {
            throw ModuleError(
                message: "module \(path) is \(size) bytes, over the limit of \(configuration.maxModuleBytes)")
        }
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let count = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, size - done, off_t(done)) }
            guard count > 0 else { throw UnsafePath(host, .system(count < 0 ? errno : EIO)) }
            done += count
        }
        return bytes
    }

    private func openRegularFile(_ host: String) throws(UnsafePath) -> CInt {
        let fd = open(host, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw UnsafePath(host, errno == ELOOP ? .symbolicLink : .system(errno)) }
        var info = stat()
        guard fstat(fd, &info) == 0, FileKind.kind(mode: info.st_mode) == .regular else {
            close(fd)
            throw UnsafePath(host, .notARegularFile)
        }
        return fd
    }

    private func append(_ text: String, to fd: CInt) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress, $0.count) }
    }

    private func errnoText() -> String { String(cString: strerror(errno)) }
}
