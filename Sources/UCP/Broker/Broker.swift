import Causal
import CoreMetrics
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// The broker's logic: executors and datastores, jobs and their dispatch, data and results.
/// ``BrokerAPI`` puts it on HTTP; ``BrokerNode`` runs both.
///
/// State lives in a ``BrokerStore``; every job and result event is stamped with the broker's
/// ``NodeClock`` (a member clock named by the broker's id) and logged. Every outgoing call goes
/// through one ``NodeHTTPClient``, so it carries the clock.
///
/// Rules beyond UCP's:
/// - A job is recorded *before* it is sent to an executor, so its result can never arrive at a
///   broker that does not know where it goes; a result for an unknown job is 404.
/// - A `wait_for` naming a job never submitted is refused at submission (404); a job waiting for
///   a job deleted before it was done waits until deleted itself. Waiting never blocks others.
/// - Queued jobs are dispatched independently by a background loop (at most
///   ``BrokerConfiguration/maxConcurrentDispatches`` at once); a job no executor can take stays
///   queued and is retried every tick without holding up the others. An executor that answers an
///   error or cannot be reached is skipped for another capable one.
/// - Failure detection (``FailureDetector``): an executor silent for
///   ``BrokerConfiguration/suspectAfter`` is suspected (it keeps its jobs but gets no new ones
///   until it beats again); one silent for ``BrokerConfiguration/failAfter`` is failed (it must
///   register again) and its assigned jobs are redeployed to other executors. A job is never
///   assigned to an executor that is no longer active, even one that failed while the job was
///   being sent to it (that executor is told to drop the job). A restarted broker gives every
///   executor a fresh `failAfter` from its start, since it could not hear heartbeats while it
///   was down.
/// - Results are first come, first served (``ResultLedger``): the first result for a job is
///   accepted, every later one from another executor is recorded and refused (409) before any of
///   it is forwarded or stored; a `done` from an executor whose result was refused changes
///   nothing.
///
/// Thread-safe.
public final class Broker: Sendable {
    /// The broker's id (its clock entry and zeroconf instance name).
    public let id: UUID
    /// Its state.
    let store: BrokerStore
    /// Its clock.
    public let clock: NodeClock
    /// The client for every call to another node.
    public let client: NodeHTTPClient
    /// Its metrics.
    public let metrics: NodeMetrics
    /// Its configuration.
    public let configuration: BrokerConfiguration
    /// Its first-come-first-served result ledger, kept in `store`.
    public let ledger: ResultLedger
    let logger: Logger
    let now: @Sendable () -> Double
    let startedAt: Double
    let dispatch = Mutex(DispatchState())
    /// Wakes the maintenance loop when something changed (``markDirty()``).
    let changes = Wakeup()
    /// The executors found suspected by the last failure detection pass.
    let suspects = Mutex<Set<UUID>>([])
    let gauges: Gauges
    /// The federation this broker belongs to, once attached.
    let federationLink = Mutex<BrokerFederation?>(nil)
    /// The emergency mode as this broker knows it.
    let emergency = Mutex(EmergencyMode())

    struct DispatchState {
        /// Jobs being sent to an executor right now.
        var inFlight: Set<UUID> = []
        /// When a job that found no executor may be tried again.
        var retryAt: [UUID: Double] = [:]
        /// Per executor, the jobs being sent to it now, each holding a slot of its window.
        var sending: [UUID: Int] = [:]
        /// Something changed: run a dispatch pass and refresh the metrics soon.
        var dirty = true
        /// The clock last saved.
        var savedClock: [String: UInt64] = [:]
    }

    struct Gauges: Sendable {
        let jobs: [JobState: Gauge]
        let executors: Gauge
        let datastores: Gauge
        let queueDepth: Gauge
        let clockWidth: Gauge
        let emergencyLevel: Gauge
        let executorHeartbeats: Counter
        let datastoreHeartbeats: Counter

