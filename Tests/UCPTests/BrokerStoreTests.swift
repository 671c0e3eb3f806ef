import Foundation
import Testing
@testable import UCP

@Suite("The broker's SQLite state, without sockets")
struct BrokerStoreTests {
    static func job(_ id: UUID = UUID(), waitFor: [UUID] = [], b: UInt64) -> JobRecord {
        JobRecord(
            id: id, info: JobInfo(wasmBin: DataReference(name: "exec.wasm")), waitFor: waitFor, state: .queued,
            submitted: ClockStamp(clock: ["b": b]))
    }

    @Test("wait_for releases a job only when every job it names is done; unknown and duplicate ids are refused")
    func waitFor() throws {
        try withTemporaryFolder { folder in
            let store = try BrokerStore(rootdir: folder)
            defer { try? store.close() }
            let first = Self.job(b: 1)
            let second = Self.job(b: 2)
            #expect(try store.submit(first, cause: nil) == .queued)
            #expect(try store.submit(second, cause: nil) == .queued)
            let later = Self.job(waitFor: [first.id, second.id], b: 3)
            #expect(try store.submit(later, cause: nil) == .waiting)
            let ghost = UUID()
            #expect(throws: BrokerStoreError.unknownJobs([ghost])) {
                try store.submit(Self.job(waitFor: [ghost], b: 4), cause: nil)
            }
            #expect(throws: BrokerStoreError.duplicateJob(first.id)) { try store.submit(first, cause: nil) }

            // An assigned job submitted again is handed back by its executor: queued once more.
            let handed = Self.job(b: 5)
            try store.submit(handed, cause: nil)
            let holder = ExecutorRecord(id: UUID())
            try store.registerExecutor(ExecutorEntry(record: holder, hosts: [], lastHeartbeat: 0), clock: [:])
            #expect(try store.assign(handed.id, to: holder.id, stamp: ClockStamp(clock: ["b": 6])))
            #expect(try store.submit(Self.job(handed.id, b: 7), cause: Dot(node: "x", seq: 1)) == .queued)
            #expect(try store.job(handed.id)?.state == .queued)
            #expect(try store.job(handed.id)?.executorID == nil)
            #expect(try store.events(of: handed.id).map(\.kind) == [.submitted, .assigned, .requeued])

            var tick: UInt64 = 10
            let stamp = { () -> ClockStamp in
                tick += 1
                return ClockStamp(clock: ["b": tick])
            }
            #expect(try store.markDone(first.id, stamp: stamp, cause: nil).released == [])
            #expect(try store.job(later.id)?.state == .waiting)
            let outcome = try store.markDone(second.id, stamp: stamp, cause: Dot(node: "e", seq: 3))
            #expect(outcome.released == [later.id])
            #expect(try store.job(later.id)?.state == .queued)
            #expect(try store.markDone(second.id, stamp: stamp, cause: nil).changed == false)
            #expect(throws: BrokerStoreError.unknownJob(UUID(uuidString: "00000000-0000-0000-0000-000000000001")!)) {
                try store.markDone(UUID(uuidString: "00000000-0000-0000-0000-000000000001")!, stamp: stamp, cause: nil)
            }
            let kinds = try store.events(of: second.id).map(\.kind)
            #expect(kinds == [.submitted, .done])
            #expect(try store.events(of: second.id).last?.cause == Dot(node: "e", seq: 3))
            #expect(try store.savedClock()["b"] ?? 0 >= 12)
        }
    }

    @Test("a reopened store knows its id, clock, executors, datastores, jobs, assignments and locations")
    func reopen() throws {
        try withTemporaryFolder { folder in
            let executor = ExecutorRecord(address: Address(host: "127.0.0.1", port: 9), id: UUID())
            let job = Self.job(b: 1)
            let datastore = UUID()
            let id: UUID
            do {
                let store = try BrokerStore(rootdir: folder)
                id = try store.identity(proposed: nil).id
                try store.registerExecutor(
                    ExecutorEntry(record: executor, hosts: ["127.0.0.1"], lastHeartbeat: 5), clock: ["x": 1])
                try store.registerDatastore(
                    DatastoreEntry(id: datastore, address: Address(host: "h", port: 1), hosts: ["h"], lastSeen: 5))
                try store.submit(job, cause: nil)
                #expect(try store.assign(job.id, to: executor.id, stamp: ClockStamp(clock: ["b": 2])))
                try store.setLocation("a/b", datastore: datastore)
                try store.saveClock(["b": 7])
                try store.close()
            }
            let store = try BrokerStore(rootdir: folder)
            defer { try? store.close() }
            let (again, clock) = try store.identity(proposed: nil)
            #expect(again == id)
            #expect(clock["b"] == 7)
            #expect(throws: BrokerStoreError.self) { try store.identity(proposed: UUID()) }
            #expect(try store.executors().map(\.id) == [executor.id])
            #expect(try store.datastores().map(\.id) == [datastore])
            let reread = try #require(try store.job(job.id))
            #expect(reread.state == .assigned)
            #expect(reread.executorID == executor.id)
            #expect(reread.assigned == ClockStamp(clock: ["b": 2]))
            #expect(try store.location("a/b") == datastore)
        }
    }

    @Test("failing an executor redeploys its assigned jobs: back in the queue")
    func fail() throws {
        try withTemporaryFolder { folder in
            let store = try BrokerStore(rootdir: folder)
            defer { try? store.close() }
            let executor = ExecutorRecord(id: UUID())
            try store.registerExecutor(ExecutorEntry(record: executor, hosts: [], lastHeartbeat: 0), clock: [:])
            let job = Self.job(b: 1)
            try store.submit(job, cause: nil)
            #expect(try store.assign(job.id, to: executor.id, stamp: ClockStamp(clock: ["b": 2])))
            let outcome = try store.failExecutors([executor.id]) { ClockStamp(clock: ["b": 3]) }
            #expect(outcome.redeployed == [job.id])
            #expect(try store.executors().isEmpty)
            #expect(try store.job(job.id)?.state == .queued)
            #expect(try store.queuedJobs().map(\.id) == [job.id])
            #expect(try store.heartbeatExecutor(executor.id, capabilities: Capabilities(), at: 9) == false)
            #expect(try store.events(of: job.id).map(\.kind) == [.submitted, .assigned, .redeployed])
            #expect(try store.redeploymentCount() == 1)
            #expect(try store.executorSummaries().map(\.failed) == [true])
        }
    }
}
