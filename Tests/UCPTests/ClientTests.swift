import Causal
import Foundation
import Logging
import ServiceLifecycle
import Testing
import UCP
import ZIPFoundation

/// A zip holding `stdout.txt` = `stdout`, as bytes.
func zipBytes(stdout: String) throws -> [UInt8] {
    let archive = try Archive(data: Data(), accessMode: .create)
    let data = Data(stdout.utf8)
    try archive.addEntry(
        with: "stdout.txt", type: .file, uncompressedSize: Int64(data.count),
        provider: { position, size in data.subdata(in: Int(position)..<Int(position) + size) })
    return Array(try #require(archive.data))
}

@Suite("Client library: data, submission bodies, result listener", .timeLimit(.minutes(3)))
struct ClientTests {
    @Test("put, get, download and list go to the broker's data routes")
    func data() async throws {
        try await withTestBroker { broker, address in
            let client = UCPClient(broker: address)
            do {
                try await client.put(name: "dir/a b.txt", bytes: Array("hello".utf8))
                #expect(broker[\.data]["dir/a b.txt"] == Array("hello".utf8))
                let jobID = UUID()
                #expect(try await client.get(name: "dir/a b.txt", jobID: jobID) == Array("hello".utf8))
                #expect(broker[\.dataRequests].last == .init(name: "dir/a b.txt", jobID: jobID.ucpString))
                try await withTemporaryFolder { folder in
                    try write("from a file", to: folder + "/in.txt")
                    try await client.put(name: "dir/file", filePath: folder + "/in.txt")
                    #expect(try await client.download(name: "dir/file", to: folder + "/out.txt") == 11)
                    #expect(try read(folder + "/out.txt") == "from a file")
                }
                #expect(try await client.list(prefix: "dir/") == ["dir/a b.txt", "dir/file"])
                let error = await #expect(throws: NodeCallError.self) { try await client.get(name: "missing") }
                #expect(error?.status == 404)
                await #expect(throws: InvalidName.self) { try await client.put(name: "../x", bytes: []) }
            } catch {
                await client.shutdown()
                throw error
            }
            await client.shutdown()
        }
    }

    @Test("submit uploads the job's data and sends UCP's exact submission body")
    func submitBodies() async throws {
        try await withTestBroker { broker, address in
            let client = UCPClient(broker: address)
            let jobID = UUID()
            let id = jobID.ucpString
            let other = UUID()
            let job = JobSubmission(
                jobID: jobID, module: .bytes([0, 0x61, 0x73, 0x6D]), args: ["-v"], env: ["K": "V"],
                stdin: .bytes(Array("in".utf8)), jobData: ["/data/x.txt": Array("x".utf8)],
                namedData: ["shared": "/shared"], zipResults: ["/out": "/"], namedResults: ["/out/r": "r"],
                waitFor: [other], emergency: .high, resultAddr: Address(host: "127.0.0.1", port: 8004), delete: false)
            do {
                #expect(try await client.submit(job) == jobID)
            } catch {
                await client.shutdown()
                throw error
            }
            await client.shutdown()
            let data = broker[\.data]
            #expect(data[id + "/exec.wasm"] == [0, 0x61, 0x73, 0x6D])
            #expect(data[id + "/stdin"] == Array("in".utf8))
            #expect(data[id + "/data/x.txt"] == Array("x".utf8))

            let raw = try #require(broker[\.submits][id])
            let object = try #require(try JSONSerialization.jsonObject(with: Data(raw)) as? [String: Any])
            #expect(Set(object.keys) == ["job_info", "wait_for"])
            #expect(object["wait_for"] as? [String] == [other.ucpString])
            let body = try UCPJSON.decode(JobSubmitBody.self, from: Data(raw))
            let expected = JobInfo(
                wasmBin: DataReference(name: id + "/exec.wasm"), stdin: DataReference(name: "stdin"),
                jobData: [id + "/stdin": "stdin", id + "/data/x.txt": "/data/x.txt"], namedData: ["shared": "/shared"],
                args: ["-v"], env: ["K": "V"], zipResults: ["/out": "/"], namedResults: ["/out/r": "r"],
                resultAddr: Address(host: "127.0.0.1", port: 8004), delete: false, emergency: .high)
            #expect(body.jobInfo == expected)
            #expect(body.waitFor == [other])
            // The executor accepts what the client built (every name and path is valid).
            #expect(throws: Never.self) { try JobSpec(jobID: jobID, info: body.jobInfo) }
        }
    }

    @Test("a submission without wait_for leaves the key out; named inputs are referred to as they are")
    func submitNamed() throws {
        let jobID = UUID()
        let job = JobSubmission(
            jobID: jobID, module: .named("lib/prog.wasm", path: "prog.wasm"), stdin: .named("inputs/in.txt"))
        let (info, uploads) = try job.jobInfo()
        #expect(uploads.isEmpty)
        #expect(info.wasmBin == DataReference(name: "lib/prog.wasm", path: "prog.wasm"))
        #expect(info.wasmBinIsNamed)
        #expect(info.stdin == DataReference(name: "inputs/in.txt", path: "stdin"))
        #expect(info.stdinIsNamed)
        let json = String(decoding: try UCPJSON.encode(JobSubmitBody(jobInfo: info)), as: UTF8.self)
        #expect(!json.contains("wait_for"))
        #expect(throws: InvalidName.self) { try JobSubmission(module: .bytes([], path: "../x.wasm")).jobInfo() }
    }

    @Test("the result listener saves a result as <job_id>.zip and wakes the waiter at once")
    func resultListener() async throws {
        try await withTemporaryFolder { folder in
            let (ports, portSink) = AsyncStream.makeStream(of: Int.self)
            var logger = Logger(label: "results-test")
            logger.logLevel = .warning
            let listener = try ResultListener(folder: folder + "/results", port: 0, logger: logger) { port in
                portSink.yield(port)
                portSink.finish()
            }
            let group = ServiceGroup(services: [listener], gracefulShutdownSignals: [], logger: logger)
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                var iterator = ports.makeAsyncIterator()
                let port = try #require(await iterator.next())
                #expect(listener.address == Address(host: "127.0.0.1", port: port))
                let sender = NodeHTTPClient(clock: NodeClock(nodeID: "executor-x", role: .dotted))
                do {
                    let early = UUID()
                    let waiting = Task { try await listener.result(for: early, timeout: .seconds(30)) }
                    try await sender.upload(
                        .PUT, Address(host: "127.0.0.1", port: port), "/result/\(early.ucpString)",
                        bytes: try zipBytes(stdout: "early\n"), filename: "r.zip")
                    let path = try await waiting.value
                    #expect(path == folder + "/results/\(early.ucpString).zip" || path.hasSuffix(early.ucpString + ".zip"))
                    #expect(try ResultZip(path: path).stdout == "early\n")

                    // A result that came before anyone asked is kept and returned at once.
                    let late = UUID()
                    try await sender.upload(
                        .PUT, Address(host: "127.0.0.1", port: port), "/result/\(late.ucpString)",
                        bytes: try zipBytes(stdout: "late\n"))
                    #expect(try ResultZip(path: try await listener.result(for: late, timeout: .seconds(5))).stdout == "late\n")

                    await #expect(throws: ResultTimeout.self) {
                        try await listener.result(for: UUID(), timeout: .milliseconds(200))
                    }
                    let bad = await #expect(throws: NodeCallError.self) {
                        try await sender.call(.PUT, Address(host: "127.0.0.1", port: port), "/result/\(UUID().uuidString)")
                    }
                    #expect(bad?.status == 400)
                } catch {
                    await sender.shutdown()
                    await group.triggerGracefulShutdown()
                    throw error
                }
                await sender.shutdown()
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
        }
    }

    @Test("waitForStoredResult polls <job_id>/result until it is stored, within its deadline")
    func storedResult() async throws {
        try await withTestBroker { broker, address in
            let client = UCPClient(broker: address)
            let jobID = UUID()
            let id = jobID.ucpString
            let store = Task {
                try await Task.sleep(for: .milliseconds(300))
                broker.state.withLock { $0.data[id + "/result"] = try? zipBytes(stdout: "stored\n") }
            }
            do {
                let bytes = try await client.waitForStoredResult(jobID: jobID, timeout: .seconds(20))
                #expect(try ResultZip(bytes: bytes).stdout == "stored\n")
                #expect(broker[\.dataRequests].last == .init(name: id + "/result", jobID: id))
                await #expect(throws: ResultTimeout.self) {
                    try await client.waitForStoredResult(jobID: UUID(), timeout: .milliseconds(300))
                }
            } catch {
                await client.shutdown()
                throw error
            }
            try await store.value
            await client.shutdown()
        }
    }
}