        init(_ metrics: NodeMetrics) {
            jobs = Dictionary(
                uniqueKeysWithValues: JobState.allCases.map {
                    ($0, metrics.gauge("ucp_jobs", [("state", $0.rawValue)]))
                })
            executors = metrics.gauge("ucp_executors")
            datastores = metrics.gauge("ucp_datastores")
            queueDepth = metrics.gauge("ucp_queue_depth")
            clockWidth = metrics.gauge("ucp_clock_width")
            emergencyLevel = metrics.gauge("ucp_emergency_level")
            executorHeartbeats = metrics.counter("ucp_heartbeats_total", [("role", "executor")])
            datastoreHeartbeats = metrics.counter("ucp_heartbeats_total", [("role", "datastore")])
        }
    }

    /// A broker over `store`, whose id and clock it takes from the store (or from
    /// `configuration.id` for a new store).
    ///
    /// - Throws: ``BrokerStoreError`` when the store cannot tell its identity.
    public init(
        configuration: BrokerConfiguration, store: BrokerStore, logger: Logger = Logger(label: "ucp.broker"),
        metrics: NodeMetrics = NodeMetrics(), now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }
    ) throws(BrokerStoreError) {
        let (id, saved) = try store.identity(proposed: configuration.id)
        // Bodies a killed broker was keeping (Broker+Data's spool) belong to requests that died with it.
        try? FileManager.default.removeItem(atPath: configuration.rootdir + "/spool")
        self.id = id
        self.store = store
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
        self.now = now
        self.startedAt = now()
        self.clock = NodeClock(nodeID: id.ucpString, role: .member, clock: saved)
        self.client = NodeHTTPClient(clock: clock, auth: configuration.auth, defaultTimeout: configuration.callTimeout)
        self.gauges = Gauges(metrics)
        self.ledger = ResultLedger(store: store, metrics: metrics)
        dispatch.withLock { $0.savedClock = saved }
        if let notice = try? store.emergencyNotice() { emergency.withLock { _ = $0.apply(notice) } }
    }

    /// The federation this broker belongs to, if any.
    public var federation: BrokerFederation? { federationLink.withLock { $0 } }

    /// Makes this broker a member of `federation` (once, before it serves).
    public func attach(_ federation: BrokerFederation) {
        federationLink.withLock { $0 = federation }
    }

    /// The broker's clock entry name.
    public var nodeID: String { clock.nodeID }

    /// UCP's zeroconf instance name of this broker.
    public var instanceName: String { NodeRoutes.instanceName(role: "broker", id: nodeID) }

    /// Asks the background loop for a dispatch pass and a metrics refresh.
    func markDirty() {
        dispatch.withLock { $0.dirty = true }
        changes.signal()
    }

    /// True when a node last heard of at `time` has not failed (it may be suspected).
    func isAlive(lastHeard time: Double, at moment: Double) -> Bool {
        failureDetector.liveness(lastHeard: time, at: moment) != .failed
    }

    // MARK: - Background loop

    /// Runs the failure detection and dispatch loop until the task is cancelled or the service group shuts
    /// down gracefully; dispatches still running are awaited (each is bounded by
    /// ``BrokerConfiguration/callTimeout`` per executor tried), then the clock is saved.
    ///
    /// Event-driven: between two failure-detection ticks the loop sleeps until ``markDirty()``
    /// (a submission, a completion, a registration, a peer's rows) or a graceful shutdown wakes it.
    public func runMaintenance() async {
        await withGracefulShutdownHandler {
            await maintain()
        } onGracefulShutdown: { [changes] in
            changes.signal()
        }
        saveClock()
    }

    private func maintain() async {
        var lastTick = -Double.infinity
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                let moment = now()
                let dirty = dispatch.withLock { state in
                    defer { state.dirty = false }
                    return state.dirty
                }
                let tick = moment - lastTick >= configuration.tickInterval.seconds
                if tick {
                    lastTick = moment
                    detectFailures()
                }
                if tick || dirty {
                    for job in jobsToDispatch(at: moment) {
                        group.addTask { await self.dispatchQueued(job) }
                    }
                    refreshMetrics()
                    saveClock()
                }
                let interval = configuration.tickInterval.seconds
                let untilTick = min(max(lastTick + interval - now(), 0.001), interval)
                await changes.wait(atMost: .milliseconds(Int(untilTick * 1000)))
            }
        }
    }

    /// Queued jobs that are neither being dispatched nor waiting for a retry, marked in flight.
    ///
    /// The queue is read under the lock: a job that `submit` assigns and releases between a
    /// read outside it and the in-flight check would otherwise be sent a second time.
    private func jobsToDispatch(at moment: Double) -> [JobRecord] {
        let level = emergency.withLock { $0.level }
        return dispatch.withLock { state in
            let free = configuration.maxConcurrentDispatches - state.inFlight.count
            guard free > 0 else { return [] }
            let queued: [JobRecord]
            do {
                // Enough rows to fill the free slots past the jobs that are in flight or waiting for
                // a retry; reading (and decoding) the whole queue on every pass would cost the
                // broker most of its time when thousands of jobs wait.
                let limit = min(1000, free + state.inFlight.count + state.retryAt.count)
                queued = try store.queuedJobs(limit: limit, minimumLevel: level)
            } catch {
                logger.error("cannot read the queue: \(error)")
                return []
            }
            var chosen: [JobRecord] = []
            for job in queued where state.inFlight.count < configuration.maxConcurrentDispatches {
                guard !state.inFlight.contains(job.id), (state.retryAt[job.id] ?? 0) <= moment else { continue }
                state.inFlight.insert(job.id)
                chosen.append(job)
            }
            return chosen
        }
    }

    private func dispatchQueued(_ job: JobRecord) async {
        var outcome = await send(job)
        if case .noCapableExecutor = outcome, delegate(job) { outcome = .gone }
        dispatch.withLock { state in
            state.inFlight.remove(job.id)
            switch outcome {
            case .assigned, .gone, .busy: state.retryAt[job.id] = nil
            case .noCapableExecutor, .refused: state.retryAt[job.id] = now() + configuration.tickInterval.seconds
            }
            state.dirty = state.dirty || outcome.isAssigned
        }
    }

    /// Updates the gauges from the store.
    func refreshMetrics() {
        do {
            let counts = try store.jobCounts()
            for (state, gauge) in gauges.jobs { gauge.record(counts[state] ?? 0) }
            gauges.queueDepth.record(counts[.queued] ?? 0)
            let moment = now()
            gauges.executors.record(try liveExecutors(at: moment).count)
            gauges.datastores.record(try liveDatastores(at: moment).count)
            gauges.clockWidth.record(clock.width)
        } catch {
            logger.error("cannot refresh metrics: \(error)")
        }
    }

    /// Saves the clock when it moved since it was last saved.
    func saveClock() {
        let current = clock.now().clock
        let changed = dispatch.withLock { state in
            guard state.savedClock != current else { return false }
            state.savedClock = current
            return true
        }
        guard changed else { return }
        do {
            try store.saveClock(current)
        } catch {
            logger.error("cannot save the clock: \(error)")
        }
    }

    /// The executors not silent for longer than `failAfter` at `moment` (suspected ones included).
    func liveExecutors(at moment: Double) throws(BrokerStoreError) -> [ExecutorEntry] {
        try store.executors().filter { isAlive(lastHeard: $0.lastHeartbeat, at: moment) }
    }

    /// The datastores not silent for longer than `failAfter` at `moment`.
    func liveDatastores(at moment: Double) throws(BrokerStoreError) -> [DatastoreEntry] {
        try store.datastores().filter { isAlive(lastHeard: $0.lastSeen, at: moment) }
    }

    /// Closes the connections and saves the clock; call once, after the loop and the server
    /// stopped. The store is closed by its owner.
    public func shutdown() async {
        saveClock()
        await client.shutdown()
    }
}
