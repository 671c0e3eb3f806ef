import Causal
import Foundation
import NetworkFaults
import Synchronization
import Testing
@testable import UCP

@testable import ucp

/// Many clients uploading modules and submitting jobs at once, through a datastore link that is
/// slow and cut again and again, never stop a `ucp broker`; every job it accepted runs once.
@Suite("Upload storm: concurrent uploads and submissions while the datastore link is slow and cut", .serialized,
    .timeLimit(.minutes(6)))
struct UploadStormTests {
    /// Submissions accepted and refused, across the clients.
    final class Tally: Sendable {
        let state = Mutex((accepted: [UUID](), refused: 0))
    }

    @Test("8 clients × 150 uploads and submissions, no executor yet, the datastore link cut every 40 ms; then 2 executors")
    func storm() async throws {
        ignoreBrokenPipes()
        let clients = 8
        let perClient = 150
        try await ProcessNodes.withNodes("storm") { nodes in
            let broker = try nodes.broker()
            let datastoreID = UUID()
            let datastore = try await nodes.datastore(broker: broker, id: datastoreID)
            // The broker reaches the datastore only through a proxy that delays every chunk and
            // is cut at random while uploads pass through it.
            let proxy = try DelayProxy(target: datastore.port, maxDelay: .milliseconds(5))
            defer { proxy.close() }
            let admin = UCPClient(broker: broker)
            defer { Task { await admin.shutdown() } }
            try await admin.http.call(
                .PUT, broker, "/datastores/register",
                json: DatastoreRegistration(
                    hosts: ["127.0.0.1"],
                    datastore: .init(address: Address(host: "127.0.0.1", port: proxy.port), id: datastoreID)))

            let hello = try ShippedJob.hello.wasm()
            let tally = Tally()
            try await nodes.withResultListener { listener, resultAddr in
                let cutter = Task {
                    var cuts = 0
                    while !Task.isCancelled && cuts < 2000 {
                        try? await Task.sleep(for: .milliseconds(40))  // the fault's period
                        proxy.cut()
                        cuts += 1
                    }
                    return cuts
                }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<clients {
                        group.addTask {
                            let client = UCPClient(broker: broker)
                            defer { Task { await client.shutdown() } }
                            for _ in 0..<perClient {
                                let job = JobSubmission(module: .bytes(hello), waitFor: [], resultAddr: resultAddr)
                                do {
                                    try await client.submit(job)
                                    tally.state.withLock { $0.accepted.append(job.jobID) }
                                } catch let error as NodeCallError where error.status != nil {
                                    // An upload the cut link failed (502): the job was not submitted.
                                    tally.state.withLock { $0.refused += 1 }
                                }
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                cutter.cancel()
                let cuts = await cutter.value
                let (ids, refused) = tally.state.withLock { ($0.accepted, $0.refused) }
                FileHandle.standardError.write(
                    Data("[storm] \(ids.count) accepted, \(refused) refused, \(cuts) cuts\n".utf8))
                #expect(nodes.isRunning("broker"), "the broker stopped during the uploads")
                #expect(ids.count > clients * perClient / 2, "most submissions get through a cut link")

                // Executors join; every accepted job runs once.
                try nodes.executor("executor-1", broker: broker)
                try nodes.executor("executor-2", broker: broker)
                let began = ContinuousClock.now
                for id in ids {
                    let left = .seconds(180) - (ContinuousClock.now - began)
                    let path = try await listener.result(for: id, timeout: max(left, .milliseconds(1)))
                    #expect(try ResultZip(path: path).stdout == "Hello, world!\n")
                }
                let status = try await admin.http.decode(BrokerStatus.self, .GET, broker, "/status")
                #expect(status.ledger.accepted == ids.count, "one accepted result per accepted job")
                #expect(status.ledger.rejected == 0, "no job ran twice")
                #expect(listener.duplicatesDropped == 0)
                #expect(nodes.isRunning("broker"))
            }
        }
    }
}
