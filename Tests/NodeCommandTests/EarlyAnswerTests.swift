import Causal
import Foundation
import NetworkFaults
import Synchronization
import Testing
@testable import UCP

@testable import ucp

/// A result receiver that answers before it has read the body (and then reads on, or hangs up)
/// must not stop the broker that forwards to it.
@Suite("Early answers: a result receiver answering before the body is read", .serialized, .timeLimit(.minutes(4)))
struct EarlyAnswerTests {
    /// A raw HTTP server on 127.0.0.1 that answers `200 null` as soon as a request's head has
    /// arrived, then either reads the body on (discarding it) or hangs up at once. One thread per
    /// connection; ``close()`` stops accepting.
    final class EarlyReceiver: @unchecked Sendable {
        let fd: Int32
        let port: Int
        let hangUp: Bool
        private let answered = Mutex(0)

        init(hangUp: Bool) throws {
            fd = try Socket.listen()
            port = try Socket.localPort(fd)
            self.hangUp = hangUp
            Thread { [self] in
                while true {
                    let connection = accept(fd, nil, nil)
                    guard connection >= 0 else { return }
                    Thread { self.serve(connection) }.start()
                }
            }.start()
        }

        /// Requests answered so far.
        var count: Int { answered.withLock { $0 } }

        private func serve(_ connection: Int32) {
            defer { Glibc.close(connection) }
            var head: [UInt8] = []
            var byte: UInt8 = 0
            while !head.suffix(4).elementsEqual(Array("\r\n\r\n".utf8)) {
                guard recv(connection, &byte, 1, 0) == 1 else { return }
                head.append(byte)
            }
            answered.withLock { $0 += 1 }
            Socket.send(connection, Array("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\nnull".utf8))
            if hangUp { return }
            _ = Socket.waitForClose(connection, timeout: .seconds(30))
        }

        func close() {
            shutdown(fd, Int32(SHUT_RDWR))
            Glibc.close(fd)
        }
    }

    @Test("results of 1 MiB forwarded to receivers that answer early, reading on or hanging up: the broker stays up", arguments: [false, true])
    func earlyAnswer(hangUp: Bool) async throws {
        ignoreBrokenPipes()
        let receiver = try EarlyReceiver(hangUp: hangUp)
        defer { receiver.close() }
        try await ProcessNodes.withNodes("early") { nodes in
            let broker = try nodes.broker()
            try await nodes.datastore(broker: broker)
            let client = UCPClient(broker: broker)
            let executor = NodeHTTPClient(clock: NodeClock(nodeID: UUID().ucpString, role: .dotted))
            defer {
                Task {
                    await client.shutdown()
                    await executor.shutdown()
                }
            }
            let upload = try ResultUpload(text: "big\n", padding: 1 << 20)
            let hello = try ShippedJob.hello.wasm()
            for round in 0..<3 {
                let job = JobSubmission(
                    module: .bytes(hello), waitFor: [], resultAddr: Address(host: "127.0.0.1", port: receiver.port))
                try await client.submit(job)
                do {
                    try await executor.upload(
                        .PUT, broker, "/result/\(job.jobID.ucpString)", bytes: upload.zip, filename: "r.zip")
                } catch let error as NodeCallError where error.status == 502 {
                    // The receiver hung up before the broker had sent everything: a failed delivery.
                    #expect(hangUp, "round \(round): \(error)")
                }
                #expect(nodes.isRunning("broker"), "round \(round): the broker stopped")
                _ = try await client.http.call(.GET, broker, "/ping")
            }
            #expect(receiver.count >= 3)
        }
    }
}
