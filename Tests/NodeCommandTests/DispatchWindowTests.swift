import Causal
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization
import Testing
@testable import UCP

@testable import ucp

/// `ucp broker --dispatch-window N` never has more than N jobs per core below HIGH assigned to
/// an executor, however many are submitted at once and however many dispatches run at once.
@Suite("Dispatch window: an invariant under concurrent dispatch", .serialized, .timeLimit(.minutes(4)))
struct DispatchWindowTests {
    /// An executor stand-in with one core that takes every job it is sent, holds it until the
    /// test finishes it, and records the most it ever held at once.
    final class HoldingExecutor: Sendable {
        let id = UUID()
        private let state = Mutex((held: [UUID](), most: 0, received: 0))

        var held: [UUID] { state.withLock { $0.held } }
        var most: Int { state.withLock { $0.most } }
        var received: Int { state.withLock { $0.received } }

        func finish(_ job: UUID) { state.withLock { $0.held.removeAll { $0 == job } } }

        func router() -> Router<BasicRequestContext> {
            let router = Router()
            let name = NodeRoutes.instanceName(role: "executor", id: id.ucpString)
            router.get("ping") { _, _ in try JSONResponse.ok(name) }
            router.put("submit/:job_id") { request, context in
                guard let job = UUID(uuidString: try context.parameters.require("job_id")) else {
                    throw APIError(.badRequest, "not a job id")
                }
                _ = try await request.body.collect(upTo: 1 << 20)
                self.state.withLock { state in
                    state.held.append(job)
                    state.received += 1
                    state.most = max(state.most, state.held.count)
                }
                return JSONResponse.null()
            }
            return router
        }

        /// One core, light load.
        static let capabilities = Capabilities(
            memory: 8_000_000_000, disk: 50_000_000_000, cpuLoad: 10, cpuCores: 1, cpuFreq: 2400)
    }

    @Test("window 2, one executor with one core, 40 jobs submitted at once (queued and immediate): never more than 2 held")
    func windowHolds() async throws {
        let window = 2
        try await ProcessNodes.withNodes("window") { nodes in
            let broker = try nodes.broker(["--dispatch-window", String(window)])
            let executor = HoldingExecutor()
            let http = NodeHTTPClient(clock: NodeClock(nodeID: executor.id.ucpString, role: .dotted))
            let client = UCPClient(broker: broker)
            defer {
                Task {
                    await http.shutdown()
                    await client.shutdown()
                }
            }
            var quiet = Logger(label: "holding-executor")
            quiet.logLevel = .warning
            let (ports, sink) = AsyncStream.makeStream(of: Int.self)
            let app = NodeServer.application(router: executor.router(), host: "127.0.0.1", port: 0, logger: quiet) {
                sink.yield($0)
                sink.finish()
            }
            let services = ServiceGroup(services: [app], gracefulShutdownSignals: [], logger: quiet)
            let server = Task { try await services.run() }
            defer { Task { await services.triggerGracefulShutdown() } }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())

            let record = ExecutorRecord(
                address: Address(host: "", port: port), id: executor.id, curCaps: HoldingExecutor.capabilities,
                lastUpdate: Date().timeIntervalSince1970)
            try await http.call(
                .PUT, broker, "/executors/register", json: ExecutorRegistration(hosts: ["127.0.0.1"], executor: record))
            let beats = Task {
                while !Task.isCancelled {
                    _ = try? await http.call(
                        .PUT, broker, "/executors/heartbeat/\(executor.id.ucpString)",
                        json: HoldingExecutor.capabilities)
                    try? await Task.sleep(for: .milliseconds(200))  // the executor's heartbeat period
                }
            }
            defer { beats.cancel() }

            // Half queued (`wait_for: []`), half for immediate dispatch; all at once.
            let jobs = (0..<40).map { index in
                JobSubmission(module: .named("window/none.wasm"), waitFor: index.isMultiple(of: 2) ? [] : nil)
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for job in jobs { group.addTask { try await client.submit(job) } }
                try await group.waitForAll()
            }
            // Finish one held job at a time; the broker sends the next as each is reported done.
            var finished = 0
            while finished < jobs.count {
                try await until("the executor holds a job (\(finished) finished)", timeout: .seconds(30)) {
                    !executor.held.isEmpty
                }
                // Dropped before it is reported done: the broker may send the next one at once.
                let job = executor.held[0]
                executor.finish(job)
                try await http.call(.PUT, broker, "/job/done/\(job.ucpString)")
                finished += 1
                #expect(executor.most <= window, "the executor held \(executor.most) jobs at once")
            }
            #expect(executor.received == jobs.count, "every job was sent once")
            #expect(executor.most == window, "the window was used")
            #expect(nodes.isRunning("broker"))
            server.cancel()
        }
    }
}
