import Causal
import Foundation
import Logging
import Synchronization

/// The executor's logic: accepts jobs, fetches their binary, stdin and data from the broker,
/// runs them on a ``JobRunner`` and delivers their results, stamping every step with the
/// executor's clock.
///
/// A job goes `fetching` → `queued` → `running` → `delivering` → `done` (see
/// ``ExecutorJobState``). At most ``ExecutorConfiguration/workers`` jobs run at once; ready jobs
/// wait in the executor's own queue, the most urgent ``JobInfo/emergency`` level first, then in
/// order of arrival. A job's own failure (an invalid module, a trap, its time limit, data that
/// cannot be fetched) becomes an error result whose `stderr.txt` says why; the executor goes on.
///
/// Emergencies:
/// - Jobs below HIGH occupy at most `workers - ` ``ExecutorConfiguration/emergencySlots``
///   workers, so that HIGH and CRITICAL jobs find a free one.
/// - When a CRITICAL job is ready and no worker is free, the executor preempts the running job of
///   the lowest level below HIGH (among equals the most recently started; never a HIGH or
///   CRITICAL job) and starts the CRITICAL job at once, on the worker the victim frees. WasmKit
///   cannot interrupt a guest, so the victim stops at its next WASI call (``PreemptionFlag``):
///   until then the executor runs one job over `workers` (one per victim still stopping; the
///   node's runner has twice `workers` threads for them), and a compute-bound guest that makes no
///   WASI call runs on until its next call or its fuel or time limit. The victim's events say
///   `preempted`, then `requeued`: it goes back into the queue with its original arrival (ahead
///   of later jobs of its level) and later runs again from the start, with a fresh time limit;
///   files its partial run wrote in the job's folder remain. Preemption never drops a job. Metric
///   `ucp_executor_preemptions_total`.
/// - The emergency mode (``applyEmergency(_:)``, `PUT /emergency`): while it is raised at a level
///   L, no queued job below L starts (they stay queued; running ones go on); when it is cleared
///   they start again.
///
/// Delivery follows UCP's executor: named results are stored (`PUT /data/{name}`); the result
/// zip goes to `PUT /result/{job_id}` when the job has a `result_addr`, else (or when that fails)
/// it is stored as `<job_id>/result`; then `PUT /job/done/{job_id}`; then, for `delete: true`,
/// the job's folder is removed and the broker asked to delete the job's data. Every broker call
/// is retried with backoff within ``ExecutorConfiguration/retryWindow``; a result that cannot be
/// delivered is never dropped silently: it is logged, kept in the job's folder and the job's
/// state says `undelivered`. When the broker refuses the result with 409 (its first-come-first-
/// served ledger accepted another executor's result for the job), delivery stops there: the
/// event `result_refused` names the accepted executor, no "done" is reported, the folder of a
/// `delete: true` job is removed, and the job settles `superseded`.
///
/// Thread-safe.
public final class Executor: Sendable {
    /// The executor's id.
    public let id: UUID
    /// Where jobs run.
    public let runner: JobRunner
    /// The executor's clock (dotted, named by its id).
    public let clock: NodeClock
    /// Calls to the broker, stamped with ``clock``.
    public let http: NodeHTTPClient
    /// The executor's settings.
    public let configuration: ExecutorConfiguration
    let logger: Logger
    let metrics: ExecutorMetrics
    private let state = Mutex(State())
    private let settled = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))

    /// Most settled jobs whose events are kept for `GET /job/{job_id}` once their folder is gone.
    static let historyLimit = 4096

    /// An executor with id `id` running jobs on `runner` and calling the broker through `http`
    /// (whose clock becomes the executor's); metrics go to `metrics`.
    public init(
        id: UUID, configuration: ExecutorConfiguration, runner: JobRunner, http: NodeHTTPClient, metrics: NodeMetrics,
        logger: Logger
    ) {
        self.id = id
        self.configuration = configuration
        self.runner = runner
        self.http = http
        self.clock = http.clock
        self.metrics = ExecutorMetrics(metrics)
        self.logger = logger
    }

    var broker: Address { configuration.broker }

    // MARK: - Accepting and deleting jobs

    /// Accepts job `jobID`: validates every name and path in `info`, creates the job's folder and
    /// starts fetching its data; the job then queues and runs on its own.
    ///
    /// - Throws: ``ExecutorError/notAccepting`` while shutting down, ``ExecutorError/duplicateJob(_:)``,
    ///   ``ExecutorError/invalidJob(_:problem:)`` for a name or path that could leave the job's
    ///   folder (nothing is written then), ``ExecutorError/setup(_:problem:)`` when the folder
    ///   cannot be made.
    public func submit(jobID: UUID, info: JobInfo) throws(ExecutorError) {
        let spec: JobSpec
        do {
            spec = try JobSpec(jobID: jobID, info: info, timeLimit: configuration.timeLimit)
        } catch {
            throw .invalidJob(jobID, problem: "\(error)")
        }
        let downloads = try JobDownloads(jobID: jobID, info: info)
        var directories: [JobPath] = []
        for directory in info.directories {
            do {
                directories.append(try JobPath(directory))
            } catch {
                throw .invalidJob(jobID, problem: "directories: \(error)")
            }
        }
        let refusal: ExecutorError? = state.withLock { s in
            guard s.accepting else { return .notAccepting }
            if let old = s.jobs[jobID], !(old.removed && old.state.isSettled) { return .duplicateJob(jobID) }
            s.forget(jobID, metrics: metrics)
            s.arrivals += 1
            s.jobs[jobID] = Record(id: jobID, info: info, arrival: s.arrivals, state: .fetching)
            s.count(.fetching, +1, metrics)
            return nil
        }
        if let refusal { throw refusal }
        let folder: JobFolder
        do {
            folder = try runner.prepare(jobID: jobID.ucpString, directories: directories)
        } catch {
            state.withLock { $0.forget(jobID, metrics: metrics) }
            throw .setup(jobID, problem: "\(error)")
        }
        state.withLock { s in
            s.jobs[jobID]?.folder = folder
            s.event(jobID, "accepted", clock.event(), detail: info.emergency.name)
        }
        logger.info("accepted job", metadata: ["job": "\(jobID.ucpString)", "emergency": "\(info.emergency)"])
        Task { await self.fetchAndQueue(jobID, spec: spec, downloads: downloads, folder: folder) }
    }

    /// Deletes job `jobID`: a queued or finished job's folder is removed at once; a job being
    /// fetched, run or delivered is marked to be discarded (no result is sent for a job that has
    /// not finished; its folder goes when its current step ends).
    ///
    /// - Throws: ``ExecutorError/unknownJob(_:)`` when no such job is here.
    public func delete(jobID: UUID) throws(ExecutorError) {
        let (known, folder): (Bool, JobFolder?) = state.withLock { s in
            guard let record = s.jobs[jobID], !record.removed, record.state != .discarded,
                record.state != .handedBack
            else { return (false, nil) }
            let stamp = clock.event()
            switch record.state {
            case .queued:
                s.queue.removeAll { $0 == jobID }
                s.metricsQueue(metrics)
                s.event(jobID, "deleted", stamp, detail: "while queued")
                s.settle(jobID, .discarded, removed: true, metrics: metrics)
                return (true, record.folder)
            case .fetching, .running, .delivering:
                s.jobs[jobID]?.discard = true
                s.event(jobID, "deleted", stamp, detail: "while \(record.state.rawValue)")
                return (true, nil)
            case .done, .undelivered, .discarded, .handedBack, .superseded:
                s.event(jobID, "deleted", stamp)
                s.settle(jobID, record.state, removed: true, metrics: metrics)
                return (true, record.folder)
            }
        }
        guard known else { throw .unknownJob(jobID) }
        if let folder { try? folder.remove() }
        settled.continuation.yield()
        logger.info("deleted job", metadata: ["job": "\(jobID.ucpString)"])
    }

    /// The jobs on this executor (UCP's `GET /job/list`): every job accepted and not yet deleted,
    /// discarded or handed back, finished ones included until their folder is removed, in order
    /// of arrival.
    public func jobIDs() -> [UUID] {
        state.withLock { s in
            s.jobs.values.filter { !$0.removed && $0.state != .discarded && $0.state != .handedBack }
                .sorted { $0.arrival < $1.arrival }.map(\.id)
        }
    }

    /// Job `jobID`'s state and stamped events, or nil when the executor does not know it (any
    /// more).
    public func status(of jobID: UUID) -> ExecutorJobStatus? {
        state.withLock { s in
            s.jobs[jobID].map {
                ExecutorJobStatus(
                    id: $0.id, state: $0.state, outcome: $0.outcome, emergency: $0.info.emergency, events: $0.events)
            }
        }
    }

    /// This machine's capabilities now, the disk measured where jobs live.
    ///
    /// - Throws: ``CapabilitiesError`` when the machine's state cannot be read.
    public func capabilities() throws -> Capabilities {
        try Capabilities.current(diskPath: runner.root.path)
    }

    /// True while jobs are accepted (until ``shutdown(grace:)``).
    public var isAccepting: Bool { state.withLock { $0.accepting } }

    /// Jobs ready and waiting for a worker.
    public var queueDepth: Int { state.withLock { $0.queue.count } }

    // MARK: - Emergency mode

    /// The emergency mode as this executor holds it: the notice in force and every notice applied.
    public var emergencyMode: EmergencyMode { state.withLock { $0.mode } }

    /// Applies `notice` to the executor's ``EmergencyMode`` when it supersedes the notice in force
    /// (a stale notice, causally before the current one, is not applied). While the mode is
    /// raised at a level, no queued job below it starts; clearing it starts them again.
    ///
    /// - Returns: whether the notice was applied, and the notice in force afterwards.
    @discardableResult
    public func applyEmergency(_ notice: EmergencyNotice) -> (applied: Bool, current: EmergencyNotice?) {
        let (applied, current) = state.withLock { s in
            let applied = s.mode.apply(notice)
            return (applied, s.mode.current)
        }
        guard applied else {
            logger.info(
                "emergency notice not applied: the one in force supersedes it",
                metadata: ["notice": "\(notice.id.ucpString)", "origin": "\(notice.origin)"])
            return (false, current)
        }
        metrics.emergencyLevel.record(Int(notice.level?.rawValue ?? 0))
        logger.notice(
            "emergency mode \(notice.level.map { "raised at \($0)" } ?? "cleared")",
            metadata: [
                "notice": "\(notice.id.ucpString)", "origin": "\(notice.origin)",
                "reason": "\(notice.reason)", "stamp": "\(notice.stamp)",
            ])
        pump()
        return (true, current)
    }

    // MARK: - Shutdown

    /// Stops accepting jobs, hands the jobs that have not started back to the broker
    /// (`PUT /job/submit/{job_id}` with their JobInfo and an empty `wait_for`, so that it
    /// dispatches them again), lets running jobs finish and deliver their results for up to
    /// `grace`, then stops the runner. Returns true when every job settled in time.
    @discardableResult
    public func shutdown(grace: Duration) async -> Bool {
        let waiting: [UUID] = state.withLock { s in
            s.accepting = false
            let queued = s.queue
            s.queue.removeAll()
            s.metricsQueue(metrics)
            return queued
        }
        logger.info("shutting down", metadata: ["handing back": "\(waiting.count)"])
        await withTaskGroup(of: Void.self) { group in
            for jobID in waiting { group.addTask { await self.handBack(jobID) } }
        }
        let idle = await waitUntilIdle(timeout: grace)
        if !idle {
            let left = state.withLock { s in s.jobs.values.filter { !$0.state.isSettled }.map { $0.id.ucpString } }
            logger.error("shutdown grace of \(grace) over; jobs not settled", metadata: ["jobs": "\(left)"])
        }
        runner.shutdown()
        return idle
    }

    /// True when no job is being fetched, run or delivered.
    public var isIdle: Bool { state.withLock { s in s.jobs.values.allSatisfy { $0.state.isSettled } } }

    private func waitUntilIdle(timeout: Duration) async -> Bool {
        if isIdle { return true }
        let stream = settled.stream
        let idle = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await _ in stream where self.isIdle { return true }
                return false
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        return idle || isIdle
    }

    // MARK: - A job's life

    private func fetchAndQueue(_ jobID: UUID, spec: JobSpec, downloads: JobDownloads, folder: JobFolder) async {
        var downloads = downloads
        do {
            for glob in downloads.globs {
                let names = try await brokerCall("listing \(glob.prefix)* for job \(jobID.ucpString)") {
                    try await self.http.decode([String].self, .GET, self.broker, UCPPaths.listData(glob.prefix))
                }
                for problem in downloads.expand(glob, names: names) {
                    logger.warning("skipped data", metadata: ["job": "\(jobID.ucpString)", "problem": "\(problem)"])
                }
            }
            for item in downloads.items {
                if isDiscarded(jobID) { break }
                let root = item.folder == .code ? folder.code : folder.data
                let target = try root.createParents(of: item.path)
                let path = UCPPaths.data(item.name.rawValue, jobID: item.jobID)
                try await brokerCall("downloading \(item.name) for job \(jobID.ucpString)") {
                    try await self.http.download(self.broker, path, to: target)
                }
            }
        } catch {
            if isDiscarded(jobID) { return finishDiscarded(jobID) }
            state.withLock { $0.event(jobID, "fetch_failed", clock.event(), detail: "\(error)") }
            let zip = try? ErrorResult.write(in: folder, reason: "Could not fetch the job's data: \(error)")
            state.withLock { $0.jobs[jobID]?.outcome = "failed: could not fetch the job's data" }
            await deliver(jobID, zip: zip, named: [])
            return
        }
        enum Next { case queued, discard, handBack }
        let next: Next = state.withLock { s in
            guard let record = s.jobs[jobID], !record.discard else { return .discard }
            s.event(jobID, "fetched", clock.event())
            guard s.accepting else { return .handBack }
            s.jobs[jobID]?.spec = spec
            s.move(jobID, to: .queued, metrics)
            s.enqueue(jobID)
            s.metricsQueue(metrics)
            s.event(jobID, "queued", clock.event())
            return .queued
        }
        switch next {
        case .discard: finishDiscarded(jobID)
        case .handBack: await handBack(jobID)
        case .queued: pump()
        }
    }

    /// Starts queued jobs while workers are free, in queue order, within the emergency slots and
    /// the emergency mode; preempts a running job below HIGH for a CRITICAL job when none is free.
    private func pump() {
        let workers = configuration.workers
        let normalWorkers = workers - configuration.emergencySlots
        let (starts, preempted): ([(UUID, JobSpec, JobFolder, PreemptionFlag)], [(UUID, UUID)]) = state.withLock { s in
            var starts: [(UUID, JobSpec, JobFolder, PreemptionFlag)] = []
            var preempted: [(UUID, UUID)] = []
            // The queue is sorted by level, most urgent first: when its head cannot start, no
            // later job can either.
            while let jobID = s.queue.first {
                guard let record = s.jobs[jobID], let spec = record.spec, let folder = record.folder else {
                    s.queue.removeFirst()
                    continue
                }
                let level = record.info.emergency
                if let held = s.mode.level, level < held { break }
                if s.slots.count >= workers {
                    guard level == .critical, let victim = s.victim() else { break }
                    s.slots.removeValue(forKey: victim)?.flag.request()
                    s.event(victim, "preempted", clock.event(), detail: "for CRITICAL job \(jobID.ucpString)")
                    preempted.append((victim, jobID))
                } else if level < .high, s.slots.values.count(where: { $0.level < .high }) >= normalWorkers {
                    break
                }
                s.queue.removeFirst()
                s.starts += 1
                let flag = PreemptionFlag()
                s.slots[jobID] = Slot(level: level, started: s.starts, flag: flag)
                s.move(jobID, to: .running, metrics)
                s.event(jobID, "started", clock.event())
                starts.append((jobID, spec, folder, flag))
            }
            s.metricsQueue(metrics)
            return (starts, preempted)
        }
        for (victim, critical) in preempted {
            metrics.preemptions.increment()
            logger.notice(
                "preempted a job for a CRITICAL job; it stops at its next WASI call and runs again later",
                metadata: ["job": "\(victim.ucpString)", "for": "\(critical.ucpString)"])
        }
        for (jobID, spec, folder, flag) in starts {
            Task { await self.run(jobID, spec: spec, folder: folder, preemption: flag) }
        }
    }

    /// Puts a preempted job back in the queue (or discards or hands it back) once its guest stopped.
    private func requeue(_ jobID: UUID, preemption: PreemptionFlag) async {
        enum Next { case requeued, discard, handBack }
        let next: Next = state.withLock { s in
            s.release(jobID, preemption)
            guard let record = s.jobs[jobID], !record.discard else { return .discard }
            guard s.accepting else { return .handBack }
            s.move(jobID, to: .queued, metrics)
            s.enqueue(jobID)
            s.metricsQueue(metrics)
            s.event(jobID, "requeued", clock.event(), detail: "preempted; runs again from the start")
            return .requeued
        }
        logger.info("preempted job stopped", metadata: ["job": "\(jobID.ucpString)", "next": "\(next)"])
        pump()
        switch next {
        case .requeued: break
        case .discard: finishDiscarded(jobID)
        case .handBack: await handBack(jobID)
        }
    }

    private func run(_ jobID: UUID, spec: JobSpec, folder: JobFolder, preemption: PreemptionFlag) async {
        var zip: String?
        var named: [NamedResult] = []
        let outcome: String
        do {
            let report = try await runner.run(spec, preemption: preemption)
            if report.outcome == .preempted { return await requeue(jobID, preemption: preemption) }
            zip = report.resultZip
            named = report.namedResults
            outcome = report.outcome.description
            if !report.skipped.isEmpty {
                logger.warning(
                    "results left out", metadata: ["job": "\(jobID.ucpString)", "skipped": "\(report.skipped)"])
            }
        } catch {
            outcome = "failed: \(error)"
            zip = try? ErrorResult.write(in: folder, reason: "The executor could not run the job: \(error)")
        }
        let discard: Bool = state.withLock { s in
            s.release(jobID, preemption)
            s.jobs[jobID]?.outcome = outcome
            s.event(jobID, "finished", clock.event(), detail: outcome)
            return s.jobs[jobID]?.discard ?? true
        }
        logger.info("job finished", metadata: ["job": "\(jobID.ucpString)", "outcome": "\(outcome)"])
        pump()
        if discard { return finishDiscarded(jobID) }
        await deliver(jobID, zip: zip, named: named)
    }

    private func deliver(_ jobID: UUID, zip: String?, named: [NamedResult]) async {
        guard
            let info: JobInfo = state.withLock({ s in
                s.move(jobID, to: .delivering, metrics)
                return s.jobs[jobID]?.info
            })
        else { return }
        let job = jobID.ucpString
        for result in named {
            do {
                try await brokerCall("storing named result \(result.name) of job \(job)") {
                    try await self.http.upload(.PUT, self.broker, UCPPaths.data(result.name.rawValue), filePath: result.hostPath)
                }
                stamp(jobID, "named_result", detail: result.name.rawValue)
            } catch {
                stamp(jobID, "named_result_failed", detail: "\(result.name): \(error)")
            }
        }
        var delivered = false
        if let zip {
            if !info.resultAddr.isUnset {
                do {
                    try await brokerCall("sending the result of job \(job)") {
                        try await self.http.upload(.PUT, self.broker, UCPPaths.result(jobID), filePath: zip, filename: job + ".zip")
                    }
                    delivered = true
                    stamp(jobID, "result_sent", detail: "\(info.resultAddr)")
                } catch {
                    if let refusal = Self.ledgerRefusal(error) { return supersede(jobID, info: info, refusal: refusal) }
                    stamp(jobID, "result_send_failed", detail: "\(error)")
                }
            }
            if !delivered {
                do {
                    try await brokerCall("storing the result of job \(job)") {
                        try await self.http.upload(
                            .PUT, self.broker, UCPPaths.data(UCPPaths.jobDataName(jobID, "result")), filePath: zip,
                            filename: job + ".zip")
                    }
                    delivered = true
                    stamp(jobID, "result_stored", detail: UCPPaths.jobDataName(jobID, "result"))
                } catch {
                    if let refusal = Self.ledgerRefusal(error) { return supersede(jobID, info: info, refusal: refusal) }
                    stamp(jobID, "result_store_failed", detail: "\(error)")
                }
            }
        }
        guard delivered else {
            logger.error(
                "the result of a job could not be delivered; it is kept on disk",
                metadata: ["job": "\(job)", "zip": "\(zip ?? "none")"])
            return settle(jobID, .undelivered)
        }
        do {
            try await brokerCall("reporting job \(job) done") {
                try await self.http.call(.PUT, self.broker, UCPPaths.jobDone(jobID))
            }
            stamp(jobID, "done")
        } catch {
            stamp(jobID, "done_failed", detail: "\(error)")
            logger.error("job done could not be reported", metadata: ["job": "\(job)"])
            return settle(jobID, .undelivered)
        }
        let discard = state.withLock { $0.jobs[jobID]?.discard ?? false }
        if info.delete || discard {
            removeFolder(jobID)
        }
        if info.delete, configuration.deleteJobDataOnBroker {
            let short = RetryPolicy(window: min(configuration.retryWindow, .seconds(10)), maxDelay: configuration.maxRetryDelay)
            do {
                try await short.run("deleting the data of job \(job)", logger: logger, retryIf: Self.isRetryable) {
                    try await self.http.call(.DELETE, self.broker, UCPPaths.job(jobID))
                }
            } catch {
                metrics.brokerCallFailures.increment()
            }
        }
        settle(jobID, .done)
    }

    /// Settles a job whose result the broker's ledger refused: another executor's came first.
    private func supersede(_ jobID: UUID, info: JobInfo, refusal: String) {
        stamp(jobID, "result_refused", detail: refusal)
        logger.warning(
            "the broker refused the result: another executor's was accepted first",
            metadata: ["job": "\(jobID.ucpString)", "refusal": "\(refusal)"])
        let discard = state.withLock { $0.jobs[jobID]?.discard ?? false }
        if info.delete || discard { removeFolder(jobID) }
        settle(jobID, .superseded)
    }

    /// For a 409 from the broker's result ledger, a line naming the executor whose result was
    /// accepted (from the answer's `accepted_executor` and `accepted_dot`); nil for any other error.
    static func ledgerRefusal(_ error: any Error) -> String? {
        guard let call = error as? NodeCallError, call.status == 409 else { return nil }
        let object = (try? JSONSerialization.jsonObject(with: Data(call.body))) as? [String: Any] ?? [:]
        var line = "accepted executor \(object["accepted_executor"] as? String ?? "unknown")"
        if let dot = object["accepted_dot"] as? String { line += " (dot \(dot))" }
        return line + ": " + call.detail
    }

    private func handBack(_ jobID: UUID) async {
        guard let info = state.withLock({ $0.jobs[jobID]?.info }) else { return }
        let job = jobID.ucpString
        let policy = RetryPolicy(window: min(configuration.retryWindow, configuration.shutdownGrace), maxDelay: configuration.maxRetryDelay)
        do {
            try await policy.run("handing job \(job) back", logger: logger, retryIf: Self.isRetryable) {
                try await self.http.call(.PUT, self.broker, UCPPaths.jobSubmit(jobID), json: JobSubmitBody(jobInfo: info, waitFor: []))
            }
            stamp(jobID, "handed_back")
            logger.info("handed job back to the broker", metadata: ["job": "\(job)"])
        } catch {
            metrics.brokerCallFailures.increment()
            stamp(jobID, "hand_back_failed", detail: "\(error)")
            logger.error("a job could not be handed back and is lost to this executor", metadata: ["job": "\(job)"])
        }
        removeFolder(jobID)
        settle(jobID, .handedBack)
    }

    private func finishDiscarded(_ jobID: UUID) {
        stamp(jobID, "discarded")
        removeFolder(jobID)
        settle(jobID, .discarded)
    }

    // MARK: - Helpers

    private func isDiscarded(_ jobID: UUID) -> Bool {
        state.withLock { $0.jobs[jobID]?.discard ?? true }
    }

    private func stamp(_ jobID: UUID, _ event: String, detail: String? = nil) {
        state.withLock { $0.event(jobID, event, clock.event(), detail: detail) }
        metrics.clockWidth.record(clock.width)
    }

    private func removeFolder(_ jobID: UUID) {
        let folder: JobFolder? = state.withLock { s in
            s.jobs[jobID]?.removed = true
            return s.jobs[jobID]?.folder
        }
        if let folder { try? folder.remove() }
    }

    private func settle(_ jobID: UUID, _ to: ExecutorJobState) {
        state.withLock { s in
            let removed = s.jobs[jobID]?.removed ?? true
            s.settle(jobID, to, removed: removed, metrics: metrics)
        }
        settled.continuation.yield()
    }

    /// Whether a failed call is worth another attempt: no answer, a server error, or a 404,
    /// 408 or 429 (data or a job the broker may not know yet, or a busy broker).
    static func isRetryable(_ error: any Error) -> Bool {
        guard let call = error as? NodeCallError, let status = call.status else { return true }
        return status >= 500 || status == 404 || status == 408 || status == 429
    }

    /// Runs a broker call under the configured retry policy, counting failed attempts.
    @discardableResult
    func brokerCall<T: Sendable>(_ what: String, _ operation: @Sendable () async throws -> T) async throws -> T {
        let policy = RetryPolicy(window: configuration.retryWindow, maxDelay: configuration.maxRetryDelay)
        return try await policy.run(what, logger: logger, retryIf: Self.isRetryable) {
            do {
                return try await operation()
            } catch {
                metrics.brokerCallFailures.increment()
                throw error
            }
        }
    }
}

