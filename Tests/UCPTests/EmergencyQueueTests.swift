import Foundation
import Testing
@testable import UCP

@Suite("An emergency job behind a long queue, at the broker", .timeLimit(.minutes(3)))
struct EmergencyQueueTests {
    @Test("a CRITICAL job submitted behind 10,000 queued LOW jobs is among the next jobs dispatched")
    func overtakesTheQueue() async throws {
        // A busy executor: each submission takes 40 ms, so the queue drains slowly.
        let executor = FakeExecutor(submitDelay: .milliseconds(40))
        try await withBroker({ $0.maxConcurrentDispatches = 8 }) { broker, address in
            try await withServer(executor.router()) { port in
                let base = "http://\(address)"
                _ = try await send(.PUT, base + "/executors/register", json: executor.registration(port: port))
                // The queue is filled through the broker's own submit (what the HTTP route calls),
                // which keeps the test's time on the scheduling rather than on 10,000 requests.
                let normal = try JSONDecoder().decode(JobSubmitBody.self, from: Data(submission(waitFor: []).utf8))
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for lane in 0..<4 {
                        group.addTask {
                            for _ in stride(from: lane, to: 10_000, by: 4) { try await broker.submit(UUID(), normal) }
                        }
                    }
                    try await group.waitForAll()
                }
                let queued = try #require(try broker.store.jobCounts()[.queued])
                #expect(queued >= 5000, "most of the 10,000 jobs still wait: \(queued)")

                let critical = UUID()
                let ahead = executor.submitted.count
                let (status, body) = try await send(
                    .PUT, base + "/job/submit/\(critical)",
                    json: submission(waitFor: []).replacingOccurrences(
                        of: #""delete":true"#, with: #""delete":true,"emergency":"CRITICAL""#))
                #expect(status == .ok, "\(body)")
                try await eventually("the CRITICAL job reached the executor") {
                    executor.submitted.contains { $0.id == critical }
                }
                let position = try #require(executor.submitted.firstIndex { $0.id == critical })
                // At most the dispatches already under way (8) and one pass's worth went first.
                #expect(position - ahead <= 16, "dispatched \(position - ahead) jobs after it was submitted")
                #expect(try broker.store.jobCounts()[.queued]! > 1000, "it overtook thousands of queued jobs")
            }
        }
    }
}
