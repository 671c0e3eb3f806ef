import Foundation

/// How an ``ExecutorNode`` is set up: `ucp executor --host ... --port ... --rootdir ...
/// --executor-id ... --broker host:port`.
public struct ExecutorConfiguration: Sendable {
    /// The address the API listens on. Default `127.0.0.1`.
    public var host: String
    /// The addresses announced to the broker in the registration's `hosts` (the broker pings
    /// them to verify the executor). Default: `[host]`.
    public var advertisedHosts: [String]
    /// The port the API listens on; 0 picks a free one. Default 8001, as UCP's demos.
    public var port: Int
    /// Where job folders live (`rootdir/<job_id>/`) and where a generated id is kept. Default
    /// `executor.d`, as UCP's.
    public var rootdir: String
    /// The executor's id; nil uses the one kept in `rootdir/executor-id`, generating and keeping
    /// one on first start, so that the id is stable across restarts.
    public var executorID: UUID?
    /// The broker it registers with and fetches data from.
    public var broker: Address
    /// Jobs that run at once. Default: the core count. The rest wait in the executor's queue.
    /// (While a preempted job is stopping, one more may run for a while: see ``Executor``.)
    public var workers: Int
    /// Workers kept for HIGH and CRITICAL jobs: jobs below HIGH occupy at most
    /// `workers - emergencySlots` workers at once. Must be at least 0 and below ``workers``
    /// (``validate()``). Default 0. `ucp executor --emergency-slots N`.
    public var emergencySlots: Int = 0
    /// Each job's time limit. Default 60 s.
    public var timeLimit: Duration
    /// Time between heartbeats. Default 60 s, as UCP's executors beat.
    public var heartbeatInterval: Duration
    /// How long a failed broker call (data, result, job done) is retried before it is given up
    /// and logged. Default 60 s.
    public var retryWindow: Duration
    /// The longest pause between two attempts of a retried call. Default 5 s.
    public var maxRetryDelay: Duration
    /// How long a graceful shutdown waits for running jobs to finish and be reported. Default 30 s.
    public var shutdownGrace: Duration
    /// After a job with `delete: true` is done, ask the broker to delete the job's data
    /// (`DELETE /job/{job_id}`), as UCP's executor does. Default true.
    public var deleteJobDataOnBroker: Bool
    /// A known fuel rate for time limits (see ``FuelRate``), or nil to measure it at start.
    public var fuelRate: FuelRate?
    /// The cluster's key: when set, the executor proves membership on its calls and requires
    /// proof on state-changing calls it serves (``ClusterAuth``). Default none, as UCP.
    public var auth: ClusterAuth? = nil

    /// A configuration; every argument but `broker` has the default its property describes.
    public init(
        host: String = "127.0.0.1", advertisedHosts: [String]? = nil, port: Int = 8001, rootdir: String = "executor.d",
        executorID: UUID? = nil, broker: Address, workers: Int = ProcessInfo.processInfo.activeProcessorCount,
        timeLimit: Duration = .seconds(60), heartbeatInterval: Duration = .seconds(60),
        retryWindow: Duration = .seconds(60), maxRetryDelay: Duration = .seconds(5),
        shutdownGrace: Duration = .seconds(30), deleteJobDataOnBroker: Bool = true, fuelRate: FuelRate? = nil,
        emergencySlots: Int = 0
    ) {
        self.host = host
        self.advertisedHosts = advertisedHosts ?? [host]
        self.port = port
        self.rootdir = rootdir
        self.executorID = executorID
        self.broker = broker
        self.workers = max(1, workers)
        self.timeLimit = timeLimit
        self.heartbeatInterval = heartbeatInterval
        self.retryWindow = retryWindow
        self.maxRetryDelay = maxRetryDelay
        self.shutdownGrace = shutdownGrace
        self.deleteJobDataOnBroker = deleteJobDataOnBroker
        self.fuelRate = fuelRate
        self.emergencySlots = emergencySlots
    }

    /// Checks the settings that must agree with each other.
    ///
    /// - Throws: ``ExecutorError/configuration(_:)`` when ``emergencySlots`` is negative or not
    ///   below ``workers``.
    public func validate() throws(ExecutorError) {
        guard emergencySlots >= 0 else {
            throw .configuration("emergency slots must not be negative (got \(emergencySlots))")
        }
        guard emergencySlots < workers else {
            throw .configuration(
                "emergency slots (\(emergencySlots)) must be fewer than workers (\(workers)), "
                    + "so that jobs below HIGH can run at all")
        }
    }

    /// The name of the file in `rootdir` that keeps a generated executor id.
    public static let idFileName = "executor-id"

    /// The executor's id: the configured one (also written to `rootdir/executor-id`), else the
    /// one kept there, else a new one, kept there.
    ///
    /// - Throws: ``ExecutorError/identity(path:problem:)`` when the file cannot be read, parsed or
    ///   written.
    public func resolveExecutorID() throws(ExecutorError) -> UUID {
        let folder: FileRoot
        do {
            folder = try FileRoot(rootdir)
        } catch {
            throw .identity(path: rootdir, problem: error.description)
        }
        let path = folder.path + "/" + Self.idFileName
        if let executorID {
            try Self.keep(executorID, at: path)
            return executorID
        }
        if FileManager.default.fileExists(atPath: path) {
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw .identity(path: path, problem: "\(error.localizedDescription)")
            }
            let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard let id = UUID(uuidString: trimmed) else {
                throw .identity(path: path, problem: "\"\(trimmed.prefix(80))\" is not a UUID")
            }
            return id
        }
        let id = UUID()
        try Self.keep(id, at: path)
        return id
    }

    private static func keep(_ id: UUID, at path: String) throws(ExecutorError) {
        do {
            try Data((id.ucpString + "\n").utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw .identity(path: path, problem: "\(error.localizedDescription)")
        }
    }
}
