import Causal
import Foundation
import NIOHTTP1

/// What happened when the broker tried to hand a job to an executor.
enum DispatchOutcome: Sendable, Hashable {
    /// An executor accepted it.
    case assigned(UUID)
    /// No live executor meets its capabilities.
    case noCapableExecutor
    /// Every capable executor refused it or could not be reached.
    case refused(String)
    /// Every capable executor holds a full window of jobs; try again when one finishes.
    case busy
    /// The job was done or deleted meanwhile.
    case gone

    var isAssigned: Bool {
        if case .assigned = self { return true }
        return false
    }
}

extension Broker {
    /// Accepts job `id`. Without `waitFor` the job goes to a capable executor now, as UCP's
    /// does: 503 "No capable Executor" when none can take it, 503 "Failed to submit Job" when
    /// every capable one refused; the job is then forgotten. With `waitFor` (even empty) the job
    /// is queued, or waits until every job listed is done, and the id is returned at once.
    ///
    /// A `result_addr` host of `"this"` means the caller's own address (UCP's rule).
    ///
    /// - Throws: ``BrokerStoreError`` (404) when `waitFor` names unknown jobs, (409) when the id
    ///   was submitted already; ``BrokerError`` 503 as above.
    @discardableResult
    public func submit(_ id: UUID, _ submission: JobSubmitBody, cause: Dot? = nil, remoteHost: String? = nil)
        async throws -> UUID
    {
        var info = submission.jobInfo
        if info.resultAddr.host == "this", let remoteHost { info.resultAddr.host = remoteHost }
        let job = JobRecord(
            id: id, info: info, waitFor: submission.waitFor ?? [], state: .queued, submitted: clock.event())
        guard submission.waitFor == nil else {
            let state = try store.submit(job, cause: cause)
            logger.debug("job accepted", metadata: ["job": "\(id.ucpString)", "state": "\(state)"])
            markDirty()
            return id
        }
        // Claimed before it is recorded, so the background loop never sends it as well.
        dispatch.withLock { _ = $0.inFlight.insert(id) }
        defer { dispatch.withLock { _ = $0.inFlight.remove(id) } }
        try store.submit(job, cause: cause)
        let outcome = await send(job)
        markDirty()
        switch outcome {
        case .assigned, .gone, .busy:  // busy: it waits in the queue for a window slot
            return id
        case .noCapableExecutor where delegate(job):
            return id
        case .noCapableExecutor:
            try? store.refuse(id, stamp: clock.event())
            logger.error("found no executor capable to run job \(id.ucpString)")
            throw BrokerError(.unavailable, "No capable Executor")
        case .refused(let why):
            try? store.refuse(id, stamp: clock.event())
            logger.error("no executor took job \(id.ucpString): \(why)")
            throw BrokerError(.unavailable, "Failed to submit Job: \(why)")
        }
    }

    /// Sends `job` (queued) to an active capable executor chosen at random, trying the next one
    /// when an executor refuses or cannot be reached, and records the assignment. An executor
    /// that failed while the job was being sent to it does not get it (the store checks): it is
    /// told to drop the job (errors ignored) and the next one is tried.
    ///
    /// The dispatch window is an invariant: an executor never holds more than
    /// ``BrokerConfiguration/dispatchWindow`` jobs per core below HIGH, counting the jobs
    /// assigned to it and those being sent to it now. A slot is claimed (``claimWindowSlot(on:)``)
    /// before the job is sent and released once the assignment is recorded or has failed, so
    /// concurrent dispatches cannot overrun it; jobs past it wait in the broker's queue, where the
    /// most urgent go first, rather than in an executor's. HIGH and CRITICAL jobs are sent
    /// regardless. `.busy` when every capable executor's window is full.
    func send(_ job: JobRecord) async -> DispatchOutcome {
        let candidates: [ExecutorEntry]
        do {
            candidates = try activeExecutors(at: now()).filter { $0.record.curCaps.canRun(job.info.capabilities) }
                .shuffled()
        } catch {
            return .refused("\(error)")
        }
        guard !candidates.isEmpty else { return .noCapableExecutor }
        let windowed = job.emergency < .high
        var failures: [String] = []
        for executor in candidates {
            if windowed, !claimWindowSlot(on: executor) { continue }
            let outcome = await offer(job, to: executor)
            if windowed { releaseWindowSlot(on: executor) }
            switch outcome {
            case .success(let outcome): return outcome
            case .failure(let failure): failures.append(failure.description)
            }
        }
        return failures.isEmpty ? .busy : .refused(failures.joined(separator: "; "))
    }

    /// Sends `job` to `executor` and records the assignment: the outcome, or why this executor
    /// did not take it (the next one may).
    private func offer(_ job: JobRecord, to executor: ExecutorEntry) async -> Result<DispatchOutcome, OfferFailure> {
        let key = job.id.ucpString
        do {
            try await client.call(.PUT, executor.record.address, "/submit/\(key)", json: job.info)
        } catch {
            logger.info("executor did not take job", metadata: ["job": "\(key)", "error": "\(error)"])
            return .failure(OfferFailure(description: "\(error)"))
        }
        do {
            if try store.assign(job.id, to: executor.id, stamp: clock.event()) {
                logger.debug("job assigned", metadata: ["job": "\(key)", "executor": "\(executor.id.ucpString)"])
                return .success(.assigned(executor.id))
            }
        } catch {
            logger.error("cannot record the assignment of job \(key): \(error)")
        }
        if (try? store.job(job.id))?.state == .queued {
            await dropSent(job.id, from: executor)
            return .failure(
                OfferFailure(description: "executor \(executor.id.ucpString) failed while the job was sent"))
        }
        // Done or deleted while it was being sent: the executor need not keep it.
        if (try? store.job(job.id))?.state == .deleted {
            try? await client.call(.DELETE, executor.record.address, "/job/\(key)")
        }
        return .success(.gone)
    }