/// One job as the executor keeps it.
private struct Record {
    let id: UUID
    let info: JobInfo
    let arrival: UInt64
    var state: ExecutorJobState
    var events: [ExecutorJobEvent] = []
    var outcome: String?
    var folder: JobFolder?
    var spec: JobSpec?
    var discard = false
    var removed = false
}

/// A worker held by a running job.
private struct Slot {
    let level: EmergencyLevel
    /// Order of starting (the latest start has the largest).
    let started: UInt64
    /// Raised to preempt the run.
    let flag: PreemptionFlag
}

/// Everything the executor's lock guards.
private struct State {
    var jobs: [UUID: Record] = [:]
    /// Ready jobs: most urgent level first, then by arrival.
    var queue: [UUID] = []
    /// The workers taken, by job. A preempted job gives its slot up at once, while its guest
    /// runs on until its next WASI call.
    var slots: [UUID: Slot] = [:]
    var starts: UInt64 = 0
    var mode = EmergencyMode()
    var accepting = true
    var arrivals: UInt64 = 0
    var counts: [ExecutorJobState: Int] = [:]
    /// Settled jobs whose folder is gone, oldest first: their events are kept up to a limit.
    var history: [UUID] = []

    mutating func event(_ jobID: UUID, _ name: String, _ stamp: ClockStamp, detail: String? = nil) {
        jobs[jobID]?.events.append(ExecutorJobEvent(event: name, stamp: stamp, detail: detail))
    }

