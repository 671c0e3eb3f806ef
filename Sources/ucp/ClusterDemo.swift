import Causal
import Foundation
import Logging
import ServiceLifecycle
import UCP

/// `make demo`: two federated brokers, a datastore and executors as separate processes on
/// 127.0.0.1; a batch of the shipped jobs through both brokers, some waiting for others; an
/// emergency raised mid-run whose jobs overtake the queue; an executor frozen until it is declared
/// failed, its jobs redeployed and its late result refused, then killed; a summary.
struct ClusterDemo {
    var executors = 3
    var brokers = 2
    var rounds = 4
    var keep = false

    /// One job of the batch and what it should print.
    struct Planned {
        var label: String
        var submission: JobSubmission
        var broker: Int
        var expect: (ResultZip) -> Bool
    }

    func run() async throws {
        let folder = NSTemporaryDirectory() + "ucp-demo-" + UUID().ucpString.prefix(8)
        let (timeLimit, ticker) = try await Self.calibratedTimeLimit(folder: folder + "/calibration")
        print(
            "time limit of every job: \(secondsText(timeLimit)) (\(Int(Self.timeLimitMargin))× a ticker job here: "
                + "\(String(format: "%.0f", milliseconds(ticker))) ms)")
        print("cluster in \(folder) (one log file per process):")
        let cluster = try await LocalCluster.start(
            in: folder, brokers: brokers, executors: executors, timeLimit: timeLimit, heartbeatSeconds: 0.5,
            suspectAfterSeconds: 1.5, failAfterSeconds: 3, workers: 1, log: { print($0) })
        let stopOnSignal = SignalStopper { cluster.stop() }
        defer {
            stopOnSignal.cancel()
            if !keep { try? FileManager.default.removeItem(atPath: folder) }
        }
        let clients = cluster.brokers.map { cluster.client(of: $0) }
        var killed: String?
        do {
            try await cluster.withResultListener(client: clients[0]) { listener, address in
                let start = ContinuousClock.now
                let batch = try await runBatch(
                    cluster: cluster, clients: clients, listener: listener, resultAddr: address, timeLimit: timeLimit)
                let emergency = try await emergencyAct(
                    cluster: cluster, clients: clients, listener: listener, resultAddr: address)
                killed = try await failureAct(
                    cluster: cluster, clients: clients, listener: listener, resultAddr: address)
                try await summary(
                    cluster: cluster, jobs: batch + emergency.normal + 3 + 2 * executors,
                    elapsed: ContinuousClock.now - start, emergency: emergency)
            }
        } catch {
            for client in clients { await client.shutdown() }
            cluster.stop()
            throw error
        }
        for client in clients { await client.shutdown() }
        let unclean = cluster.stop().filter { $0 != killed }
        let stopped = cluster.processes.count - (killed == nil ? 0 : 1)
        print(
            "\nstopped \(stopped - unclean.count) of \(stopped) processes cleanly (SIGTERM, exit 0); \(killed ?? "none") was killed"
        )
        if !unclean.isEmpty { throw DemoError("did not stop cleanly: \(unclean.joined(separator: ", "))") }
        print("\nall right: every result, wait_for order, the emergency and the failure were as they should be")
    }

    /// Prints what the platform did: redeployments, refused results, emergency latency, the
    /// federation's state, every node's clock.
    private func summary(cluster: LocalCluster, jobs: Int, elapsed: Duration, emergency: EmergencyReport) async throws {
        print("\nsummary")
        print(
            "  \(jobs) jobs in \(String(format: "%.1f", milliseconds(elapsed) / 1000)) s through \(cluster.brokers.count) brokers"
        )
        var redeployments = 0
        for (index, broker) in cluster.brokers.enumerated() {
            let status = try await cluster.status(of: broker)
            redeployments += status.redeployments
            let peers = status.peers.map { "\($0.id.prefix(8)) \($0.connected ? "connected" : "DISCONNECTED")" }
            print(
                "  broker \(index + 1) \(status.broker.prefix(8)): ledger accepted \(status.ledger.accepted), "
                    + "refused \(status.ledger.rejected); redeployed \(status.redeployments); peers: \(peers.joined(separator: ", "))"
            )
        }
        print("  redeployments: \(redeployments); FCFS refusals are replicated, so both brokers count the same")
        let p50 = emergency.latencies[emergency.latencies.count / 2]
        print(
            "  emergency (CRITICAL) submit-to-result: p50 \(String(format: "%.0f", p50)) ms, max "
                + "\(String(format: "%.0f", emergency.latencies.last ?? 0)) ms, ahead of \(emergency.overtaken) queued LOW jobs"
        )
        print("\nfinal clocks (brokers own entries; other nodes carry a dot: node:seq):")
        for (name, view) in await cluster.clocks() {
            print(
                "  \(name.padding(toLength: 11, withPad: " ", startingAt: 0)) \(view.map { "\($0.stamp)" } ?? "unreachable")"
            )
        }
    }

