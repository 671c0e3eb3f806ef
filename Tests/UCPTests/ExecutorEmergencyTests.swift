import Causal
import Foundation
import NIOCore
import NIOHTTP1
import Testing
import UCP

@Suite("Executor emergencies: preemption, emergency slots, emergency mode, refused results", .timeLimit(.minutes(3)))
struct ExecutorEmergencyTests {
    /// Compute steps per tick of the `ticker` jobs here.
    static let work = 20_000
    /// Ticks of a ticker that runs long enough to be caught running (a few seconds).
    static let longTicks = 150
    /// Ticks of a short ticker.
    static let shortTicks = 20

    /// Runs `body` with a test broker and an executor node configured by `configure`.
    func withNode(
        _ configure: @Sendable (inout ExecutorConfiguration) -> Void = { _ in },
        _ body: @Sendable (TestBroker, Executor, Address, String) async throws -> Void
    ) async throws {
        try await withTestBroker { broker, brokerAddress in
            try await withTemporaryFolder { root in
                var configuration = try testExecutorConfiguration(broker: brokerAddress, rootdir: root + "/exec")
                configuration.timeLimit = .seconds(60)
                configure(&configuration)
                try await withExecutorNode(configuration) { node, address, _ in
                    try await body(broker, try #require(node.executor), address, root + "/exec")
                }
            }
        }
    }

    /// Submits a job running `job` at `level`.
    @discardableResult
    func submit(
        _ job: ShippedJob, level: EmergencyLevel, args: [String] = [], broker: TestBroker, to address: Address
    ) async throws -> UUID {
        let id = UUID()
        var info = try shippedJobInfo(job, id, broker: broker, args: args)
        info.emergency = level
        #expect(try await submitToExecutor(address, id, info).0 == 200)
        return id
    }

    /// The complete stdout of `ticker ticks work`.
    static func tickerOutput(ticks: Int, work: Int = work) -> String {
        var acc: UInt64 = 1
        for _ in 0..<(ticks * work) { acc = acc &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407 }
        return String(repeating: ".", count: ticks) + "\nticker: \(ticks) ticks, checksum \(acc)\n"
    }

    /// The names of `jobID`'s events.
    static func events(_ executor: Executor, _ jobID: UUID) -> [String] {
        executor.status(of: jobID)?.events.map(\.event) ?? []
    }

    /// The executor-clock sequence number of `jobID`'s `nth` event named `name`.
    static func seq(_ executor: Executor, _ jobID: UUID, _ name: String, nth: Int = 0) throws -> UInt64 {
        let matching = try #require(executor.status(of: jobID)).events.filter { $0.event == name }
        try #require(matching.count > nth, "\(name) #\(nth) of \(jobID)")
        return try #require(matching[nth].stamp.dot?.seq)
    }

    /// True once the job's guest has written to its stdout (it is past its start).
    static func ticking(_ folder: String, _ jobID: UUID) -> Bool {
        let path = folder + "/" + jobID.ucpString + "/out/stdout.txt"
        return ((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0) > 0
    }

    @Test(
        "a CRITICAL job preempts a running LOW job at once; the LOW job is requeued, reruns and delivers its full result"
    )
    func preemption() async throws {
        try await withNode({ $0.workers = 1 }) { broker, executor, address, folder in
            let ticker = try await submit(
                .ticker, level: .low, args: [String(Self.longTicks), String(Self.work)], broker: broker, to: address)
            try await eventually("the ticker running") {
                executor.status(of: ticker)?.state == .running && Self.ticking(folder, ticker)
            }
            let critical = try await submit(.hello, level: .critical, broker: broker, to: address)
            try await eventually("the CRITICAL job done") { broker[\.done].contains(critical.ucpString) }
            try await eventually("the ticker done") { broker[\.done].contains(ticker.ucpString) }

            // The CRITICAL job started before the ticker's (only) complete run finished.
            #expect(try Self.seq(executor, critical, "started") < Self.seq(executor, ticker, "finished"))
            let names = Self.events(executor, ticker)
            #expect(names.filter { $0 == "started" }.count == 2, "\(names)")
            #expect(names.filter { $0 == "finished" }.count == 1, "\(names)")
            #expect(try Self.seq(executor, ticker, "started") < Self.seq(executor, ticker, "preempted"))
            #expect(try Self.seq(executor, ticker, "preempted") < Self.seq(executor, ticker, "requeued"))
            #expect(try Self.seq(executor, ticker, "requeued") < Self.seq(executor, ticker, "started", nth: 1))
            #expect(try Self.seq(executor, critical, "finished") < Self.seq(executor, ticker, "started", nth: 1))
            let preempted = try #require(executor.status(of: ticker)?.events.first { $0.event == "preempted" })
            #expect(preempted.detail?.contains(critical.ucpString) == true)
            try await eventually("the ticker settled") { executor.status(of: ticker)?.state == .done }
            #expect(executor.status(of: ticker)?.outcome == "exited with code 0")

            // The rerun's result is complete: every tick, the summary, nothing of the partial run.
            let zip = try ResultZip(bytes: try #require(broker[\.results][ticker.ucpString]))
            #expect(zip.stdout == Self.tickerOutput(ticks: Self.longTicks))
            #expect(zip.stderr == "")
            let hello = try ResultZip(bytes: try #require(broker[\.results][critical.ucpString]))
            #expect(hello.stdout == "Hello, world!\n")
            #expect(try await metrics(at: address).contains("ucp_executor_preemptions_total 1"))
        }
    }

    @Test("a HIGH job does not preempt: it waits for the worker")
    func highDoesNotPreempt() async throws {
        try await withNode({ $0.workers = 1 }) { broker, executor, address, folder in
            let ticker = try await submit(
                .ticker, level: .low, args: [String(Self.shortTicks), String(Self.work)], broker: broker, to: address)
            try await eventually("the ticker running") {
                executor.status(of: ticker)?.state == .running && Self.ticking(folder, ticker)
            }
            let high = try await submit(.hello, level: .high, broker: broker, to: address)
            try await eventually("both done") { broker[\.done].count == 2 }
            let names = Self.events(executor, ticker)
            #expect(!names.contains("preempted") && !names.contains("requeued"), "\(names)")
            #expect(names.filter { $0 == "started" }.count == 1)
            #expect(try Self.seq(executor, ticker, "finished") < Self.seq(executor, high, "started"))
            let zip = try ResultZip(bytes: try #require(broker[\.results][ticker.ucpString]))
            #expect(zip.stdout == Self.tickerOutput(ticks: Self.shortTicks))
        }
    }

    @Test("a CRITICAL job never preempts a HIGH or CRITICAL job")
    func criticalSparesHigh() async throws {
        try await withNode({ $0.workers = 1 }) { broker, executor, address, folder in
            let ticker = try await submit(
                .ticker, level: .high, args: [String(Self.shortTicks), String(Self.work)], broker: broker, to: address)
            try await eventually("the HIGH ticker running") {
                executor.status(of: ticker)?.state == .running && Self.ticking(folder, ticker)
            }
            let critical = try await submit(.hello, level: .critical, broker: broker, to: address)
            try await eventually("both done") { broker[\.done].count == 2 }
            #expect(!Self.events(executor, ticker).contains("preempted"))
            #expect(try Self.seq(executor, ticker, "finished") < Self.seq(executor, critical, "started"))
        }
    }

    @Test("an emergency slot keeps a worker free for a HIGH job while LOW jobs queue")
    func emergencySlot() async throws {
        try await withNode({
            $0.workers = 2
            $0.emergencySlots = 1
        }) { broker, executor, address, folder in
            let first = try await submit(
                .ticker, level: .low, args: [String(Self.longTicks), String(Self.work)], broker: broker, to: address)
            try await eventually("the first LOW job running") {
                executor.status(of: first)?.state == .running && Self.ticking(folder, first)
            }
            let second = try await submit(.ticker, level: .low, args: ["1", "1"], broker: broker, to: address)
            try await eventually("the second LOW job queued") { executor.status(of: second)?.state == .queued }
            let high = try await submit(.hello, level: .high, broker: broker, to: address)
            try await eventually("the HIGH job done") { broker[\.done].contains(high.ucpString) }
            try await eventually("all done") { broker[\.done].count == 3 }
            // The second LOW job waited for the first although a worker was free.
            #expect(try Self.seq(executor, high, "started") < Self.seq(executor, second, "started"))
            #expect(try Self.seq(executor, first, "finished") < Self.seq(executor, second, "started"))
            #expect(!Self.events(executor, first).contains("preempted"))
        }
    }

    @Test("emergency slots must be fewer than workers")
    func emergencySlotsValidated() throws {
        var configuration = ExecutorConfiguration(broker: Address(host: "127.0.0.1", port: 1), workers: 2)
        configuration.emergencySlots = 2
        #expect(throws: ExecutorError.self) { try configuration.validate() }
        configuration.emergencySlots = -1
        #expect(throws: ExecutorError.self) { try configuration.validate() }
        configuration.emergencySlots = 1
        try configuration.validate()
    }

    // MARK: - Emergency mode

    /// A notice of the test broker, stamped with its clock's next event.
    static func notice(_ level: EmergencyLevel?, from broker: TestBroker, reason: String = "drill") -> EmergencyNotice {
        EmergencyNotice(level: level, reason: reason, origin: "test-broker", stamp: broker.routes.clock.event())
    }

    /// Sends `notice` as the test broker does, with its clock, once the executor knows it.
    func put(_ notice: EmergencyNotice, from broker: TestBroker, to address: Address) async throws
        -> EmergencyApplyAnswer
    {
        let (status, body) = try await putEmergency(
            ByteBuffer(bytes: try UCPJSON.encode(notice)), to: address, clock: broker.routes.clock.now().clock)
        #expect(status == .ok, "\(String(buffer: body))")
        return try UCPJSON.decode(EmergencyApplyAnswer.self, from: Data(body.readableBytesView))
    }

    /// Sends `body` to `PUT /emergency`, with `clock` as the request's clock when given, once
    /// the executor has learned the test broker from its answers (registration, heartbeats).
    func putEmergency(_ body: ByteBuffer, to address: Address, clock: [String: UInt64]? = nil) async throws
        -> (HTTPResponseStatus, ByteBuffer)
    {
        try await eventually("the executor knows its broker") {
            let (_, view, _) = try await call(.GET, "http://\(address)/clock")
            return try UCPJSON.decode(ClockView.self, from: Data(view.readableBytesView)).stamp.clock["test-broker"] != nil
        }
        let headers = clock.map { [(ClockStamp.clockHeader, ClockStamp(clock: $0).clockHeaderValue)] } ?? []
        let (status, answer, _) = try await call(
            .PUT, "http://\(address)/emergency", body: body, contentType: "application/json", headers: headers)
        return (status, answer)
    }

    /// The node's `GET /metrics` text.
    func metrics(at address: Address) async throws -> String {
        let (status, body, _) = try await call(.GET, "http://\(address)/metrics")
        #expect(status == .ok)
        return String(buffer: body)
    }

    func mode(at address: Address) async throws -> EmergencyView {
        let (status, body, _) = try await call(.GET, "http://\(address)/emergency")
        #expect(status == .ok)
        return try UCPJSON.decode(EmergencyView.self, from: Data(body.readableBytesView))
    }

    @Test("the emergency mode holds queued jobs below its level back and releases them when cleared")
    func modeHoldsBack() async throws {
        try await withNode({ $0.workers = 2 }) { broker, executor, address, _ in
            let raise = Self.notice(.high, from: broker)
            let raised = try await put(raise, from: broker, to: address)
            #expect(raised.applied && raised.current == raise)
            #expect(try await metrics(at: address).contains("ucp_executor_emergency_level 3"))

            let low = try await submit(.hello, level: .low, broker: broker, to: address)
            try await eventually("the LOW job queued") { executor.status(of: low)?.state == .queued }
            let high = try await submit(.hello, level: .high, broker: broker, to: address)
            try await eventually("the HIGH job done") { broker[\.done].contains(high.ucpString) }
            // Workers were free the whole time: the mode alone held the LOW job.
            #expect(executor.status(of: low)?.state == .queued)
            #expect(broker[\.done].count == 1)

            let clear = Self.notice(nil, from: broker)
            let cleared = try await put(clear, from: broker, to: address)
            #expect(cleared.applied && cleared.current == clear)
            try await eventually("the LOW job done") { broker[\.done].contains(low.ucpString) }
            let answer = try await mode(at: address)
            #expect(answer.current == clear)
            #expect(answer.applied == [raise, clear])
            #expect(try await metrics(at: address).contains("ucp_executor_emergency_level 0"))
        }
    }

    @Test("a stale notice is not applied")
    func staleNotice() async throws {
        try await withNode { broker, executor, address, _ in
            let early = Self.notice(nil, from: broker)
            let late = Self.notice(.critical, from: broker)
            #expect(try await put(late, from: broker, to: address).applied)
            let stale = try await put(early, from: broker, to: address)
            #expect(!stale.applied)
            #expect(stale.current == late)
            #expect(!(try await put(late, from: broker, to: address).applied))
            let answer = try await mode(at: address)
            #expect(answer.current == late && answer.applied == [late])
            #expect(executor.emergencyMode.level == .critical)
        }
    }

    @Test("bad input to PUT /emergency is answered 400, 403 or 413 and changes nothing")
    func badEmergencyInput() async throws {
        try await withNode { broker, executor, address, _ in
            var unknown =
                try JSONSerialization.jsonObject(with: try UCPJSON.encode(Self.notice(.high, from: broker)))
                as! [String: Any]
            unknown["level"] = "SEVERE"
            let long = Self.notice(
                .high, from: broker, reason: String(repeating: "x", count: EmergencyNotice.maxReasonLength + 1))
            // A stamp at the top of the range, sent with a clock claiming as much, would beat
            // every later notice of the broker; and a broker the executor never heard of.
            var forged = Self.notice(.critical, from: broker)
            forged.stamp.clock["test-broker"] = UInt64.max
            let stranger = EmergencyNotice(level: .critical, reason: "x", origin: "b9", stamp: ClockStamp())
            let cases: [(ByteBuffer, HTTPResponseStatus, String)] = [
                (ByteBuffer(string: "{"), .badRequest, "malformed"),
                (ByteBuffer(string: #"{"level": "HIGH"}"#), .badRequest, "malformed"),
                (
                    ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: unknown)), .badRequest,
                    "unknown emergency level"
                ),
                (ByteBuffer(bytes: try UCPJSON.encode(long)), .badRequest, "reason"),
                (ByteBuffer(bytes: try UCPJSON.encode(forged)), .badRequest, "ahead of what this executor has seen"),
                (ByteBuffer(bytes: try UCPJSON.encode(stranger)), .forbidden, "does not know"),
                (
                    ByteBuffer(repeating: UInt8(ascii: " "), count: ExecutorAPI.maxEmergencyBytes + 1),
                    .payloadTooLarge, "larger"
                ),
            ]
            let claim = ["test-broker": UInt64.max]
            for (body, expected, words) in cases {
                let (status, answer) = try await putEmergency(body, to: address, clock: claim)
                #expect(status == expected, "\(words)")
                #expect(String(buffer: answer).contains(words), "\(String(buffer: answer))")
            }
            let answer = try await mode(at: address)
            #expect(answer.current == nil && answer.applied.isEmpty)
            #expect(executor.emergencyMode == EmergencyMode())
            // The broker's own notices still apply, each after the one before.
            let raise = Self.notice(.high, from: broker)
            #expect(try await put(raise, from: broker, to: address).applied)
            let clear = Self.notice(nil, from: broker)
            #expect(try await put(clear, from: broker, to: address).applied)
            #expect(executor.emergencyMode.current == clear)
        }
    }

    @Test("with a cluster key, PUT /emergency needs the caller's proof; GET /emergency stays open")
    func emergencyNeedsProof() async throws {
        let key = ClusterKey.random()
        try await withNode({ $0.auth = ClusterAuth(key: key) }) { _, executor, address, _ in
            // A broker the executor has not heard of yet: its proven request introduces it.
            let b1 = NodeClock(nodeID: "b1", role: .member)
            let member = NodeHTTPClient(clock: b1, auth: ClusterAuth(key: key))
            let stranger = NodeHTTPClient(clock: NodeClock(nodeID: "x", role: .member))
            let notice = EmergencyNotice(level: .high, reason: "drill", origin: "b1", stamp: b1.event())
            do {
                let refused = await #expect(throws: NodeCallError.self) {
                    try await stranger.call(.PUT, address, "/emergency", json: notice)
                }
                #expect(refused?.status == 401)
                #expect(executor.emergencyMode.current == nil)
                let answer = try await member.call(.PUT, address, "/emergency", json: notice)
                #expect(answer.status == 200)
                #expect(executor.emergencyMode.current == notice)
                #expect(try await mode(at: address).current == notice)
            } catch {
                await member.shutdown()
                await stranger.shutdown()
                throw error
            }
            await member.shutdown()
            await stranger.shutdown()
        }
    }

    // MARK: - The ledger's refusal

    @Test("a result the broker refuses with 409 settles the job superseded: no done, folder removed")
    func refusedResult() async throws {
        try await withNode { broker, executor, address, folder in
            broker.state.withLock { $0.refuseResults = true }
            let job = try await submit(.hello, level: .low, broker: broker, to: address)
            let id = job.ucpString
            try await eventually("the job superseded") { executor.status(of: job)?.state == .superseded }
            let refusal = try #require(executor.status(of: job)?.events.first { $0.event == "result_refused" })
            #expect(refusal.detail?.contains(TestBroker.acceptedExecutor) == true)
            #expect(refusal.stamp.dot != nil)
            let names = Self.events(executor, job)
            #expect(!names.contains("done") && !names.contains("result_store_failed"), "\(names)")
            // One upload, refused; no fallback to <job_id>/result, no "done".
            #expect(broker[\.refused] == [id])
            #expect(broker[\.done].isEmpty)
            #expect(broker[\.data][id + "/result"] == nil)
            #expect(!FileManager.default.fileExists(atPath: folder + "/" + id))
            #expect(executor.isIdle)
        }
    }
}
