import ArgumentParser
import Causal
import Foundation

/// `ucp demo`: the cluster demo (the default) or the causal group demo.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run a demo: a local UCP cluster doing real work (default), or a causal broadcast group.",
        subcommands: [ClusterDemoCommand.self, GroupDemoCommand.self],
        defaultSubcommand: ClusterDemoCommand.self
    )
}

/// `ucp demo cluster`: broker, datastore and executors as processes on loopback running a batch of jobs.
struct ClusterDemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract:
            "Start two federated brokers, a datastore and executors on 127.0.0.1; run jobs, an emergency and a failure; print what happened."
    )

    @Option(help: "Executor processes.") var executors = 3
    @Option(help: "Rounds of five jobs each (plus a trapping and a runaway job).") var rounds = 4
    @Flag(help: "Keep the cluster's folder (logs, data) afterwards.") var keep = false

    func validate() throws {
        guard (1...16).contains(executors) else { throw ValidationError("--executors must be between 1 and 16") }
        guard (1...1000).contains(rounds) else { throw ValidationError("--rounds must be between 1 and 1000") }
    }

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        try await ClusterDemo(executors: executors, rounds: rounds, keep: keep).run()
    }
}

/// `ucp demo group`: a causal broadcast group on the loop, with random delays and duplicates, and what it delivered.
struct GroupDemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "group",
        abstract: "Run a causal broadcast group in this process and print delivery statistics."
    )

    @Option(help: "Nodes in the group.") var nodes = 5
    @Option(help: "Messages each node broadcasts.") var messages = 1000
    @Option(help: "Largest network delay in milliseconds.") var maxDelay = 4
    @Option(help: "Seed for delays, duplicates and emergencies.") var seed: UInt64 = 2026

    func validate() throws {
        guard (2...64).contains(nodes) else { throw ValidationError("--nodes must be between 2 and 64") }
        guard messages > 0 else { throw ValidationError("--messages must be positive") }
        guard maxDelay >= 0 else { throw ValidationError("--max-delay must not be negative") }
    }

    func run() async throws {
        let demo = CausalGroupDemo(
            nodes: nodes, messagesPerNode: messages, maxDelay: .milliseconds(maxDelay), seed: seed)
        print(
            "causal group: \(nodes) nodes x \(messages) broadcasts, delays up to \(maxDelay) ms, 10% duplicates, 5% emergencies"
        )
        let start = ContinuousClock.now
        let reports = try await demo.run()
        let elapsed = ContinuousClock.now - start
        print("")
        print("node  delivered  held back  duplicates  emergency  overtakes  violations  clock")
        for r in reports {
            let s = r.statistics
            print(
                pad(r.slot, 4), pad(s.delivered, 10), pad(s.heldBack, 10), pad(s.duplicates, 11),
                pad(r.emergencyDelivered, 10), pad(s.overtakes, 10), pad(r.violations, 11), " \(r.clock)")
        }
        let delivered = reports.reduce(0) { $0 + Int($1.statistics.delivered) }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        print("")
        print(
            "delivered \(delivered) messages in \(String(format: "%.2f", seconds)) s; "
                + "every node ends with the same clock: \(Set(reports.map(\.clock)).count == 1 ? "yes" : "NO")")
        print(
            """
            held back: arrived before a causal predecessor and waited for it; duplicates: dropped;
            emergency: HIGH/CRITICAL deliveries; overtakes: deliveries that went ahead of a waiting lower-level
            message; violations: deliveries an independent checker found out of causal order (must be 0)
            """)
        if reports.contains(where: { $0.violations > 0 }) { throw ExitCode.failure }
    }

    private func pad<T: BinaryInteger>(_ value: T, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: " ", count: max(0, width - text.count)) + text
    }
}