    /// Runs the batch of shipped jobs, each round through one broker in turn; returns how many.
    private func runBatch(
        cluster: LocalCluster, clients: [UCPClient], listener: ResultListener, resultAddr: Address, timeLimit: Double
    ) async throws -> Int {
        let client = clients[0]
        let text = "causal order is the order in which one event could have influenced another\n"
        try await client.put(name: "demo/story.txt", bytes: Array(String(repeating: text, count: 20).utf8))
        var plan: [Planned] = []
        // Plans `job` through the broker whose turn `round` is. Each check sees only its own
        // round's values: the loop's `round` is a new constant every turn.
        func add(
            _ label: String, _ job: ShippedJob, round: Int, args: [String] = [], stdin: String? = nil,
            data: [String: [UInt8]] = [:], named: [String: String] = [:], waitFor: [UUID]? = nil,
            expect: @escaping (ResultZip) -> Bool
        ) throws -> UUID {
            var submission = JobSubmission(
                module: .bytes(try job.wasm()), args: args, stdin: stdin.map { .bytes(Array($0.utf8)) },
                jobData: data, namedData: named, waitFor: waitFor, resultAddr: resultAddr)
            submission.jobID = UUID()
            plan.append(Planned(label: label, submission: submission, broker: round % clients.count, expect: expect))
            return submission.jobID
        }
        for round in 1...rounds {
            let hello = try add("hello #\(round)", .hello, round: round) { $0.stdout == "Hello, world!\n" }
            let numbers = (1...(10 * round)).map(String.init)
            let total = (1...(10 * round)).reduce(0, +)
            let sum = try add("sum 1...\(10 * round)", .sum, round: round, args: numbers) { $0.stdout == "\(total)\n" }
            let echoed = "round \(round)\n"
            _ = try add("echo after hello #\(round)", .echo, round: round, stdin: echoed, waitFor: [hello]) {
                $0.stdout == echoed
            }
            _ = try add(
                "wordcount (named data)", .wordcount, round: round, args: ["/story.txt"],
                named: ["demo/story.txt": "/story.txt"], waitFor: [sum]
            ) { $0.stdout == "260 /story.txt\n" }
            _ = try add(
                "wordcount (job data)", .wordcount, round: round, args: ["/in.txt"],
                data: ["/in.txt": Array("a b c\n".utf8)]
            ) { $0.stdout == "3 /in.txt\n" }
        }
        _ = try add("trap (fails)", .trap, round: rounds) {
            $0.stderr.contains("trap") || $0.stderr.contains("unreachable")
        }
        _ = try add("spin (time limit \(secondsText(timeLimit)))", .spin, round: rounds) {
            $0.stderr.lowercased().contains("time limit")
        }

        print("\nsubmitting \(plan.count) jobs through both brokers (\(rounds * 2) wait for another job):")
        let start = ContinuousClock.now
        for job in plan { _ = try await clients[job.broker].submit(job.submission) }
        var failures = 0
        var results: [(Planned, ResultZip)] = []
        try await withThrowingTaskGroup(of: (Int, ResultZip).self) { group in
            for (index, job) in plan.enumerated() {
                let id = job.submission.jobID
                group.addTask {
                    let path = try await listener.result(for: id, timeout: .seconds(120))
                    return (index, try ResultZip(path: path))
                }
            }
            for try await (index, zip) in group {
                results.append((plan[index], zip))
            }
        }
        let elapsed = ContinuousClock.now - start
        var perExecutor: [String: Int] = [:]
        var orderChecked = 0
        var orderViolations = 0
        var views: [UUID: JobView] = [:]
        for job in plan {
            if let view = try? await client.http.decode(
                JobView.self, .GET, cluster.broker, "/job/\(job.submission.jobID.ucpString)")
            {
                views[job.submission.jobID] = view
                perExecutor[view.executor ?? "?", default: 0] += 1
            }
        }
        print("")
        for (job, zip) in results.sorted(by: { $0.0.label < $1.0.label }) {
            let ok = job.expect(zip)
            if !ok { failures += 1 }
            let out = (zip.stdout.isEmpty ? zip.stderr : zip.stdout).split(separator: "\n").first ?? ""
            let view = views[job.submission.jobID]
            var order = ""
            if let waits = job.submission.waitFor, let mine = view?.assigned {
                for dependency in waits {
                    guard let done = views[dependency]?.done else { continue }
                    orderChecked += 1
                    let relation = done.compare(mine)
                    if relation != .before { orderViolations += 1 }
                    order =
                        relation == .before
                        ? "  (dependency done → this assigned: happened-before)" : "  (ORDER \(relation))"
                }
            }
            print(
                "  \(ok ? "ok  " : "FAIL") \(job.label.padding(toLength: 26, withPad: " ", startingAt: 0)) \(out.prefix(60))\(order)"
            )
        }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        print(
            "\n\(plan.count) jobs in \(String(format: "%.2f", seconds)) s, \(String(format: "%.1f", Double(plan.count) / seconds)) jobs/s "
                + "(the spin job alone runs to its \(secondsText(timeLimit)) limit; `make bench-jobs` measures throughput)"
        )
        print(
            "per executor: "
                + perExecutor.sorted { $0.key < $1.key }.map { "\($0.key.prefix(8)) \($0.value)" }.joined(
                    separator: ", "))
        print("wait_for order checked on broker clock stamps: \(orderChecked), violations: \(orderViolations)")
        if failures > 0 || orderViolations > 0 {
            throw DemoError(
                "\(failures) results were not what the job should print; \(orderViolations) order violations")
        }
        return plan.count
    }
}

/// Runs `stop` and exits when SIGINT or SIGTERM arrives, so that no cluster process outlives
/// the demo.
final class SignalStopper: @unchecked Sendable {  // immutable after init; dispatch sources are thread-safe
    private let sources: [any DispatchSourceSignal]

    init(_ stop: @escaping @Sendable () -> Void) {
        sources = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                FileHandle.standardError.write(Data("\nstopping the cluster\n".utf8))
                stop()
                exit(130)
            }
            source.resume()
            return source
        }
    }

    func cancel() {
        for source in sources { source.cancel() }
    }
}
