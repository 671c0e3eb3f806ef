import Causal
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import UCP

/// A broker, a datastore and executors as separate `ucp` processes on 127.0.0.1, in a folder of
/// their own, all holding one fresh cluster key. ``stop()`` ends every process it started. For
/// fault tests, a node may be crashed (``crash(_:)``), paused and resumed, and restarted on its
/// port and data folder (``restart(_:timeout:)``).
final class LocalCluster: Sendable {
    /// The cluster's folder: node data folders, the key, one log file per process.
    let folder: String
    /// The broker's address.
    let broker: Address
    /// The processes, broker first (a restarted node's current process).
    var processes: [ClusterProcess] { running.withLock { $0 } }
    private let running: Mutex<[ClusterProcess]>
    /// Every node's address by name (`broker`, `datastore`, `executor-1`, ...).
    let addresses: [(name: String, address: Address)]
    /// The cluster's key.
    let auth: ClusterAuth

    /// Starts the cluster and waits until every executor is registered and the datastore takes
    /// data, or throws after `timeout`. The broker fails a node silent for `failAfterSeconds`
    /// (default five heartbeats) and suspects one silent for `suspectAfterSeconds` (default: the
    /// broker's); executors run `workers` jobs at once (default: the core count).
    static func start(
        in folder: String, executors: Int, timeLimit: Double, heartbeatSeconds: Double = 2,
        suspectAfterSeconds: Double? = nil, failAfterSeconds: Double? = nil, workers: Int? = nil,
        timeout: Duration = .seconds(60), executable: String = ClusterProcess.executablePath, log: (String) -> Void
    ) async throws -> LocalCluster {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let keyFile = folder + "/cluster.key"
        let key = ClusterKey.random()
        try key.write(toFile: keyFile)
        var processes: [ClusterProcess] = []
        var addresses: [(String, Address)] = []
        func start(_ name: String, _ arguments: [String]) throws -> Address {
            let process = try ClusterProcess(
                name: name, arguments: arguments + ["--port", "0", "--key-file", keyFile, "--log-level", "warning"],
                logPath: "\(folder)/\(name).log", executable: executable)
            processes.append(process)
            let port = try process.waitUntilListening(timeout: timeout)
            let address = Address(host: "127.0.0.1", port: port)
            addresses.append((name, address))
            log("  \(name.padding(toLength: 11, withPad: " ", startingAt: 0)) pid \(process.pid), \(address)")
            return address
        }
        do {
            let beat = String(heartbeatSeconds)
            let broker = try start(
                "broker",
                ["broker", "--rootdir", folder + "/broker.d", "--heartbeat-interval", beat, "--fail-after",
                 String(failAfterSeconds ?? heartbeatSeconds * 5)]
                    + (suspectAfterSeconds.map { ["--suspect-after", String($0)] } ?? []))
            _ = try start(
                "datastore",
                ["datastore", "--rootdir", folder + "/datastore.d", "--broker", "\(broker)", "--heartbeat-interval", beat])
            for index in 1...executors {
                _ = try start(
                    "executor-\(index)",
                    ["executor", "--rootdir", folder + "/executor-\(index).d", "--broker", "\(broker)",
                     "--heartbeat-interval", beat, "--time-limit", String(timeLimit)]
                        + (workers.map { ["--workers", String($0)] } ?? []))
            }
            let cluster = LocalCluster(
                folder: folder, broker: broker, processes: processes, addresses: addresses, auth: ClusterAuth(key: key))
            try await cluster.waitUntilReady(executors: executors, timeout: timeout)
            return cluster
        } catch {
            for process in processes.reversed() { process.stop(grace: .seconds(2)) }
            throw error
        }
    }

    private init(
        folder: String, broker: Address, processes: [ClusterProcess], addresses: [(String, Address)], auth: ClusterAuth
    ) {
        self.folder = folder
        self.broker = broker
        self.running = Mutex(processes)
        self.addresses = addresses.map { (name: $0.0, address: $0.1) }
        self.auth = auth
    }

    /// A client of this cluster's broker, holding the cluster's key.
    func client() -> UCPClient {
        var logger = Logger(label: "ucp.demo")
        logger.logLevel = .warning
        return UCPClient(broker: broker, auth: auth, logger: logger)
    }

