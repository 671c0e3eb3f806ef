import Causal
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import UCP

/// Brokers (one, or a federation), a datastore and executors as separate `ucp` processes on
/// 127.0.0.1, in a folder of their own, all holding one fresh cluster key. ``stop()`` ends every process it started. For
/// fault tests, a node may be crashed (``crash(_:)``), paused and resumed, and restarted on its
/// port and data folder (``restart(_:timeout:)``).
final class LocalCluster: Sendable {
    /// The cluster's folder: node data folders, the key, one log file per process.
    let folder: String
    /// The (first) broker's address.
    let broker: Address
    /// Every broker's address, the first one first (`broker`, `broker-2`, ...).
    let brokers: [Address]
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
    /// broker's); executors run `workers` jobs at once (default: the core count). With `brokers`
    /// above one, the brokers form a federation over the causal transport (slots 0, 1, ...), the
    /// datastore registers with the first and the executors with each broker in turn. `link`, when
    /// given, maps a broker's transport port to the port the lower slots dial to reach it (a proxy a
    /// test can cut).
    static func start(
        in folder: String, brokers brokerCount: Int = 1, link: ((Int) throws -> Int)? = nil, executors: Int,
        timeLimit: Double,
        heartbeatSeconds: Double = 2,
        suspectAfterSeconds: Double? = nil, failAfterSeconds: Double? = nil, workers: Int? = nil,
        dispatchWindow: Int? = nil,
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
            let transports = try (0..<brokerCount).map { _ in try freePort() }
            var brokers: [Address] = []
            for slot in 0..<brokerCount {
                var federation: [String] = []
                if brokerCount > 1 {
                    federation = ["--slot", String(slot), "--federation-listen", "127.0.0.1:\(transports[slot])"]
                    for peer in 0..<brokerCount where peer != slot {
                        // The lower slot of a pair dials the higher one, at the address given here.
                        let port = peer > slot ? try link?(transports[peer]) ?? transports[peer] : transports[peer]
                        federation += ["--peer", "\(peer)@127.0.0.1:\(port)"]
                    }
                }
                let name = slot == 0 ? "broker" : "broker-\(slot + 1)"
                brokers.append(
                    try start(
                        name,
                        [
                            "broker", "--rootdir", folder + "/\(name).d", "--heartbeat-interval", beat, "--fail-after",
                            String(failAfterSeconds ?? heartbeatSeconds * 5),
                        ]
                            + (suspectAfterSeconds.map { ["--suspect-after", String($0)] } ?? [])
                            + (dispatchWindow.map { ["--dispatch-window", String($0)] } ?? []) + federation))
            }
            let broker = brokers[0]
            _ = try start(
                "datastore",
                [
                    "datastore", "--rootdir", folder + "/datastore.d", "--broker", "\(broker)", "--heartbeat-interval",
                    beat,
                ])
            for index in 1...executors {
                _ = try start(
                    "executor-\(index)",
                    [
                        "executor", "--rootdir", folder + "/executor-\(index).d", "--broker",
                        "\(brokers[(index - 1) % brokerCount])", "--heartbeat-interval", beat, "--time-limit",
                        String(timeLimit),
                    ]
                        + (workers.map { ["--workers", String($0)] } ?? []))
            }
            let cluster = LocalCluster(
                folder: folder, brokers: brokers, processes: processes, addresses: addresses,
                auth: ClusterAuth(key: key))
            for (slot, address) in brokers.enumerated() {
                let share = (0..<executors).filter { $0 % brokerCount == slot }.count
                try await cluster.waitUntilReady(broker: address, executors: share, timeout: timeout)
            }
            return cluster
        } catch {
            for process in processes.reversed() { process.stop(grace: .seconds(2)) }
            throw error
        }
    }

    private init(
        folder: String, brokers: [Address], processes: [ClusterProcess], addresses: [(String, Address)],
        auth: ClusterAuth
    ) {
        self.folder = folder
        self.broker = brokers[0]
        self.brokers = brokers
        self.running = Mutex(processes)
        self.addresses = addresses.map { (name: $0.0, address: $0.1) }
        self.auth = auth
    }

    /// A client of this cluster's (first) broker, or of `broker`, holding the cluster's key.
    func client(of broker: Address? = nil) -> UCPClient {
        var logger = Logger(label: "ucp.demo")
        logger.logLevel = .warning
        return UCPClient(broker: broker ?? self.broker, auth: auth, logger: logger)
    }

    /// Waits until `broker` counts `executors` executors and knows a datastore (polls the
    /// broker's own answers with a short backoff: the nodes register on their own schedule, and a
    /// peer broker learns of the datastore through the federation; the deadline bounds it).
    private func waitUntilReady(broker: Address, executors: Int, timeout: Duration) async throws {
        let client = client(of: broker)
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
            guard port == address.port else {
                throw DemoError("\(name) came back on port \(port), not \(address.port)")
            }
        } catch {
            new.crash()
            throw error
        }
        running.withLock { processes in
            if let index = processes.firstIndex(where: { $0 === old }) { processes[index] = new }
        }
    }

    /// The broker's `GET /status`.
    func status(of broker: Address? = nil) async throws -> BrokerStatus {
        let client = client()
        defer { Task { await client.shutdown() } }
        return try await client.http.decode(BrokerStatus.self, .GET, broker ?? self.broker, "/status")
    }

    /// The name of the node listening on `port` (`executor-2`, ...).
    func name(ofPort port: Int) -> String? {
        addresses.first { $0.address.port == port }?.name
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
        return try await ResultListener.serving(
            folder: folder + "/results", clock: client.clock, auth: auth, logger: quiet, body)
    }

    /// Stops every process: SIGTERM, then SIGKILL after a grace period; executors first. Returns
    /// the names of those that did not exit cleanly (status 0 after SIGTERM).
    @discardableResult
    func stop() -> [String] {
        processes.reversed().compactMap { process in process.stop() == 0 ? nil : process.name }
    }
}

/// A TCP port on 127.0.0.1 free a moment ago, outside the kernel's ephemeral range
/// (``LoopbackPort/free()``): nodes that restart keep it.
func freePort() throws -> Int {
    guard let port = LoopbackPort.free() else { throw DemoError("cannot find a free port on 127.0.0.1") }
    return port
}
