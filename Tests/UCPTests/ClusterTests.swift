import Causal
import Foundation
import Logging
import Testing
import UCP

/// A broker, a datastore, two executors and a client's result listener, each a real node on its
/// own loopback port, all holding one cluster key, with short heartbeats.
final class TestCluster: @unchecked Sendable {  // mutated only by the test that owns it
    let folder: String
    let brokerID = UUID()
    let auth = ClusterAuth(key: ClusterKey.random())
    var broker: RunningNode!
    var datastore: RunningNode!
    var executors: [RunningNode] = []
    var results: RunningNode!
    var listener: ResultListener!
    var client: UCPClient!

    init(folder: String) {
        self.folder = folder
    }

    func brokerConfiguration(port: Int) -> BrokerConfiguration {
        var configuration = BrokerConfiguration(
            host: "127.0.0.1", port: port, rootdir: folder + "/broker.d", id: brokerID,
            heartbeatInterval: .milliseconds(200), failAfter: .seconds(3), tickInterval: .milliseconds(50),
            logLevel: .warning)
        configuration.auth = auth
        return configuration
    }

    func startBroker(port: Int = 0) async throws {
        let configuration = brokerConfiguration(port: port)
        broker = try await RunningNode.start("broker") {
            BrokerNode(configuration: configuration, logger: Logger(label: "broker"), onListening: $0)
        }
    }

    func start() async throws {
        // A port outside the ephemeral range: the broker restarts on it (see LoopbackPort).
        try await startBroker(port: try #require(LoopbackPort.free()))
        var store = DatastoreConfiguration(
            host: "127.0.0.1", port: 0, rootdir: folder + "/datastore.d", broker: broker.address,
            heartbeatInterval: .milliseconds(200), maxRetryInterval: .milliseconds(200), logLevel: .warning)
        store.auth = auth
        datastore = try await RunningNode.start("datastore") {
            DatastoreNode(configuration: store, logger: Logger(label: "datastore"), onListening: $0)
        }
        for index in 1...2 {
            var executor = try testExecutorConfiguration(broker: broker.address, rootdir: folder + "/executor-\(index).d")
            executor.heartbeatInterval = .milliseconds(200)
            executor.timeLimit = .seconds(1)
            executor.auth = auth
            var logger = Logger(label: "executor-\(index)")
            logger.logLevel = .warning
            executors.append(
                try await RunningNode.start("executor-\(index)") {
                    ExecutorNode(configuration: executor, logger: logger, onListening: $0)
                })
        }
        let client = UCPClient(broker: broker.address, auth: auth)
        self.client = client
        var made: ResultListener?
        results = try await RunningNode.start("results") { onListening in
            let listener = try ResultListener(
                folder: folder + "/results", host: "127.0.0.1", port: 0, clock: client.clock,
                onListening: onListening)
            made = listener
            return listener
        }
        listener = made
        try await waitUntil(executors: 2, datastores: 1)
    }

    func waitUntil(executors: Int, datastores: Int) async throws {
        let client = client!
        let broker = broker!.address
        try await eventually("\(executors) executors and \(datastores) datastores registered") {
            let count = try? await client.http.decode(Int.self, .GET, broker, "/executors/count")
            let stores = try? await client.http.decode(Int.self, .GET, broker, "/datastores/count")
            return count == executors && stores == datastores
        }
    }

    /// Submits `job` with results sent to the listener and returns the result zip.
    func run(_ job: JobSubmission) async throws -> ResultZip {
        var job = job
        job.resultAddr = results.address
        let id = try await client.submit(job)
        return try ResultZip(path: try await listener.result(for: id, timeout: .seconds(60)))
    }

    /// The broker's view of a job.
    func view(_ id: UUID) async throws -> JobView {
        try await client.http.decode(JobView.self, .GET, broker.address, "/job/\(id.ucpString)")
    }

    /// The broker's result ledger of a job.
    func ledger(_ id: UUID) async throws -> LedgerView {
        try await client.http.decode(LedgerView.self, .GET, broker.address, "/ledger/\(id.ucpString)")
    }

    func stop() async {
        for node in executors + [datastore, results, broker].compactMap({ $0 }) { await node.stop() }
        await client?.shutdown()
    }
}

@Suite("A whole cluster over loopback: broker, datastore, two executors, a client", .timeLimit(.minutes(5)))
struct ClusterTests {
    @Test(
        "jobs with data and named results, wait_for, a trap and a runaway; a silent executor is pruned; a restarted broker remembers"
    )
    func endToEnd() async throws {
        try await withTemporaryFolder { folder in
            let cluster = TestCluster(folder: folder)
            do {
                try await cluster.start()
                try await scenario(cluster)
            } catch {
                await cluster.stop()
                throw error
            }
            await cluster.stop()
        }
    }

