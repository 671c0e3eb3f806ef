import Foundation
import Testing
@testable import UCP

@Suite("The result ledger, without sockets")
struct ResultLedgerTests {
    static let e1 = UUID()
    static let e2 = UUID()

    static func claim(_ job: UUID, _ executor: UUID?, seq: UInt64, b: UInt64) -> LedgerEntry {
        LedgerEntry(
            jobID: job, executor: executor, dot: executor.map { Dot(node: $0.ucpString, seq: seq) },
            stamp: ClockStamp(clock: ["b": b]), at: Double(b))
    }

    @Test("the rule: the first claim wins, the accepted executor again is a retry, anyone else is refused")
    func rule() {
        let table: [(first: UUID?, second: UUID?, expected: String)] = [
            (nil, Self.e1, "accepted"), (Self.e1, Self.e1, "retried"), (Self.e1, Self.e2, "rejected"),
            (Self.e1, nil, "rejected"), (nil, nil, "accepted"),
        ]
        for (first, second, expected) in table {
            let job = UUID()
            let accepted = first.map { Self.claim(job, $0, seq: 1, b: 1) }
            let verdict = ResultLedger.decide(Self.claim(job, second, seq: 2, b: 2), given: accepted)
            switch verdict {
            case .accepted(let entry): #expect(expected == "accepted" && entry.executor == second)
            case .retried(let entry): #expect(expected == "retried" && entry == accepted)
            case .rejected(let rejection, let winner):
                #expect(expected == "rejected")
                #expect(winner == accepted)
                #expect(rejection.entry.executor == second)
                #expect(rejection.reason.contains("already accepted"))
            }
        }
    }

    @Test("first result wins; later ones are recorded with their clocks; a retry by the winner is accepted again")
    func firstWins() throws {
        try withTemporaryFolder { folder in
            let store = try BrokerStore(rootdir: folder)
            defer { try? store.close() }
            let metrics = NodeMetrics()
            let ledger = ResultLedger(store: store, metrics: metrics)
            let job = BrokerStoreTests.job(b: 1)
            try store.submit(job, cause: nil)

            let first = Self.claim(job.id, Self.e1, seq: 4, b: 2)
            #expect(try ledger.decide(first) == .accepted(first))
            let late = Self.claim(job.id, Self.e2, seq: 9, b: 3)
            guard case .rejected(let rejection, let accepted) = try ledger.decide(late) else {
                Issue.record("a second executor's result was not refused")
                return
            }
            #expect(accepted == first)
            #expect(rejection.entry == late)
            #expect(try ledger.decide(Self.claim(job.id, Self.e1, seq: 5, b: 4)) == .retried(first))

            let view = try ledger.view(of: job.id)
            #expect(view.accepted == first)
            #expect(view.rejected.map(\.entry) == [late], "the retry is not a rejection")
            #expect(view.rejected.first?.entry.dot == Dot(node: Self.e2.ucpString, seq: 9))
            #expect(view.rejected.first?.entry.stamp == ClockStamp(clock: ["b": 3]))
            #expect(try store.savedClock()["b"] == 4)
            let exposition = metrics.exposition()
            #expect(exposition.contains("ucp_ledger_accepted_total 1"), "\(exposition)")
            #expect(exposition.contains("ucp_ledger_rejected_total 1"), "\(exposition)")

            let ghost = UUID()
            #expect(throws: BrokerStoreError.unknownJob(ghost)) { try ledger.decide(Self.claim(ghost, Self.e1, seq: 1, b: 5)) }
            #expect(throws: BrokerStoreError.unknownJob(ghost)) { try ledger.view(of: ghost) }
        }
    }

    @Test("the ledger survives a reopen: an executor coming back late is still refused")
    func durable() throws {
        try withTemporaryFolder { folder in
            let job = BrokerStoreTests.job(b: 1)
            let first = Self.claim(job.id, Self.e1, seq: 1, b: 2)
            let refused = Self.claim(job.id, Self.e2, seq: 1, b: 3)
            do {
                let store = try BrokerStore(rootdir: folder)
                let ledger = ResultLedger(store: store, metrics: NodeMetrics())
                try store.submit(job, cause: nil)
                #expect(try ledger.decide(first) == .accepted(first))
                #expect(try ledger.decide(refused).accepted == first)
                try store.close()
            }
            let store = try BrokerStore(rootdir: folder)
            defer { try? store.close() }
            let ledger = ResultLedger(store: store, metrics: NodeMetrics())
            let comeback = Self.claim(job.id, Self.e2, seq: 2, b: 7)
            guard case .rejected(_, let accepted) = try ledger.decide(comeback) else {
                Issue.record("a late result after a reopen was not refused")
                return
            }
            #expect(accepted == first)
            #expect(try ledger.decide(Self.claim(job.id, Self.e1, seq: 2, b: 8)) == .retried(first))
            let view = try ledger.view(of: job.id)
            #expect(view.accepted == first)
            #expect(view.rejected.map(\.entry) == [refused, comeback])
        }
    }

    @Test("results racing each other: exactly one is accepted, and every verdict names it")
    func race() async throws {
        try await withTemporaryFolder { folder in
            let store = try BrokerStore(rootdir: folder)
            defer { try? store.close() }
            let ledger = ResultLedger(store: store, metrics: NodeMetrics())
            let job = BrokerStoreTests.job(b: 1)
            try store.submit(job, cause: nil)
            let executors = (0..<16).map { _ in UUID() }
            let verdicts = try await withThrowingTaskGroup(of: LedgerVerdict.self) { group in
                for (index, executor) in executors.enumerated() {
                    group.addTask {
                        try ledger.decide(Self.claim(job.id, executor, seq: 1, b: UInt64(index + 2)))
                    }
                }
                var all: [LedgerVerdict] = []
                for try await verdict in group { all.append(verdict) }
                return all
            }
            let winners = verdicts.compactMap { verdict -> LedgerEntry? in
                if case .accepted(let entry) = verdict { return entry }
                return nil
            }
            #expect(winners.count == 1)
            let winner = try #require(winners.first)
            #expect(verdicts.allSatisfy { $0.accepted == winner })
            let view = try ledger.view(of: job.id)
            #expect(view.accepted == winner)
            #expect(view.rejected.count == executors.count - 1)
            #expect(Set(view.rejected.compactMap(\.entry.executor)) == Set(executors).subtracting([winner.executor!]))
        }
    }
}
