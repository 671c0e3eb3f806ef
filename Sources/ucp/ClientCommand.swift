import ArgumentParser
import Causal
import Foundation
import Logging
import ServiceLifecycle
import UCP

/// `ucp client`: submits jobs and moves data through a broker, as UCP's client does.
struct ClientCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "client", abstract: "Submit WASI jobs and put, get or list data through a broker.",
        subcommands: [Submit.self, Put.self, Get.self, List.self, Status.self, EmergencyCommand.self])

    /// Options every client command takes.
    struct Connection: ParsableArguments {
        @Option(help: "The broker: HOST:PORT.") var broker: String
        @Option(help: "Cluster key file (64 hex digits), when the cluster requires proof of membership.")
        var keyFile: String?
        @Option(help: "Log level.") var logLevel: String = "warning"

        func client() throws -> UCPClient {
            var logger = Logger(label: "ucp.client")
            logger.logLevel = Logger.Level(rawValue: logLevel) ?? .warning
            let auth = try keyFile.map { path in
                do {
                    return ClusterAuth(key: try ClusterKey(contentsOfFile: path))
                } catch {
                    throw ValidationError("\(error)")
                }
            }
            return UCPClient(broker: try parseAddress(broker, option: "--broker"), auth: auth, logger: logger)
        }
    }

    struct Submit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Submit a job, wait for its result zip and print stdout and stderr (or unpack it with --out).")

        @OptionGroup var connection: Connection
        @Option(help: "A shipped job: \(ShippedJob.allCases.map(\.rawValue).joined(separator: ", ")).")
        var job: String?
        @Option(help: "A WASI module file to run instead of a shipped job.") var wasm: String?
        @Option(name: .customLong("arg"), help: "An argument for the job; repeat for more.") var args: [String] = []
        @Option(name: .customLong("env"), help: "KEY=VALUE for the job's environment; repeat for more.")
        var env: [String] = []
        @Option(help: "A file fed to the job's stdin.") var stdin: String?
        @Option(name: .customLong("data"), help: "PATH=FILE: the file's bytes at PATH inside the job; repeat.")
        var data: [String] = []
        @Option(name: .customLong("named-result"), help: "PATH=NAME: store the job's file PATH as data NAME; repeat.")
        var namedResults: [String] = []
        @Option(name: .customLong("wait-for"), help: "A job id that must be done first; repeat.") var waitFor: [String] = []
        @Option(help: "Emergency level: LOW, MEDIUM, HIGH, CRITICAL.") var emergency = "LOW"
        @Option(help: "Unpack the result zip into this folder instead of printing.") var out: String?
        @Option(help: "Seconds to wait for the result.") var timeout: Double = 120
        @Flag(help: "Print the job id and return without waiting for the result.") var noWait = false
        @Flag(help: "Let the broker store the result as <job_id>/result instead of sending it here.")
        var storeResult = false

        func run() async throws {
            guard (job == nil) != (wasm == nil) else { throw ValidationError("give exactly one of --job and --wasm") }
            let module: [UInt8]
            if let job {
                guard let shipped = ShippedJob(rawValue: job) else {
                    throw ValidationError("unknown job \(job); shipped: \(ShippedJob.allCases.map(\.rawValue))")
                }
                module = try shipped.wasm()
            } else {
                module = try Array(Data(contentsOf: URL(fileURLWithPath: wasm!)))
            }
            guard let level = try? EmergencyLevel(parsing: emergency) else {
                throw ValidationError("--emergency must be LOW, MEDIUM, HIGH or CRITICAL")
            }
            var submission = JobSubmission(module: .bytes(module), args: args, emergency: level)
            for pair in env {
                let (key, value) = try split(pair, option: "--env")
                submission.env[key] = value
            }
            if let stdin { submission.stdin = .bytes(try Array(Data(contentsOf: URL(fileURLWithPath: stdin)))) }
            for pair in data {
                let (path, file) = try split(pair, option: "--data")
                submission.jobData[path] = try Array(Data(contentsOf: URL(fileURLWithPath: file)))
            }
            for pair in namedResults {
                let (path, name) = try split(pair, option: "--named-result")
                submission.namedResults[path] = name
            }
            submission.waitFor = try waitFor.isEmpty ? nil : waitFor.map(parseUUID)
            let client = try connection.client()
            defer { Task { await client.shutdown() } }
            let limit = try seconds(timeout, option: "--timeout")

            if noWait || storeResult {
                let id = try await client.submit(submission)
                print(id.ucpString)
                if noWait { return }
                try report(try ResultZip(bytes: try await client.waitForStoredResult(jobID: id, timeout: limit)))
                return
            }
            let folder = NSTemporaryDirectory() + "ucp-client-" + UUID().ucpString
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let (ports, sink) = AsyncStream.makeStream(of: Int.self)
            let listener = try ResultListener(
                folder: folder, host: "127.0.0.1", port: 0, clock: client.clock, auth: client.http.auth
            ) { port in
                sink.yield(port)
                sink.finish()
            }
            let group = ServiceGroup(services: [listener], gracefulShutdownSignals: [.sigint], logger: Logger(label: "ucp.client"))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                defer { tasks.cancelAll() }
                var iterator = ports.makeAsyncIterator()
                guard let port = await iterator.next() else { throw ValidationError("the result listener did not start") }
                submission.resultAddr = Address(host: "127.0.0.1", port: port)
                let id = try await client.submit(submission)
                FileHandle.standardError.write(Data("job \(id.ucpString) submitted\n".utf8))
                let zip = try await listener.result(for: id, timeout: limit)
                try report(try ResultZip(path: zip))
                await group.triggerGracefulShutdown()
            }
        }

        private func report(_ zip: ResultZip) throws {
            if let out {
                try zip.unpack(into: out)
                print("result unpacked into \(out)")
            } else {
                FileHandle.standardOutput.write(Data(zip.stdout.utf8))
                if !zip.stderr.isEmpty { FileHandle.standardError.write(Data(zip.stderr.utf8)) }
            }
        }
    }

    struct Put: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Store a file as named data.")
        @OptionGroup var connection: Connection
        @Argument(help: "The data name.") var name: String
        @Argument(help: "The file.") var file: String

        func run() async throws {
            let client = try connection.client()
            defer { Task { await client.shutdown() } }
            try await client.put(name: name, filePath: file)
            print("stored \(name)")
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Fetch named data (to stdout, or --out FILE).")
        @OptionGroup var connection: Connection
        @Argument(help: "The data name.") var name: String
        @Option(help: "The job the data belongs to.") var jobID: String?
        @Option(help: "Write to this file instead of stdout.") var out: String?

        func run() async throws {
            let client = try connection.client()
            defer { Task { await client.shutdown() } }
            let job = try jobID.map(parseUUID)
            if let out {
                let size = try await client.download(name: name, to: out, jobID: job)
                print("wrote \(size) bytes to \(out)")
            } else {
                FileHandle.standardOutput.write(Data(try await client.get(name: name, jobID: job)))
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List data names by prefix (a trailing * globs).")
        @OptionGroup var connection: Connection
        @Argument(help: "The prefix.") var prefix: String = ""

        func run() async throws {
            let client = try connection.client()
            defer { Task { await client.shutdown() } }
            for name in try await client.list(prefix: prefix) { print(name) }
        }
    }
}

/// Splits `KEY=VALUE`.
func split(_ pair: String, option: String) throws -> (String, String) {
    guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
        throw ValidationError("\(option) takes KEY=VALUE, not \(pair)")
    }
    return (String(pair[..<equals]), String(pair[pair.index(after: equals)...]))
}