    /// Waits until the broker counts `executors` executors and a datastore has registered
    /// (polls the broker's own answers with a short backoff: the nodes register on their own
    /// schedule; the deadline bounds it).
    private func waitUntilReady(executors: Int, timeout: Duration) async throws {
        let client = client()
        defer { Task { await client.shutdown() } }
        let deadline = ContinuousClock.now + timeout
        var delay = Duration.milliseconds(20)
        while true {
            let count = try? await client.http.decode(Int.self, .GET, broker, "/executors/count")
            let datastores = try? await client.http.decode(Int.self, .GET, broker, "/datastores/count")
            if count == executors, (datastores ?? 0) > 0 { return }
            guard ContinuousClock.now + delay < deadline else {
                throw DemoError(
                    "the cluster was not ready within \(timeout): \(count ?? 0) of \(executors) executors, "
                        + "\(datastores ?? 0) datastores registered; logs in \(folder)")
            }
            try await Task.sleep(for: delay)
            delay = min(delay * 2, .milliseconds(250))
        }
    }

    /// The process of node `name`.
    func process(_ name: String) -> ClusterProcess? {
        processes.first { $0.name == name }
    }

    /// Node `name`'s address.
    func address(of name: String) -> Address? {
        addresses.first { $0.name == name }?.address
    }

    /// Crashes node `name` (SIGKILL) and reaps it.
    func crash(_ name: String) {
        process(name)?.crash()
    }

    /// Starts node `name` again, after a crash or a stop, on the same port and data folder, and
    /// waits until it listens.
    ///
    /// - Throws: ``DemoError`` when it is unknown or does not listen on its port within `timeout`.
    func restart(_ name: String, timeout: Duration = .seconds(60)) throws {
        guard let old = process(name), let address = address(of: name) else { throw DemoError("no node \(name)") }
        old.crash()
        let new = try old.restarted(port: address.port)
        do {
            let port = try new.waitUntilListening(timeout: timeout)
            guard port == address.port else { throw DemoError("\(name) came back on port \(port), not \(address.port)") }
        } catch {
            new.crash()
            throw error
        }
        running.withLock { processes in
            if let index = processes.firstIndex(where: { $0 === old }) { processes[index] = new }
        }
    }

    /// The broker's `GET /status`.
    func status() async throws -> BrokerStatus {
        let client = client()
        defer { Task { await client.shutdown() } }
        return try await client.http.decode(BrokerStatus.self, .GET, broker, "/status")
    }

    /// Every node's clock (`GET /clock`).
    func clocks() async -> [(name: String, view: ClockView?)] {
        let client = client()
        defer { Task { await client.shutdown() } }
        var views: [(String, ClockView?)] = []
        for (name, address) in addresses {
            views.append((name, try? await client.http.decode(ClockView.self, .GET, address, "/clock")))
        }
        return views.map { (name: $0.0, view: $0.1) }
    }

    /// Runs a result listener for `client` (results saved under the cluster's folder) for the
    /// length of `body`, which gets it and its address (the `result_addr` of the jobs).
    func withResultListener<T: Sendable>(
        client: UCPClient, _ body: (ResultListener, Address) async throws -> T
    ) async throws -> T {
        var quiet = Logger(label: "ucp.results")
        quiet.logLevel = .warning
        let (ports, sink) = AsyncStream.makeStream(of: Int.self)
        let listener = try ResultListener(
            folder: folder + "/results", host: "127.0.0.1", port: 0, clock: client.clock, logger: quiet
        ) { port in
            sink.yield(port)
            sink.finish()
        }
        let services = ServiceGroup(services: [listener], gracefulShutdownSignals: [], logger: quiet)
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await services.run() }
            let result: T
            do {
                var iterator = ports.makeAsyncIterator()
                guard let port = await iterator.next() else { throw DemoError("the result listener did not start") }
                result = try await body(listener, Address(host: "127.0.0.1", port: port))
            } catch {
                await services.triggerGracefulShutdown()
                throw error
            }
            await services.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        }
    }

    /// Stops every process: SIGTERM, then SIGKILL after a grace period; executors first. Returns
    /// the names of those that did not exit cleanly (status 0 after SIGTERM).
    @discardableResult
    func stop() -> [String] {
        processes.reversed().compactMap { process in process.stop() == 0 ? nil : process.name }
    }
}
