import ArgumentParser
import Foundation
import Logging
import UCP

/// A duration given in seconds on the command line.
func seconds(_ value: Double, option: String) throws -> Duration {
    guard value > 0, value.isFinite else { throw ValidationError("\(option) must be a positive number of seconds") }
    return .milliseconds(Int64(value * 1000))
}

/// `ucp broker`: UCP's broker (executors, jobs, data), its state in SQLite under `--rootdir`.
struct BrokerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker", abstract: "Run a broker: executor registration, job dispatch, data and results.")

    @OptionGroup var serve: ServeOptions
    @Option(help: "Data folder (the SQLite database lives here).") var rootdir = "broker.d"
    @Option(help: "The broker's id (a UUID); default: the one kept in --rootdir, or a new one.") var id: String?
    @Option(help: "Seconds between the heartbeats expected of executors and datastores.")
    var heartbeatInterval: Double = 60
    @Option(
        help:
            "Suspect an executor silent for this many seconds: no new jobs until it beats again (default: halfway between --heartbeat-interval and --fail-after)."
    )
    var suspectAfter: Double?
    @Option(
        name: [.customLong("fail-after"), .customLong("prune-after")],
        help:
            "Fail an executor or datastore silent for this many seconds: it must register again and its jobs are redeployed (--prune-after is an alias)."
    )
    var failAfter: Double = 130

    @Option(
        help:
            "Jobs per executor core the broker keeps assigned to an executor; the rest wait in its queue (HIGH and CRITICAL pass)."
    )
    var dispatchWindow = 4
    @OptionGroup var federation: FederationOptions

    func validate() throws {
        guard failAfter > heartbeatInterval else {
            throw ValidationError("--fail-after must be longer than --heartbeat-interval")
        }
        if let suspectAfter, suspectAfter > failAfter || suspectAfter <= 0 {
            throw ValidationError("--suspect-after must be positive and at most --fail-after")
        }
    }

    func run() async throws {
        let logger = serve.logger("ucp.broker")
        var configuration = BrokerConfiguration(
            host: serve.host, port: serve.port, rootdir: rootdir, id: try id.map(parseUUID),
            heartbeatInterval: try seconds(heartbeatInterval, option: "--heartbeat-interval"),
            suspectAfter: try suspectAfter.map { try seconds($0, option: "--suspect-after") },
            failAfter: try seconds(failAfter, option: "--fail-after"),
            logLevel: logger.logLevel)
        configuration.auth = try serve.auth()
        guard dispatchWindow >= 1 else { throw ValidationError("--dispatch-window must be at least 1") }
        configuration.dispatchWindow = dispatchWindow
        configuration.federation = try federation.configuration(auth: configuration.auth)
        let host = serve.host
        let node = BrokerNode(configuration: configuration, logger: logger) { port in
            announceListening(role: "broker", host: host, port: port)
        }
        try await runUntilSignalled([node], logger: logger)
    }
}

/// `ucp datastore`: UCP's datastore, registered with a broker.
struct DatastoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "datastore", abstract: "Run a datastore: named data and job data in files under --rootdir.")

    @OptionGroup var serve: ServeOptions
    @Option(help: "Data folder.") var rootdir = "datastore.d"
    @Option(help: "The broker to register with: HOST:PORT.") var broker: String
    @Option(help: "The datastore's id (a UUID); default: the one kept in --rootdir, or a new one.") var id: String?
    @Option(help: "Largest item accepted, in bytes.") var maxItemBytes: Int64 = 1 << 30
    @Option(help: "Seconds between heartbeats to the broker.") var heartbeatInterval: Double = 60

    func run() async throws {
        let logger = serve.logger("ucp.datastore")
        var configuration = DatastoreConfiguration(
            host: serve.host, port: serve.port, rootdir: rootdir, broker: try parseAddress(broker, option: "--broker"),
            id: try id.map(parseUUID), advertisedHosts: serve.hosts, maxItemBytes: maxItemBytes,
            heartbeatInterval: try seconds(heartbeatInterval, option: "--heartbeat-interval"),
            logLevel: logger.logLevel)
        configuration.auth = try serve.auth()
        let host = serve.host
        let node = DatastoreNode(configuration: configuration, logger: logger) { port in
            announceListening(role: "datastore", host: host, port: port)
        }
        try await runUntilSignalled([node], logger: logger)
    }
}

/// `ucp executor`: runs WASI jobs in-process for a broker.
struct ExecutorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "executor", abstract: "Run an executor: WASI jobs in-process with WasmKit, sandboxed per job.")

    @OptionGroup var serve: ServeOptions
    @Option(help: "Folder of the job folders (<rootdir>/<job_id>/{code,data,out}).") var rootdir = "executor.d"
    @Option(help: "The executor's id (a UUID), stable across restarts; default: kept in --rootdir.")
    var executorID: String?
    @Option(help: "The broker: HOST:PORT.") var broker: String
    @Option(help: "Jobs run at once (default: the core count).") var workers: Int?
    @Option(help: "Workers kept for HIGH and CRITICAL jobs; jobs below HIGH use the others (must be below --workers).")
    var emergencySlots = 0
    @Option(help: "Each job's time limit in seconds.") var timeLimit: Double = 60
    @Option(help: "Seconds between heartbeats to the broker.") var heartbeatInterval: Double = 60

    func run() async throws {
        let logger = serve.logger("ucp.executor")
        var configuration = ExecutorConfiguration(
            host: serve.host, advertisedHosts: serve.hosts, port: serve.port, rootdir: rootdir,
            executorID: try executorID.map(parseUUID), broker: try parseAddress(broker, option: "--broker"),
            workers: workers ?? ProcessInfo.processInfo.activeProcessorCount,
            timeLimit: try seconds(timeLimit, option: "--time-limit"),
            heartbeatInterval: try seconds(heartbeatInterval, option: "--heartbeat-interval"))
        configuration.emergencySlots = emergencySlots
        do {
            try configuration.validate()
        } catch {
            throw ValidationError("--emergency-slots \(emergencySlots): \(error)")
        }
        configuration.auth = try serve.auth()
        let host = serve.host
        let node = ExecutorNode(configuration: configuration, logger: logger) { port in
            announceListening(role: "executor", host: host, port: port)
        }
        try await runUntilSignalled([node], logger: logger)
    }
}

/// Parses a UUID option.
func parseUUID(_ text: String) throws -> UUID {
    guard let id = UUID(uuidString: text) else { throw ValidationError("\(text) is not a UUID") }
    return id
}
