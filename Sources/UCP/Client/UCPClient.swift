import Causal
import Foundation
import Logging

/// A client of a UCP broker: stores, fetches and lists data, submits jobs and waits for stored
/// results. Every request carries the client's clock (`X-UCP-Clock`, `X-UCP-Dot`).
///
/// Thread-safe. Call ``shutdown()`` before releasing it.
public final class UCPClient: Sendable {
    /// The broker called.
    public let broker: Address
    /// The client's clock (dotted).
    public let clock: NodeClock
    /// The HTTP client.
    public let http: NodeHTTPClient
    private let logger: Logger

    /// A client of the broker at `broker`; `clock` defaults to a dotted clock named
    /// `client-<uuid>`; with `auth`, its calls prove membership of the cluster.
    public init(
        broker: Address, clock: NodeClock? = nil, auth: ClusterAuth? = nil, logger: Logger = Logger(label: "ucp.client")
    ) {
        self.broker = broker
        self.clock = clock ?? NodeClock(nodeID: "client-" + UUID().ucpString, role: .dotted)
        self.http = NodeHTTPClient(clock: self.clock, auth: auth)
        self.logger = logger
    }

    /// Closes the connections.
    public func shutdown() async {
        await http.shutdown()
    }

    // MARK: - Data

    /// Stores `bytes` as `name` (`PUT /data/{name}`).
    ///
    /// - Throws: ``InvalidName``, or ``NodeCallError`` (503 when no datastore has room).
    public func put(name: String, bytes: [UInt8]) async throws {
        let name = try DataName(name)
        try await http.upload(.PUT, broker, UCPPaths.data(name.rawValue), bytes: bytes, filename: String(name.lastSegment))
    }

    /// Stores the file at `filePath` as `name`, streaming it.
    ///
    /// - Throws: ``InvalidName``, or ``NodeCallError``.
    public func put(name: String, filePath: String) async throws {
        let name = try DataName(name)
        try await http.upload(.PUT, broker, UCPPaths.data(name.rawValue), filePath: filePath)
    }

    /// The bytes of `name` (`GET /data/{name}`, with `?job_id=` when `jobID` is given), read
    /// up to `maxBytes`.
    ///
    /// - Throws: ``InvalidName``, or ``NodeCallError`` (404 unknown).
    public func get(name: String, jobID: UUID? = nil, maxBytes: Int = 256 << 20) async throws -> [UInt8] {
        let name = try DataName(name)
        return try await http.call(.GET, broker, UCPPaths.data(name.rawValue, jobID: jobID), maxBytes: maxBytes).body
    }

    /// Downloads `name` into the file at `filePath` (replaced), streaming; returns its size.
    ///
    /// - Throws: ``InvalidName``, or ``NodeCallError``.
    @discardableResult
    public func download(name: String, to filePath: String, jobID: UUID? = nil) async throws -> Int64 {
        let name = try DataName(name)
        return try await http.download(broker, UCPPaths.data(name.rawValue, jobID: jobID), to: filePath)
    }

    /// The names that start with `prefix` (`GET /list/data/{prefix}`).
    ///
    /// - Throws: ``NodeCallError``.
    public func list(prefix: String) async throws -> [String] {
        try await http.decode([String].self, .GET, broker, UCPPaths.listData(prefix))
    }

    // MARK: - Jobs

    /// Submits `job` as UCP's client does: uploads the job's own data (module, stdin, job data;
    /// see ``JobSubmission/jobInfo()``), then `PUT /job/submit/{job_id}` with
    /// `{"job_info": ..., "wait_for": [...]}`. Returns the job's id.
    ///
    /// - Throws: ``InvalidName`` for a bad path or name; ``NodeCallError`` when an upload or the
    ///   submission fails (the broker answers 503 when no executor can run the job);
    ///   ``SubmissionError`` when the broker answers another id.
    @discardableResult
    public func submit(_ job: JobSubmission) async throws -> UUID {
        let (info, uploads) = try job.jobInfo()
        for upload in uploads {
            try await http.upload(
                .PUT, broker, UCPPaths.data(upload.name), bytes: upload.bytes,
                filename: String(upload.name.split(separator: "/").last ?? "data"))
        }
        let answer = try await http.call(
            .PUT, broker, UCPPaths.jobSubmit(job.jobID), json: JobSubmitBody(jobInfo: info, waitFor: job.waitFor))
        let answered = (try? UCPJSON.decode(String.self, from: Data(answer.body))).flatMap(UUID.init(uuidString:))
        guard answered == job.jobID else {
            throw SubmissionError(jobID: job.jobID, answer: answer.text)
        }
        logger.info("submitted job", metadata: ["job": "\(job.jobID.ucpString)"])
        return job.jobID
    }

    /// The result zip of a job whose `result_addr` is unset, which the executor stores as
    /// `<job_id>/result`: polls `GET /data/<job_id>/result?job_id=` with backoff (from 50 ms to
    /// 2 s apart) until it is there or `timeout` has passed.
    ///
    /// - Throws: ``ResultTimeout``; ``NodeCallError`` for an answer other than 404.
    public func waitForStoredResult(jobID: UUID, timeout: Duration) async throws -> [UInt8] {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var delay = Duration.milliseconds(50)
        let name = UCPPaths.jobDataName(jobID, "result")
        while true {
            do {
                return try await http.call(.GET, broker, UCPPaths.data(name, jobID: jobID), maxBytes: 1 << 30).body
            } catch let error as NodeCallError where error.status == 404 || error.status == nil {
                guard clock.now + delay < deadline else { throw ResultTimeout(jobID: jobID, timeout: timeout) }
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(2))
            }
        }
    }
}

/// The broker accepted a submission under another id than the one sent.
public struct SubmissionError: Error, Hashable, CustomStringConvertible {
    /// The id sent.
    public var jobID: UUID
    /// What the broker answered.
    public var answer: String

    /// One line.
    public var description: String {
        "the broker answered \(answer.prefix(120)) to the submission of job \(jobID.ucpString)"
    }
}