    /// Why one executor did not take a job.
    struct OfferFailure: Error {
        let description: String
    }

    /// Claims one of `executor`'s window slots, atomically with the check that one is free:
    /// its assigned jobs are read and the jobs being sent to it counted under one lock. False
    /// when the window is full (or the count cannot be read).
    func claimWindowSlot(on executor: ExecutorEntry) -> Bool {
        // Cores come from the executor's heartbeat: bounded before any arithmetic.
        let cores = min(max(1, executor.record.curCaps.cpuCores), 1 << 16)
        let (limit, overflow) = configuration.dispatchWindow.multipliedReportingOverflow(by: cores)
        let window = overflow ? Int.max : limit
        return dispatch.withLock { state in
            guard let held = try? store.assignedCount(of: executor.id) else { return false }
            let sending = state.sending[executor.id, default: 0]
            guard held < window, sending < window - held else { return false }
            state.sending[executor.id] = sending + 1
            return true
        }
    }

    /// Releases a slot claimed with ``claimWindowSlot(on:)``, once the assignment is recorded
    /// (it then counts among the executor's assigned jobs) or has failed.
    func releaseWindowSlot(on executor: ExecutorEntry) {
        dispatch.withLock { state in
            let left = state.sending[executor.id, default: 1] - 1
            state.sending[executor.id] = left > 0 ? left : nil
        }
    }

    /// Gives queued `job` to a connected peer broker with a capable executor (see
    /// ``BrokerFederation/delegationTarget(for:)``); false when there is none or the job is no
    /// longer queued here.
    func delegate(_ job: JobRecord) -> Bool {
        guard let federation, let peer = federation.delegationTarget(for: job) else { return false }
        do {
            guard try store.delegate(job.id, to: peer, stamp: clock.event()) else { return false }
        } catch {
            logger.error("cannot record the delegation of job \(job.id.ucpString): \(error)")
            return false
        }
        logger.info(
            "job delegated to a peer broker", metadata: ["job": "\(job.id.ucpString)", "broker": "\(peer)"])
        markDirty()
        return true
    }

    /// Marks job `id` done (its executor says so) and releases the jobs waiting for it. A `done`
    /// whose dot names an executor other than the one whose result the ledger accepted comes
    /// from an executor that lost the race: it changes nothing (and is answered as a success,
    /// as a repeated `done` is).
    ///
    /// - Throws: ``BrokerStoreError`` (404) for a job never submitted.
    public func done(_ id: UUID, cause: Dot? = nil) throws {
        if let cause, let sender = UUID(uuidString: cause.node),
            let winner = (try? store.acceptedResult(of: id))?.executor, winner != sender
        {
            logger.info(
                "ignored done from an executor whose result was refused",
                metadata: ["job": "\(id.ucpString)", "executor": "\(cause.node)"])
            return
        }
        let outcome = try store.markDone(id, stamp: { clock.event() }, cause: cause)
        if !outcome.released.isEmpty {
            logger.debug(
                "jobs released", metadata: ["released": "\(outcome.released.map { $0.ucpString })"])
        }
        dispatch.withLock { _ = $0.retryAt.removeValue(forKey: id) }
        markDirty()
    }

    /// Deletes job `id`: marks it deleted, asks every datastore to drop its data (except
    /// `<job_id>/result`) and its executor to drop it (UCP's executors delete their job folder
    /// that way, after reporting it done). The data of an unknown job is dropped
    /// too (a UCP client deletes a job whose upload failed before it was submitted).
    ///
    /// - Throws: ``BrokerError`` 404 for a job never submitted, 502 when a datastore failed to
    ///   drop the data.
    public func delete(_ id: UUID, cause: Dot? = nil) async throws {
        var job: JobRecord?
        var unknown = false
        do {
            job = try store.delete(id, stamp: clock.event(), cause: cause)
        } catch BrokerStoreError.unknownJob {
            unknown = true
        } catch {
            // Rethrown by hand: Swift 6.3.1 crashes (SILGen ownership check) when this do-catch
            // lets the other errors through by itself.
            throw error
        }
        markDirty()
        let key = id.ucpString
        var failures: [String] = []
        let datastores = (try? liveDatastores(at: now())) ?? []
        for datastore in datastores {
            do {
                try await client.call(.DELETE, datastore.address, "/job_data/\(key)")
            } catch {
                failures.append("\(error)")
            }
        }
        try? store.removeJobDataLocations(id)
        if let executorID = job?.executorID,
            let executor = try? store.executors().first(where: { $0.id == executorID })
        {
            // A 404 means the executor no longer has it; anything else is logged, not fatal: the
            // job is deleted at the broker either way.
            do {
                try await client.call(.DELETE, executor.record.address, "/job/\(key)")
            } catch let error as NodeCallError where error.status == 404 {
            } catch {
                logger.info("executor did not drop deleted job", metadata: ["job": "\(key)", "error": "\(error)"])
            }
        }
        if unknown { throw BrokerError(.notFound, "No such job") }
        if !failures.isEmpty {
            throw BrokerError(
                .badGateway, "job deleted, but its data could not be dropped: \(failures.joined(separator: "; "))")
        }
    }

    /// Job `id` as the broker knows it.
    ///
    /// - Throws: ``BrokerError`` 404 for a job never submitted, ``BrokerStoreError`` (500) when
    ///   the store cannot be read.
    public func job(_ id: UUID) throws -> JobRecord {
        guard let job = try store.job(id) else { throw BrokerError(.notFound, "No such job") }
        return job
    }
}
