import AsyncHTTPClient
import Causal
import Foundation
import NIOCore
import NIOHTTP1

extension Broker {
    /// Stores an upload (a multipart body with a `data` field) as `name` on a live datastore
    /// with more free bytes than the upload, chosen at random, and records where it went.
    ///
    /// The body is read to its end first (``SpooledBody``: in memory when small, else in the
    /// spool folder), so nothing is stored from a body cut off mid-way, the request's body has
    /// one reader, and a call the datastore's connection dropped can be sent again.
    ///
    /// `<job_id>/result` of a known job is that job's result (an executor stores it so when the
    /// job has no `result_addr`, or when delivering it failed): it must be a whole result zip and
    /// goes through the ``ResultLedger`` first, with `cause` naming the sender, as
    /// ``deliverResult(of:body:contentType:contentLength:cause:)``.
    ///
    /// - Throws: ``BrokerError`` 400 for a body that is not multipart or was cut off (and, for a
    ///   result, one that is not a whole zip), 413 past ``BrokerConfiguration/maxUploadBytes``,
    ///   409 for a result the ledger refused, 503 when no datastore has room, the datastore's
    ///   400/409/413 as they are, 502 for any other datastore failure.
    public func storeData<Body: AsyncSequence & Sendable>(
        _ name: DataName, body: Body, contentType: String?, contentLength: Int64?, cause: Dot? = nil
    ) async throws where Body.Element == ByteBuffer {
        let contentType = try Self.multipartType(contentType)
        let kept = try await keep(body, contentLength: contentLength)
        let segments = name.segments
        if segments.count == 2, segments[1] == "result", let id = UUID(uuidString: String(segments[0])),
            let job = try? store.job(id)
        {
            try await verifyResult(kept, contentType: contentType, of: id)
            guard try claimResult(of: job, sender: cause) else { return }
            try await place(name, body: kept, contentType: contentType)
            try? store.log(JobEvent(jobID: id, kind: .resultStored, stamp: clock.event(), cause: cause))
            return
        }
        try await place(name, body: kept, contentType: contentType)
    }

    /// Stores `body` as `name` on a datastore with room, as ``storeData(_:body:contentType:contentLength:cause:)``
    /// does, without asking the ledger.
    func place(_ name: DataName, body: SpooledBody, contentType: String) async throws {
        let datastore = try await datastoreWithRoom(for: body.count)
        try await pass(
            body, to: datastore.address, path: "/data/" + Self.pathEncoded(name.rawValue), contentType: contentType)
        try store.setLocation(name.rawValue, datastore: datastore.id)
    }

    /// The answer of the datastore that holds `name`, its body still streaming: the recorded
    /// location first, then every other live datastore (whose answer updates the location).
    ///
    /// - Throws: ``BrokerError`` 404 "Data location not known" when no datastore has it.
    public func fetchData(_ name: DataName, jobID: UUID? = nil) async throws(BrokerError) -> HTTPClientResponse {
        let recorded = try? store.location(name.rawValue)
        var datastores = (try? liveDatastores(at: now())) ?? []
        if let recorded, let index = datastores.firstIndex(where: { $0.id == recorded }) {
            datastores.insert(datastores.remove(at: index), at: 0)
        }
        let path = "/data/" + Self.pathEncoded(name.rawValue)
        for datastore in datastores {
            var request = HTTPClientRequest(url: NodeHTTPClient.url(datastore.address, path))
            request.method = .GET
            let response: HTTPClientResponse
            do {
                response = try await client.stream(request, timeout: configuration.transferTimeout)
            } catch {
                logger.info(
                    "datastore unreachable", metadata: ["datastore": "\(datastore.address)", "error": "\(error)"])
                continue
            }
            guard response.status == .ok else {
                _ = try? await response.body.collect(upTo: 1 << 16)
                if datastore.id == recorded { try? store.removeLocation(name.rawValue) }
                continue
            }
            if datastore.id != recorded { try? store.setLocation(name.rawValue, datastore: datastore.id) }
            return response
        }
        logger.error("could not find the location of \(name.rawValue)")
        throw BrokerError(.notFound, "Data location not known")
    }

    /// Every name on every live datastore that starts with `prefix` (one trailing `*` is a glob
    /// and is dropped), sorted, without duplicates.
    ///
    /// - Throws: ``BrokerError`` 502 when a datastore fails to answer.
    public func listData(prefix: String) async throws(BrokerError) -> [String] {
        let prefix = prefix.hasSuffix("*") ? String(prefix.dropLast()) : prefix
        var names = Set<String>()
        for datastore in (try? liveDatastores(at: now())) ?? [] {
            do {
                if prefix.isEmpty {
                    names.formUnion(try await client.decode([String].self, .GET, datastore.address, "/list"))
                    continue
                }
                var page = 1
                while true {
                    let found = try await client.decode(
                        DataPage.self, .GET, datastore.address,
                        "/list/\(Self.pathEncoded(prefix))?page=\(page)&size=100")
                    names.formUnion(found.items)
                    if found.items.isEmpty || page >= found.pages { break }
                    page += 1
                }
            } catch {
                throw BrokerError(.badGateway, "cannot list the data of datastore \(datastore.address): \(error)")
            }
        }
        return names.sorted()
    }

