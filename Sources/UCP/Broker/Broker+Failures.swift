import Causal
import Foundation

extension Broker {
    /// The broker's failure detector: its configured thresholds, silence counted from its start.
    public var failureDetector: FailureDetector {
        FailureDetector(
            suspectAfter: configuration.suspectAfter, failAfter: configuration.failAfter, startedAt: startedAt)
    }

    /// The liveness of an executor at `moment`: `failed` once the store says so, otherwise what
    /// the detector makes of its silence.
    func liveness(of executor: ExecutorEntry, failed: Bool = false, at moment: Double) -> NodeLiveness {
        failed ? .failed : failureDetector.liveness(lastHeard: executor.lastHeartbeat, at: moment)
    }

    /// The executors that may be given new jobs at `moment`: registered and not suspected.
    func activeExecutors(at moment: Double) throws(BrokerStoreError) -> [ExecutorEntry] {
        try store.executors().filter { liveness(of: $0, at: moment) == .active }
    }

    /// Runs the failure detector over every registered executor and datastore: logs executors
    /// that became suspected; marks those silent longer than ``BrokerConfiguration/failAfter``
    /// failed and redeploys their assigned jobs (back to the queue, each with a `redeployed`
    /// event, counted in `ucp_redeployments_total`); marks silent datastores failed.
    func detectFailures() {
        let moment = now()
        let detector = failureDetector
        do {
            var failed: [UUID] = []
            var suspected: Set<UUID> = []
            for executor in try store.executors() {
                switch detector.liveness(lastHeard: executor.lastHeartbeat, at: moment) {
                case .active: break
                case .suspected: suspected.insert(executor.id)
                case .failed: failed.append(executor.id)
                }
            }
            let newlySuspected = suspects.withLock { known in
                defer { known = suspected }
                return suspected.subtracting(known)
            }
            for id in newlySuspected.sorted(by: { $0.uuidString < $1.uuidString }) {
                logger.warning(
                    "executor suspected: no new jobs until it beats again",
                    metadata: ["executor": "\(id.ucpString)"])
            }
            if !failed.isEmpty {
                let outcome = try store.failExecutors(failed) { clock.event() }
                metrics.counter("ucp_redeployments_total").increment(by: outcome.redeployed.count)
                logger.warning(
                    "executors failed: their jobs are redeployed",
                    metadata: [
                        "executors": "\(failed.map { $0.ucpString })",
                        "redeployed": "\(outcome.redeployed.map { $0.ucpString })",
                    ])
                // Their result, from the failed executor, is in: it died before saying done.
                for job in outcome.finished {
                    _ = try store.markDone(job, stamp: { clock.event() }, cause: nil)
                    logger.info(
                        "job of a failed executor done: its result was accepted",
                        metadata: ["job": "\(job.ucpString)"])
                }
                markDirty()
            }
            let gone = try store.datastores().filter {
                detector.liveness(lastHeard: $0.lastSeen, at: moment) == .failed
            }.map(\.id)
            if !gone.isEmpty {
                try store.failDatastores(gone)
                logger.warning("datastores failed", metadata: ["datastores": "\(gone.map { $0.ucpString })"])
                markDirty()
            }
        } catch {
            logger.error("failure detection failed: \(error)")
        }
    }

    /// Notes a heartbeat of executor `id`: a suspected executor is active again.
    func noteHeartbeat(of id: UUID) {
        let wasSuspected = suspects.withLock { $0.remove(id) != nil }
        if wasSuspected {
            logger.info("suspected executor is active again", metadata: ["executor": "\(id.ucpString)"])
        }
    }
}

extension Broker {
    /// Tells `executor`, which was declared failed while `job` was being sent to it, to drop
    /// the job; errors are ignored (it may be gone, or never have kept it).
    func dropSent(_ job: UUID, from executor: ExecutorEntry) async {
        logger.info(
            "executor failed while a job was sent to it; the job stays queued",
            metadata: ["job": "\(job.ucpString)", "executor": "\(executor.id.ucpString)"])
        _ = try? await client.call(.DELETE, executor.record.address, "/job/\(job.ucpString)")
    }
}
