import Causal
import NIOCore
import Foundation
import Testing
import UCP

@Suite("Executor jobs over loopback with a test broker", .timeLimit(.minutes(3)))
struct ExecutorJobTests {
    /// Runs `body` with a test broker and an executor node configured by `configure`.
    func withNode(
        _ configure: @Sendable (inout ExecutorConfiguration) -> Void = { _ in },
        _ body: @Sendable (TestBroker, ExecutorNode, Address, String) async throws -> Void
    ) async throws {
        try await withTestBroker { broker, brokerAddress in
            try await withTemporaryFolder { root in
                var configuration = try testExecutorConfiguration(broker: brokerAddress, rootdir: root + "/exec")
                configure(&configuration)
                try await withExecutorNode(configuration) { node, address, _ in
                    try await body(broker, node, address, root)
                }
            }
        }
    }

    @Test("a job with job data, named data and named results runs end to end; its result zip reaches the broker")
    func endToEnd() async throws {
        try await withNode { broker, node, address, root in
            let jobID = UUID()
            let id = jobID.ucpString
            // The job's own data, as UCP's client would upload it.
            let submission = JobSubmission(
                jobID: jobID, module: .bytes(try ShippedJob.wordcount.wasm()), args: ["/input.txt"],
                jobData: ["/input.txt": Array("one two three".utf8)], namedData: ["shared/words.txt": "/words.txt"],
                directories: ["made/here"], namedResults: ["/words.txt": "copies/words.txt"],
                resultAddr: Address(host: "127.0.0.1", port: 9))
            let (info, uploads) = try submission.jobInfo()
            broker.state.withLock { s in
                for upload in uploads { s.data[upload.name] = upload.bytes }
                s.data["shared/words.txt"] = Array("a b".utf8)
            }
            let (status, _) = try await submitToExecutor(address, jobID, info)
            #expect(status == 200)
            try await eventually("job done") { broker[\.done].contains(id) }

            let zip = try ResultZip(bytes: try #require(broker[\.results][id]))
            #expect(zip.stdout == "3 /input.txt\n")
            #expect(zip.stderr == "")
            #expect(zip.entries["input.txt"] == Array("one two three".utf8))
            #expect(zip.entries["words.txt"] == Array("a b".utf8))
            #expect(broker[\.data]["copies/words.txt"] == Array("a b".utf8))
            // Names and ?job_id= exactly as UCP's executor asks for them.
            let requests = Set(broker[\.dataRequests])
            #expect(requests.contains(.init(name: id + "/exec.wasm", jobID: nil)))
            #expect(requests.contains(.init(name: id + "/input.txt", jobID: id)))
            #expect(requests.contains(.init(name: "shared/words.txt", jobID: nil)))
            // delete: true removes the folder and asks the broker to delete the job's data.
            try await eventually("the job's folder removed") { !FileManager.default.fileExists(atPath: root + "/exec/" + id) }
            try await eventually("the broker asked to delete") { broker[\.deletes] == [id] }

            try await eventually("the job settled") { node.executor?.status(of: jobID)?.state == .done }
            let status2 = try #require(node.executor?.status(of: jobID))
            #expect(status2.outcome == "exited with code 0")
            let names = status2.events.map(\.event)
            #expect(names.starts(with: ["accepted", "fetched", "queued", "started", "finished"]))
            #expect(names.contains("named_result") && names.contains("result_sent") && names.contains("done"))
            // Every event is stamped with the executor's dot, in order.
            let seqs = status2.events.compactMap { $0.stamp.dot?.seq }
            #expect(seqs.count == status2.events.count && seqs == seqs.sorted() && Set(seqs).count == seqs.count)
            #expect(status2.events.allSatisfy { $0.stamp.dot?.node == node.executorID?.ucpString })

            let (getStatus, body, _) = try await call(.GET, "http://\(address)/job/\(id)")
            #expect(getStatus == .ok)
            #expect(try UCPJSON.decode(ExecutorJobStatus.self, from: Data(body.readableBytesView)).state == .done)
            let (_, list, _) = try await call(.GET, "http://\(address)/job/list")
            #expect(String(buffer: list) == "[]")
            #expect(node.metrics.exposition().contains("ucp_jobs{state=\"done\"} 1"))
        }
    }

    @Test("a result without result_addr is stored as <job_id>/result")
    func storedResult() async throws {
        try await withNode { broker, _, address, _ in
            let jobID = UUID()
            var info = try shippedJobInfo(.hello, jobID, broker: broker)
            info.resultAddr = Address()
            info.delete = false
            #expect(try await submitToExecutor(address, jobID, info).0 == 200)
            let id = jobID.ucpString
            try await eventually("job done") { broker[\.done].contains(id) }
            #expect(broker[\.results].isEmpty)
            let zip = try ResultZip(bytes: try #require(broker[\.data][id + "/result"]))
            #expect(zip.stdout == "Hello, world!\n")
            // delete: false keeps the job listed until it is deleted.
            let (_, list, _) = try await call(.GET, "http://\(address)/job/list")
            #expect(String(buffer: list) == "[\"\(id)\"]")
            #expect(broker[\.deletes].isEmpty)
            let (deleted, _, _) = try await call(.DELETE, "http://\(address)/job/\(id)")
            #expect(deleted == .ok)
            let (_, after, _) = try await call(.GET, "http://\(address)/job/list")
            #expect(String(buffer: after) == "[]")
        }
    }

    @Test("jobs beyond the worker count queue and all finish")
    func concurrency() async throws {
        try await withNode({ $0.workers = 2 }) { broker, node, address, _ in
            let ids = (0..<8).map { _ in UUID() }
            for id in ids {
                #expect(try await submitToExecutor(address, id, try shippedJobInfo(.hello, id, broker: broker)).0 == 200)
            }
            try await eventually("all done") { broker[\.done].count == ids.count }
            for id in ids {
                let zip = try ResultZip(bytes: try #require(broker[\.results][id.ucpString]))
                #expect(zip.stdout == "Hello, world!\n")
            }
            #expect(node.executor?.queueDepth == 0)
        }
    }

    @Test("the queue starts the most urgent job first, then in order of arrival")
    func emergencyOrder() async throws {
        try await withNode({
            $0.workers = 1
            $0.timeLimit = .seconds(1)
        }) { broker, node, address, _ in
            let spin = UUID()
            #expect(try await submitToExecutor(address, spin, try shippedJobInfo(.spin, spin, broker: broker)).0 == 200)
            try await eventually("spin running") { node.executor?.status(of: spin)?.state == .running }
            let (a, b, c) = (UUID(), UUID(), UUID())
            for (id, level) in [(a, EmergencyLevel.low), (b, .low), (c, .high)] {
                var info = try shippedJobInfo(.hello, id, broker: broker)
                info.emergency = level
                #expect(try await submitToExecutor(address, id, info).0 == 200)
                try await eventually("queued") { node.executor?.status(of: id)?.state == .queued }
            }
            try await eventually("all done") { broker[\.done].count == 4 }
            func started(_ id: UUID) throws -> UInt64 {
                let event = try #require(node.executor?.status(of: id)?.events.first { $0.event == "started" })
                return try #require(event.stamp.dot?.seq)
            }
            #expect(try started(c) < started(a))
            #expect(try started(a) < started(b))
        }
    }

    @Test("a trapping and a runaway job give error results; the executor still runs the next job")
    func trapAndRunaway() async throws {
        try await withNode({ $0.timeLimit = .milliseconds(500) }) { broker, _, address, _ in
            let (trap, spin, hello) = (UUID(), UUID(), UUID())
            #expect(try await submitToExecutor(address, trap, try shippedJobInfo(.trap, trap, broker: broker)).0 == 200)
            #expect(try await submitToExecutor(address, spin, try shippedJobInfo(.spin, spin, broker: broker)).0 == 200)
            try await eventually("both done") { broker[\.done].count == 2 }
            #expect(try await submitToExecutor(address, hello, try shippedJobInfo(.hello, hello, broker: broker)).0 == 200)
            try await eventually("hello done") { broker[\.done].count == 3 }
            let results = broker[\.results]
            let trapZip = try ResultZip(bytes: try #require(results[trap.ucpString]))
            #expect(trapZip.stderr.contains("Encountered Webassembly Trap"))
            let spinZip = try ResultZip(bytes: try #require(results[spin.ucpString]))
            #expect(spinZip.stderr.contains("Time limit"))
            let helloZip = try ResultZip(bytes: try #require(results[hello.ucpString]))
            #expect(helloZip.stdout == "Hello, world!\n")
        }
    }

    @Test("an invalid module and missing data give error results that say why")
    func invalidModuleAndMissingData() async throws {
        try await withNode({ $0.retryWindow = .milliseconds(300) }) { broker, _, address, _ in
            let (bad, missing) = (UUID(), UUID())
            let badID = bad.ucpString
            broker.state.withLock { $0.data[badID + "/exec.wasm"] = Array("not wasm".utf8) }
            let info = JobInfo(wasmBin: DataReference(name: badID + "/exec.wasm"), resultAddr: Address(host: "h", port: 1))
            #expect(try await submitToExecutor(address, bad, info).0 == 200)
            let missingInfo = JobInfo(wasmBin: DataReference(name: "nowhere.wasm"), resultAddr: Address(host: "h", port: 1))
            #expect(try await submitToExecutor(address, missing, missingInfo).0 == 200)
            try await eventually("both done") { broker[\.done].count == 2 }
            let badZip = try ResultZip(bytes: try #require(broker[\.results][badID]))
            #expect(badZip.stderr.contains("Failed to run"))
            let missingZip = try ResultZip(bytes: try #require(broker[\.results][missing.ucpString]))
            #expect(missingZip.stderr.contains("Could not fetch"))
            #expect(missingZip.stderr.contains("nowhere.wasm"))
        }
    }

    @Test("DELETE removes a queued job and answers 404 for an unknown one")
    func deleteJobs() async throws {
        try await withNode({
            $0.workers = 1
            $0.timeLimit = .seconds(1)
        }) { broker, node, address, root in
            let (spin, hello) = (UUID(), UUID())
            #expect(try await submitToExecutor(address, spin, try shippedJobInfo(.spin, spin, broker: broker)).0 == 200)
            try await eventually("spin running") { node.executor?.status(of: spin)?.state == .running }
            #expect(try await submitToExecutor(address, hello, try shippedJobInfo(.hello, hello, broker: broker)).0 == 200)
            try await eventually("hello queued") { node.executor?.status(of: hello)?.state == .queued }
            let helloID = hello.ucpString
            let (_, listed, _) = try await call(.GET, "http://\(address)/job/list")
            #expect(String(buffer: listed).contains(helloID))

            let (deleted, _, _) = try await call(.DELETE, "http://\(address)/job/\(helloID)")
            #expect(deleted == .ok)
            #expect(node.executor?.status(of: hello)?.state == .discarded)
            #expect(!FileManager.default.fileExists(atPath: root + "/exec/" + helloID))
            let (again, _, _) = try await call(.DELETE, "http://\(address)/job/\(helloID)")
            #expect(again == .notFound)
            let (unknown, body, _) = try await call(.DELETE, "http://\(address)/job/\(UUID().ucpString)")
            #expect(unknown == .notFound)
            #expect(String(buffer: body) == #"{"detail":"Job not found"}"#)
            let (_, list, _) = try await call(.GET, "http://\(address)/job/list")
            #expect(String(buffer: list) == "[\"\(spin.ucpString)\"]")

            try await eventually("spin done") { broker[\.done].count == 1 }
            #expect(broker[\.done] == [spin.ucpString])
            #expect(broker[\.results][helloID] == nil)
        }
    }

    @Test(
        "names and paths that could leave the job's folder are refused and nothing is written",
        arguments: [
            #"{"wasm_bin": ["x.wasm", "../../x.wasm"]}"#,
            #"{"wasm_bin": "x.wasm", "job_data": {"d": "../escape.txt"}}"#,
            #"{"wasm_bin": "x.wasm", "named_data": {"d": "/a/../../escape.txt"}}"#,
            #"{"wasm_bin": "x.wasm", "job_data": {"../d": "in.txt"}}"#,
            #"{"wasm_bin": "x.wasm", "directories": ["../outside"]}"#,
            #"{"wasm_bin": "x.wasm", "zip_results": {"../": "/"}}"#,
            #"{"wasm_bin": "x.wasm", "stdin": ["s", "../s"]}"#,
        ])
    func escapes(body: String) async throws {
        try await withNode { broker, _, address, root in
            let jobID = UUID().ucpString
            let (status, answer, _) = try await call(
                .PUT, "http://\(address)/submit/\(jobID)", body: ByteBuffer(string: body), contentType: "application/json")
            #expect(status == .serviceUnavailable)
            #expect(String(buffer: answer).contains(".."))
            #expect(!FileManager.default.fileExists(atPath: root + "/exec/" + jobID))
            let outside = try FileManager.default.contentsOfDirectory(atPath: root).sorted()
            #expect(outside == ["exec"])
            #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/exec") == ["executor-id"])
            #expect(broker[\.dataRequests].isEmpty)
        }
    }

    @Test("malformed JSON and job ids are answered 422 with a detail naming the field")
    func malformed() async throws {
        try await withNode { _, _, address, _ in
            let id = UUID().ucpString
            let cases: [(String, String)] = [
                ("{", "not valid JSON"), (#"{"args": []}"#, "wasm_bin"), (#"{"wasm_bin": 5}"#, "wasm_bin"),
                (#"{"wasm_bin": "x", "capabilities": {"memory": "lots"}}"#, "capabilities.memory"),
            ]
            for (body, field) in cases {
                let (status, answer, _) = try await call(
                    .PUT, "http://\(address)/submit/\(id)", body: ByteBuffer(string: body), contentType: "application/json")
                #expect(status == .unprocessableEntity, "\(body)")
                #expect(String(buffer: answer).contains(field), "\(body)")
            }
            let (status, _, _) = try await call(
                .PUT, "http://\(address)/submit/not-a-uuid", body: ByteBuffer(string: #"{"wasm_bin": "x"}"#),
                contentType: "application/json")
            #expect(status == .unprocessableEntity)
        }
    }
}