    mutating func count(_ state: ExecutorJobState, _ delta: Int, _ metrics: ExecutorMetrics) {
        counts[state, default: 0] += delta
        metrics.jobs[state]?.record(counts[state] ?? 0)
    }

    mutating func move(_ jobID: UUID, to new: ExecutorJobState, _ metrics: ExecutorMetrics) {
        guard let old = jobs[jobID]?.state, old != new else { return }
        jobs[jobID]?.state = new
        count(old, -1, metrics)
        count(new, +1, metrics)
    }

    mutating func settle(_ jobID: UUID, _ to: ExecutorJobState, removed: Bool, metrics: ExecutorMetrics) {
        move(jobID, to: to, metrics)
        guard removed, let record = jobs[jobID] else { return }
        let wasRemoved = history.contains(jobID)
        jobs[jobID]?.removed = true
        if !wasRemoved, record.state.isSettled {
            history.append(jobID)
            if history.count > Executor.historyLimit {
                let evicted = history.removeFirst()
                if let old = jobs.removeValue(forKey: evicted) { count(old.state, -1, metrics) }
            }
        }
    }

    /// Drops every trace of `jobID` (a failed set-up, or an old settled record replaced).
    mutating func forget(_ jobID: UUID, metrics: ExecutorMetrics) {
        if let old = jobs.removeValue(forKey: jobID) { count(old.state, -1, metrics) }
        history.removeAll { $0 == jobID }
        queue.removeAll { $0 == jobID }
    }

    mutating func enqueue(_ jobID: UUID) {
        guard let record = jobs[jobID] else { return }
        let level = record.info.emergency
        // After every job of a higher level and every earlier arrival of the same level (a
        // requeued job keeps its place ahead of later jobs of its level).
        let index =
            queue.firstIndex { other in
                guard let o = jobs[other] else { return false }
                return o.info.emergency < level || (o.info.emergency == level && o.arrival > record.arrival)
            } ?? queue.endIndex
        queue.insert(jobID, at: index)
    }

    /// Frees the worker of `jobID`'s run with `flag`, unless it was given up already (preempted).
    mutating func release(_ jobID: UUID, _ flag: PreemptionFlag) {
        if slots[jobID]?.flag === flag { slots[jobID] = nil }
    }

    /// The running job a CRITICAL job may preempt: the lowest level below HIGH, among equals the
    /// most recently started; nil when every running job is HIGH or CRITICAL.
    func victim() -> UUID? {
        slots.filter { $0.value.level < .high }
            .min { a, b in
                a.value.level != b.value.level ? a.value.level < b.value.level : a.value.started > b.value.started
            }?
            .key
    }

    func metricsQueue(_ metrics: ExecutorMetrics) {
        metrics.queueDepth.record(queue.count)
    }
}