    /// Delivers the result of job `id` (a multipart body with a `data` field): to the client at
    /// the job's `result_addr` (`PUT /result/{job_id}`), or, when its host is empty, to a
    /// datastore as `<job_id>/result`. The event is stamped and logged.
    ///
    /// Exactly once, as far as the broker can make it so:
    /// - The body is read to its end and checked first: a multipart body whose `data` field is a
    ///   zip that reads whole. A result cut off mid-way (its executor was killed while sending)
    ///   is answered 400 and changes nothing; the ledger never sees it.
    /// - Then the ``ResultLedger`` decides, with `cause` (the request's dot) naming the sender: a
    ///   result refused there is never forwarded or stored (409). A result accepted stays
    ///   accepted when its delivery fails; the same executor sending it again (or storing it as
    ///   `<job_id>/result`) is that result retried.
    /// - A delivery is logged (durably, before the sender is answered) once it succeeded; the
    ///   accepted executor sending the result again afterwards (it never saw the answer: the
    ///   broker restarted, say) is answered 200 and nothing is sent a second time. The one case
    ///   left open: the broker stops after the client took the result and before the log is
    ///   written; the resent result then reaches the client again, and ``ResultListener`` drops
    ///   it.
    ///
    /// - Throws: ``BrokerError`` 404 for a job never submitted (a result is never dropped with
    ///   a 200); 400 for a result that is not whole; 409 with the accepted entry when another
    ///   executor's result came first; 502 when the client or datastore failed (the caller keeps
    ///   the result and may store it itself, as UCP's executor does); 503 when no datastore has
    ///   room.
    public func deliverResult<Body: AsyncSequence & Sendable>(
        of id: UUID, body: Body, contentType: String?, contentLength: Int64?, cause: Dot? = nil
    ) async throws where Body.Element == ByteBuffer {
        let job = try self.job(id)
        let contentType = try Self.multipartType(contentType)
        let kept = try await keep(body, contentLength: contentLength)
        try await verifyResult(kept, contentType: contentType, of: id)
        guard try claimResult(of: job, sender: cause) else { return }
        let key = id.ucpString
        if job.info.resultAddr.isUnset {
            let name: DataName
            do {
                name = try DataName(key + "/result")
            } catch {
                throw BrokerError(.internalError, "\(error)")
            }
            try await place(name, body: kept, contentType: contentType)
            try? store.log(JobEvent(jobID: id, kind: .resultStored, stamp: clock.event(), cause: cause))
        } else {
            do throws(BrokerError) {
                try await pass(kept, to: job.info.resultAddr, path: "/result/\(key)", contentType: contentType)
            } catch {
                logger.error("could not deliver the result of job \(key) to \(job.info.resultAddr): \(error.detail)")
                throw error.kind == .tooLarge
                    ? error
                    : BrokerError(
                        .badGateway, "could not deliver the result to \(job.info.resultAddr): \(error.detail)")
            }
            try? store.log(JobEvent(jobID: id, kind: .resultForwarded, stamp: clock.event(), cause: cause))
        }
        markDirty()
    }

    // MARK: - Internals

    /// Reads `body` to its end (``SpooledBody``), checking it against `contentLength`.
    ///
    /// - Throws: ``BrokerError`` 413 past ``BrokerConfiguration/maxUploadBytes``, 400 for a body
    ///   cut off or broken off, 500 when the spool folder cannot be written.
    func keep<Body: AsyncSequence & Sendable>(_ body: Body, contentLength: Int64?) async throws(BrokerError)
        -> SpooledBody
    where Body.Element == ByteBuffer {
        do {
            return try await SpooledBody.receive(
                body, expected: contentLength, limit: configuration.maxUploadBytes,
                folder: configuration.rootdir + "/spool")
        } catch {
            switch error {
            case .tooLarge: throw BrokerError(.tooLarge, error.description)
            case .truncated, .interrupted: throw BrokerError(.badRequest, error.description)
            case .storage: throw BrokerError(.internalError, error.description)
            }
        }
    }

    /// Checks that `body` is a whole result of job `id`.
    ///
    /// - Throws: ``BrokerError`` 400 naming what is wrong.
    func verifyResult(_ body: SpooledBody, contentType: String, of id: UUID) async throws(BrokerError) {
        do {
            try await body.verifyResult(contentType: contentType)
        } catch {
            logger.info("result refused as incomplete", metadata: ["job": "\(id.ucpString)", "why": "\(error)"])
            throw BrokerError(.badRequest, error.description)
        }
    }

