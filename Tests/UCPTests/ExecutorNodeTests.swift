import Foundation
import Testing
import UCP

@Suite("Executor node: registration, heartbeats, identity, shutdown", .timeLimit(.minutes(3)))
struct ExecutorNodeTests {
    @Test("registers with UCP's body, beats, and registers again when the broker forgot it")
    func registrationAndHeartbeat() async throws {
        try await withTestBroker { broker, brokerAddress in
            try await withTemporaryFolder { root in
                let id = UUID()
                var configuration = try testExecutorConfiguration(broker: brokerAddress, rootdir: root + "/exec")
                configuration.executorID = id
                configuration.heartbeatInterval = .milliseconds(100)
                try await withExecutorNode(configuration) { node, address, _ in
                    try await eventually("two heartbeats") { broker[\.heartbeats].count >= 2 }
                    let registration = try #require(broker[\.registrations].first)
                    #expect(registration.hosts == ["127.0.0.1"])
                    #expect(registration.executor.id == id)
                    #expect(registration.executor.address == Address(host: "", port: address.port))
                    #expect(registration.executor.curCaps.cpuCores >= 1)
                    #expect(registration.executor.curCaps.memory > 0)
                    #expect(registration.executor.lastUpdate > 0)
                    #expect(broker[\.heartbeats].allSatisfy { $0 == id })
                    // The registration carried the executor's clock.
                    #expect(broker[\.registeredClocks].first?.isEmpty == false)

                    broker.forgetExecutors()
                    try await eventually("a second registration") { broker[\.registrations].count >= 2 }
                    let before = broker[\.heartbeats].count
                    try await eventually("heartbeats after re-registering") { broker[\.heartbeats].count > before }

                    let (status, ping, _) = try await call(.GET, "http://\(address)/ping")
                    #expect(status == .ok)
                    #expect(String(buffer: ping) == "\"_executor\(id.ucpString)._urban-cp._tcp.local.\"")
                    let (_, metrics, _) = try await call(.GET, "http://\(address)/metrics")
                    let text = String(buffer: metrics)
                    #expect(text.contains("ucp_heartbeats_total"))
                    #expect(text.contains("ucp_queue_depth"))
                    #expect(text.contains("ucp_clock_width"))
                    #expect(text.contains("ucp_jobs{state=\"queued\"}"))
                    let (capsStatus, caps, _) = try await call(.GET, "http://\(address)/capabilities")
                    #expect(capsStatus == .ok)
                    #expect(try UCPJSON.decode(Capabilities.self, from: Data(caps.readableBytesView)).cpuCores >= 1)
                    #expect(node.executorID == id)
                }
            }
        }
    }

    @Test("keeps trying to register until the broker answers")
    func registrationRetries() async throws {
        try await withTestBroker { broker, brokerAddress in
            broker.state.withLock { $0.failRegistrations = 3 }
            try await withTemporaryFolder { root in
                let configuration = try testExecutorConfiguration(broker: brokerAddress, rootdir: root + "/exec")
                try await withExecutorNode(configuration) { node, _, _ in
                    try await eventually("a registration") { broker[\.registrations].count == 1 }
                    #expect(broker[\.failRegistrations] == 0)
                    #expect(node.metrics.exposition().contains("ucp_registrations_total{result=\"error\"} 3"))
                }
            }
        }
    }

    @Test("a generated id is kept in rootdir/executor-id and reused after a restart")
    func stableID() async throws {
        try await withTestBroker { broker, brokerAddress in
            try await withTemporaryFolder { root in
                let configuration = try testExecutorConfiguration(broker: brokerAddress, rootdir: root + "/exec")
                let first = ExecutorNode(configuration: configuration, logger: .init(label: "x")).executorID
                try await withExecutorNode(configuration) { node, _, _ in
                    try await eventually("registration") { broker[\.registrations].count == 1 }
                    #expect(node.executorID == first)
                }
                try await withExecutorNode(configuration) { _, _, _ in
                    try await eventually("registration") { broker[\.registrations].count == 2 }
                }
                let ids = broker[\.registrations].map(\.executor.id)
                #expect(ids.count == 2 && ids[0] == ids[1] && ids[0] == first)
                let kept = try read(root + "/exec/executor-id").trimmingCharacters(in: .whitespacesAndNewlines)
                #expect(UUID(uuidString: kept) == first)
            }
        }
    }

    @Test("graceful shutdown: new jobs get 503, the running job finishes and is reported, queued ones are handed back")
    func gracefulShutdown() async throws {
        try await withTestBroker { broker, brokerAddress in
            try await withTemporaryFolder { root in
                var configuration = try testExecutorConfiguration(broker: brokerAddress, rootdir: root + "/exec")
                configuration.workers = 1
                configuration.timeLimit = .seconds(2)
                // Spin's limit is a fuel budget: on a loaded machine it runs several times 2 s of
                // wall time. The grace only bounds the wait for it; the node stops once it reports.
                configuration.shutdownGrace = .seconds(120)
                let spin = UUID()
                let hello = UUID()
                try await withExecutorNode(configuration) { node, address, group in
                    #expect(try await submitToExecutor(address, spin, try shippedJobInfo(.spin, spin, broker: broker)).0 == 200)
                    try await eventually("the spin job running") { node.executor?.status(of: spin)?.state == .running }
                    #expect(try await submitToExecutor(address, hello, try shippedJobInfo(.hello, hello, broker: broker)).0 == 200)
                    try await eventually("the hello job queued") { node.executor?.status(of: hello)?.state == .queued }
                    await group.beginStopping()
                    try await eventually("refusing jobs") { node.executor?.isAccepting == false }
                    let (status, body) = try await submitToExecutor(address, UUID(), try shippedJobInfo(.hello, UUID(), broker: broker))
                    #expect(status == 503)
                    #expect(body.contains("shutting down"))
                }
                // withExecutorNode returned: the node stopped after the spin job was reported.
                let spinID = spin.ucpString
                let helloID = hello.ucpString
                #expect(broker[\.done] == [spinID])
                let zip = try ResultZip(bytes: try #require(broker[\.results][spinID]))
                #expect(zip.stderr.contains("Time limit"))
                let handedBack = try UCPJSON.decode(JobSubmitBody.self, from: Data(try #require(broker[\.submits][helloID])))
                #expect(handedBack.waitFor == [])
                #expect(handedBack.jobInfo.wasmBin.name == helloID + "/exec.wasm")
            }
        }
    }
}