    func scenario(_ cluster: TestCluster) async throws {
        // A job with job data and a named result: the input file is stored back under a name.
        let words = try await cluster.run(
            JobSubmission(
                module: .bytes(try ShippedJob.wordcount.wasm()), args: ["/in.txt"],
                jobData: ["/in.txt": Array("one two three four\n".utf8)],
                namedResults: ["/in.txt": "results/copy.txt"]))
        #expect(words.stdout == "4 /in.txt\n")
        #expect(try await cluster.client.get(name: "results/copy.txt") == Array("one two three four\n".utf8))

        // wait_for: the second job is given out only after the first is done, by the broker's clock.
        let first = UUID()
        let second = UUID()
        try await cluster.client.submit(
            JobSubmission(
                jobID: first, module: .bytes(try ShippedJob.hello.wasm()), waitFor: [],
                resultAddr: cluster.results.address))
        try await cluster.client.submit(
            JobSubmission(
                jobID: second, module: .bytes(try ShippedJob.sum.wasm()), args: ["2", "40"], waitFor: [first],
                resultAddr: cluster.results.address))
        let sumZip = try ResultZip(path: try await cluster.listener.result(for: second, timeout: .seconds(60)))
        let helloZip = try ResultZip(path: try await cluster.listener.result(for: first, timeout: .seconds(60)))
        #expect(helloZip.stdout == "Hello, world!\n")
        #expect(sumZip.stdout == "42\n")
        // The real executor's result went through the ledger, attributed by its dot.
        let ledger = try await cluster.ledger(first)
        #expect(ledger.accepted?.executor != nil && ledger.rejected.isEmpty)
        let done = try #require(try await cluster.view(first).done)
        let assigned = try #require(try await cluster.view(second).assigned)
        #expect(done.compare(assigned) == .before)

        // A trap and a runaway become error results; the executors carry on.
        let trap = try await cluster.run(JobSubmission(module: .bytes(try ShippedJob.trap.wasm())))
        #expect(trap.stderr.lowercased().contains("unreachable"), "\(trap.stderr)")
        let spin = try await cluster.run(JobSubmission(module: .bytes(try ShippedJob.spin.wasm())))
        #expect(spin.stderr.lowercased().contains("time limit"), "\(spin.stderr)")
        #expect(try await cluster.run(JobSubmission(module: .bytes(try ShippedJob.hello.wasm()))).stdout == "Hello, world!\n")

        // An executor that stops heartbeating is pruned.
        await cluster.executors.removeLast().stop()
        try await cluster.waitUntil(executors: 1, datastores: 1)

        // A broker restarted from its SQLite file knows its executors and jobs and carries on.
        let port = cluster.broker.port
        let before = try await cluster.client.http.decode(ClockView.self, .GET, cluster.broker.address, "/clock")
        await cluster.broker.stop()
        try await cluster.startBroker(port: port)
        let remembered = try await cluster.view(first)
        #expect(remembered.done == done, "the job, done (then deleted by its executor, as UCP's does), is still known")
        #expect([.done, .deleted].contains(remembered.state))
        #expect(try await cluster.ledger(first).accepted == ledger.accepted, "the ledger is durable")
        #expect(try await cluster.client.http.decode(Int.self, .GET, cluster.broker.address, "/executors/count") == 1)
        let after = try await cluster.client.http.decode(ClockView.self, .GET, cluster.broker.address, "/clock")
        // It continues from its saved clock (a keyed GET is not an event: the two may be equal).
        #expect([.before, .equal].contains(before.stamp.compare(after.stamp)), "the restarted broker's clock continues")
        #expect(try await cluster.run(JobSubmission(module: .bytes(try ShippedJob.hello.wasm()))).stdout == "Hello, world!\n")
    }

    @Test("a node without the cluster key cannot change anything")
    func stranger() async throws {
        try await withTemporaryFolder { folder in
            let cluster = TestCluster(folder: folder)
            do {
                try await cluster.startBroker()
                let stranger = UCPClient(broker: cluster.broker.address)
                defer { Task { await stranger.shutdown() } }
                let error = await #expect(throws: NodeCallError.self) {
                    try await stranger.submit(JobSubmission(module: .bytes(try ShippedJob.hello.wasm())))
                }
                #expect(error?.status == 401)
                #expect(try await stranger.http.decode(Int.self, .GET, cluster.broker.address, "/executors/count") == 0)
            } catch {
                await cluster.stop()
                throw error
            }
            await cluster.stop()
        }
    }
}
