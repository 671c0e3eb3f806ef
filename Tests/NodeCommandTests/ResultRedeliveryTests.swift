import Causal
import Foundation
import Testing
@testable import UCP

@testable import ucp

/// A result is delivered to its client once, however often its executor sends it and however
/// the broker is killed and restarted around the delivery.
@Suite("Result redelivery: a broker killed around a delivery delivers once", .serialized, .timeLimit(.minutes(5)))
struct ResultRedeliveryTests {
    /// An executor stand-in: sends a job's result (`PUT /result/{job_id}`, stamped with its own
    /// dots) until the broker answers 200, through connection failures and 5xx while the broker
    /// restarts; bounded by `timeout`.
    static func deliver(
        _ upload: ResultUpload, of job: UUID, from executor: NodeHTTPClient, to broker: Address,
        timeout: Duration = .seconds(60)
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            do {
                try await executor.upload(.PUT, broker, "/result/\(job.ucpString)", bytes: upload.zip, filename: "r.zip")
                return
            } catch let error as NodeCallError where error.status == nil || (error.status ?? 0) >= 500 {
                guard ContinuousClock.now < deadline else { throw error }
                try await Task.sleep(for: .milliseconds(100))  // the executor's retry period
            }
        }
    }

    @Test("a result sent again after its delivery, across a broker kill -9 and restart, is answered 200 and not delivered again")
    func resendAfterRestart() async throws {
        try await ProcessNodes.withNodes("redeliver") { nodes in
            let broker = try nodes.broker()
            try await nodes.datastore(broker: broker)
            let client = UCPClient(broker: broker)
            let executorID = UUID()
            let executor = NodeHTTPClient(clock: NodeClock(nodeID: executorID.ucpString, role: .dotted))
            defer {
                Task {
                    await client.shutdown()
                    await executor.shutdown()
                }
            }
            try await nodes.withResultListener { listener, resultAddr in
                let hello = try ShippedJob.hello.wasm()
                let upload = try ResultUpload(text: "once\n")

                // Delivered, then the broker dies and comes back; the executor, which never heard
                // the answer, sends the result again.
                let first = JobSubmission(module: .bytes(hello), waitFor: [], resultAddr: resultAddr)
                try await client.submit(first)
                try await Self.deliver(upload, of: first.jobID, from: executor, to: broker)
                _ = try await listener.result(for: first.jobID, timeout: .seconds(10))
                try nodes.crashAndRestart("broker")
                try await Self.deliver(upload, of: first.jobID, from: executor, to: broker)
                #expect(listener.duplicatesDropped == 0, "the broker delivered the result a second time")

                // Killed at random points around the delivery: before, during, after.
                var generator = SystemRandomNumberGenerator()
                var kills = 0
                for round in 0..<8 {
                    let job = JobSubmission(module: .bytes(hello), waitFor: [], resultAddr: resultAddr)
                    try await client.submit(job)
                    let delay = Int.random(in: 0...40, using: &generator)
                    async let sent: Void = Self.deliver(upload, of: job.jobID, from: executor, to: broker)
                    try await Task.sleep(for: .milliseconds(delay))  // the fault's random offset
                    try nodes.crashAndRestart("broker")
                    kills += 1
                    try await sent
                    let path = try await listener.result(for: job.jobID, timeout: .seconds(30))
                    #expect(try ResultZip(path: path).stdout == "once\n", "round \(round), kill after \(delay) ms")
                    let ledger = try await client.http.decode(
                        LedgerView.self, .GET, broker, "/ledger/\(job.jobID.ucpString)")
                    #expect(ledger.accepted?.executor == executorID)
                    #expect(ledger.rejected.isEmpty)
                    // Sent once more after the answer: never delivered again.
                    let before = listener.duplicatesDropped
                    try await Self.deliver(upload, of: job.jobID, from: executor, to: broker)
                    #expect(listener.duplicatesDropped == before, "round \(round): a delivered result was sent again")
                }
                // A copy reaches the client twice only when the broker died between the client's
                // answer and its own record of it; the client drops it.
                #expect(listener.duplicatesDropped <= kills)
                #expect(nodes.isRunning("broker"))
            }
        }
    }
}
