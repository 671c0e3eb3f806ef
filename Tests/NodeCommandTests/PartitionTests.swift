import Causal
import Foundation
import NetworkFaults
import Testing
import UCP

@testable import ucp

/// Two federated `ucp broker` processes whose causal transport runs through a proxy the test cuts.
@Suite("Partition: two ucp broker processes cut apart and healed", .serialized, .timeLimit(.minutes(4)))
struct PartitionTests {
    @Test("cut the link between two broker processes, run jobs on both sides, heal: equal clocks and equal tables")
    func cutAndHeal() async throws {
        let ucp = try #require(ClusterDemoTests.ucp, "ucp is built with the tests")
        let folder = NSTemporaryDirectory() + "ucp-partition-" + UUID().ucpString.prefix(8)
        let proxy = try DelayProxy(maxDelay: .milliseconds(1))
        defer { proxy.close() }
        let cluster = try await LocalCluster.start(
            in: folder, brokers: 2,
            link: { port in
                proxy.setTarget(port)
                return proxy.port
            }, executors: 2, timeLimit: 10, heartbeatSeconds: 0.5, suspectAfterSeconds: 3, failAfterSeconds: 8,
            workers: 1, executable: ucp, log: { _ in })
        let clients = cluster.brokers.map { cluster.client(of: $0) }
        defer { cluster.stop() }
        do {
            try await run(cluster, clients, proxy)
        } catch {
            Issue.record("logs kept in \(folder)")
            for client in clients { await client.shutdown() }
            throw error
        }
        for client in clients { await client.shutdown() }
        try? FileManager.default.removeItem(atPath: folder)
    }

    private func run(_ cluster: LocalCluster, _ clients: [UCPClient], _ proxy: DelayProxy) async throws {
        func statuses() async throws -> [BrokerStatus] {
            var all: [BrokerStatus] = []
            for broker in cluster.brokers { all.append(try await cluster.status(of: broker)) }
            return all
        }
        func converged() async throws -> Bool {
            let all = try await statuses()
            guard let a = all[0].federation, let b = all[1].federation else { return false }
            return a.outbox == 0 && b.outbox == 0 && a.delivered == b.delivered && a.replicaDigest == b.replicaDigest
        }
        try await clients[0].put(name: "part/hello.wasm", bytes: try ShippedJob.hello.wasm())
        try await cluster.withResultListener(client: clients[0]) { listener, resultAddr in
            func runJobs(_ count: Int, through client: UCPClient) async throws {
                let jobs = (0..<count).map { _ in
                    JobSubmission(module: .named("part/hello.wasm"), waitFor: [], resultAddr: resultAddr)
                }
                for job in jobs { _ = try await client.submit(job) }
                for job in jobs {
                    let zip = try ResultZip(path: try await listener.result(for: job.jobID, timeout: .seconds(60)))
                    #expect(zip.stdout == "Hello, world!\n")
                }
            }
            try await runJobs(4, through: clients[0])
            try await until("the brokers agree before the cut", timeout: .seconds(60)) { try await converged() }

            proxy.partition()
            try await until("both brokers see the link down", timeout: .seconds(60)) {
                try await statuses().allSatisfy { $0.peers.allSatisfy { !$0.connected } }
            }
            // Each side runs jobs on its own executor (the named module is known to both).
            try await runJobs(5, through: clients[0])
            try await runJobs(5, through: clients[1])
            let cut = try await statuses()
            #expect(cut[0].federation?.replicaDigest != cut[1].federation?.replicaDigest, "the sides diverged")

            proxy.heal()
            try await until("equal delivered clocks and equal tables after healing", timeout: .seconds(60)) {
                try await converged()
            }
            let healed = try await statuses()
            #expect(healed.allSatisfy { $0.peers.allSatisfy(\.connected) })
            #expect(healed[0].ledger == healed[1].ledger, "one ledger on both brokers")
            #expect(healed[0].ledger.accepted == 14 && healed[0].ledger.rejected == 0)
            #expect(healed[0].jobs == healed[1].jobs, "the same jobs in the same states")
        }
    }
}