    /// Asks the ledger about a result for `job` sent by `sender` (the request's dot; without one,
    /// the job's assigned executor). True when the result is to be delivered: accepted now, or
    /// retried by the accepted executor and not yet delivered; false when that result was
    /// delivered already. When refused, throws 409 with the accepted entry.
    func claimResult(of job: JobRecord, sender: Dot?) throws -> Bool {
        let executor = sender.map { UUID(uuidString: $0.node) } ?? job.executorID
        let claim = LedgerEntry(jobID: job.id, executor: executor, dot: sender, stamp: clock.event(), at: now())
        let verdict = try ledger.decide(claim)
        let key = job.id.ucpString
        switch verdict {
        case .accepted(let entry):
            let executor = entry.executor.map { $0.ucpString } ?? "unknown"
            logger.debug("result accepted", metadata: ["job": "\(key)", "executor": "\(executor)"])
            if let winner = entry.executor { withdraw(job.id, except: winner) }
            return true
        case .retried:
            if (try? store.resultDelivered(job.id)) == true {
                logger.info(
                    "accepted result sent again after its delivery: not delivered twice", metadata: ["job": "\(key)"])
                return false
            }
            logger.info("accepted result sent again", metadata: ["job": "\(key)"])
            return true
        case .rejected(let rejection, let accepted):
            logger.info(
                "result refused", metadata: ["job": "\(key)", "sender": "\(sender?.description ?? "unknown")"])
            throw BrokerError(.conflict, rejection.reason, accepted: accepted)
        }
    }

    /// Tells the executor job `id` is assigned to now, when it is not `winner`, to drop the job:
    /// another executor's result for it was accepted (one that had been declared failed and came
    /// back, say), so the rerun would only produce a result the ledger refuses. In the background;
    /// a failure is logged.
    func withdraw(_ id: UUID, except winner: UUID) {
        guard let job = try? store.job(id), let running = job.executorID, running != winner,
            let executor = try? store.executors().first(where: { $0.id == running })
        else { return }
        let key = id.ucpString
        logger.info(
            "withdrawing a job whose result came from another executor",
            metadata: ["job": "\(key)", "executor": "\(running.ucpString)"])
        Task {
            do {
                try await client.call(.DELETE, executor.record.address, "/job/\(key)")
            } catch {
                logger.info("executor did not drop a withdrawn job", metadata: ["job": "\(key)", "error": "\(error)"])
            }
        }
    }

    /// A live datastore with more than `bytes` free, chosen at random among those that do.
    func datastoreWithRoom(for bytes: Int64) async throws(BrokerError) -> DatastoreEntry {
        let datastores = (try? liveDatastores(at: now())) ?? []
        let client = self.client
        let roomy = await withTaskGroup(of: DatastoreEntry?.self) { group in
            for datastore in datastores {
                group.addTask {
                    guard let free = try? await client.decode(Int.self, .GET, datastore.address, "/free") else {
                        return nil
                    }
                    return Int64(free) > bytes ? datastore : nil
                }
            }
            var found: [DatastoreEntry] = []
            for await datastore in group { if let datastore { found.append(datastore) } }
            return found
        }
        guard let chosen = roomy.randomElement() else {
            logger.error("could not find a datastore able to hold \(bytes) bytes")
            throw BrokerError(.unavailable, "No capable datastore")
        }
        return chosen
    }

    /// Sends `body` with `PUT path` to the node at `address` and checks the answer; a call the
    /// connection dropped before an answer is sent again from the kept bytes (a `PUT` of the same
    /// bytes: the datastore stores them again, and a client drops a result it has).
    func pass(_ body: SpooledBody, to address: Address, path: String, contentType: String) async throws(BrokerError) {
        let url = NodeHTTPClient.url(address, path)
        var request = HTTPClientRequest(url: url)
        request.method = .PUT
        request.headers.add(name: "Content-Type", value: contentType)
        request.body = body.requestBody
        let response: HTTPClientResponse
        do {
            response = try await client.stream(request, timeout: configuration.transferTimeout)
        } catch {
            throw BrokerError(.badGateway, error.description)
        }
        guard response.status.code < 400 else {
            throw BrokerError(calling: await NodeHTTPClient.failure(response, url: url))
        }
        _ = try? await response.body.collect(upTo: 1 << 20)
    }

    /// `contentType` when it is multipart/form-data with a boundary.
    static func multipartType(_ contentType: String?) throws(BrokerError) -> String {
        guard let contentType, contentType.lowercased().hasPrefix("multipart/form-data"),
            contentType.contains("boundary=")
        else {
            throw BrokerError(.badRequest, "expected a multipart/form-data body with a boundary and a field named data")
        }
        return contentType
    }

    /// `name` with everything but unreserved characters and `/` percent-encoded, for a URL path.
    static func pathEncoded(_ name: String) -> String {
        name.addingPercentEncoding(withAllowedCharacters: unreserved) ?? name
    }

    private static let unreserved = CharacterSet(
        charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/")
}
