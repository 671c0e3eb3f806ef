import Causal
import Foundation
import NetworkFaults
import Testing
@testable import UCP

@testable import ucp

/// A result cut off mid-body (its executor was killed while sending) or whose zip is not whole
/// changes nothing at a `ucp broker`: the ledger decides only on a complete, verified result.
@Suite("Result integrity: truncated results never reach the ledger", .serialized, .timeLimit(.minutes(4)))
struct ResultIntegrityTests {
    @Test("results cut at random offsets, and zips cut inside whole bodies, are refused; the real result then wins")
    func truncatedResults() async throws {
        ignoreBrokenPipes()
        try await ProcessNodes.withNodes("truncated") { nodes in
            let broker = try nodes.broker()
            try await nodes.datastore(broker: broker)
            let client = UCPClient(broker: broker)
            defer { Task { await client.shutdown() } }
            try await nodes.withResultListener { listener, resultAddr in
                // Queued with no executor yet, so that only the stand-in sends results for now.
                let job = JobSubmission(module: .bytes(try ShippedJob.hello.wasm()), waitFor: [], resultAddr: resultAddr)
                try await client.submit(job)
                let key = job.jobID.ucpString
                let upload = try ResultUpload(text: "forged\n", padding: 256 << 10)
                let body = upload.body
                let stand = NodeClock(nodeID: UUID().ucpString, role: .dotted)

                // Cut anywhere in the body: the sender dies and the connection ends there.
                var generator = SystemRandomNumberGenerator()
                let offsets = [0, 1, upload.form.head.count, body.count - 1]
                    + (0..<12).map { _ in Int.random(in: 1..<body.count, using: &generator) }
                for offset in offsets {
                    let fd = try Socket.connect(port: broker.port)
                    let bytes = upload.request("/result/\(key)", body: Array(body.prefix(offset)), clock: stand,
                        contentLength: body.count)
                    _ = Socket.send(fd, bytes)
                    shutdown(fd, Int32(SHUT_WR))
                    _ = await Socket.closed(fd, timeout: .seconds(20))
                    close(fd)
                    let ledger = try await client.http.decode(LedgerView.self, .GET, broker, "/ledger/\(key)")
                    #expect(ledger.accepted == nil, "a result cut after \(offset) of \(body.count) bytes was accepted")
                }
                // A whole body whose zip is cut: answered 400, still nothing accepted.
                for cut in [0, upload.zip.count / 3, upload.zip.count - 22, upload.zip.count - 1] {
                    let fd = try Socket.connect(port: broker.port)
                    _ = Socket.send(fd, upload.request("/result/\(key)", body: upload.withZipCut(at: cut), clock: stand))
                    let status = await answerStatus(fd, timeout: .seconds(20))
                    close(fd)
                    #expect(status == 400, "a zip cut at \(cut) of \(upload.zip.count) bytes was answered \(String(describing: status))")
                }
                let refused = try await client.http.decode(LedgerView.self, .GET, broker, "/ledger/\(key)")
                #expect(refused.accepted == nil && refused.rejected.isEmpty, "\(refused)")
                #expect(nodes.isRunning("broker"))

                // The real executor runs the job; its result is the one accepted and delivered.
                let executorID = UUID()
                try nodes.executor("executor", broker: broker, id: executorID)
                let path = try await listener.result(for: job.jobID, timeout: .seconds(90))
                #expect(try ResultZip(path: path).stdout == "Hello, world!\n")
                let ledger = try await client.http.decode(LedgerView.self, .GET, broker, "/ledger/\(key)")
                #expect(ledger.accepted?.executor == executorID)
                #expect(ledger.rejected.isEmpty)
            }
        }
    }
}
