import AsyncHTTPClient
import Foundation
import Hummingbird
import NIOCore
import Logging
import NIOHTTP1
import ServiceLifecycle
import Testing
import UCP

/// Runs a datastore node on 127.0.0.1 with a free port over a fresh folder, hands `body` its base
/// URL and the store, and stops the node and removes the folder afterwards.
func withDatastoreNode(
    maxItemBytes: Int64 = 1 << 30, id: UUID = UUID(), _ body: @Sendable (String, Datastore) async throws -> Void
) async throws {
    try await withTemporaryFolder { folder in
        let store = try Datastore(rootdir: folder + "/ds", maxItemBytes: maxItemBytes)
        var logger = Logger(label: "datastore-test")
        logger.logLevel = .warning
        try await withNode("datastore") {
            DatastoreAPI(store: store, id: id).application(host: "127.0.0.1", port: 0, logger: logger, onServerRunning: $0)
        } _: { node in
            try await body("http://127.0.0.1:\(node.port)", store)
        }
    }
}

/// A multipart/form-data body as Python's `requests` sends it for `files={"data": ...}`.
func multipart(field: String = "data", _ content: [UInt8], boundary: String = "b0undary-9f8e7d") -> (ByteBuffer, String)
{
    var buffer = ByteBuffer()
    buffer.writeString(
        "--\(boundary)\r\nContent-Disposition: form-data; name=\"\(field)\"; filename=\"upload.bin\"\r\n")
    buffer.writeString("Content-Type: application/octet-stream\r\n\r\n")
    buffer.writeBytes(content)
    buffer.writeString("\r\n--\(boundary)--\r\n")
    return (buffer, "multipart/form-data; boundary=\(boundary)")
}

/// Sends a request with `headers` added and returns the status and the body (at most 64 MiB).
func call(
    _ method: HTTPMethod, _ url: String, body: ByteBuffer? = nil, contentType: String? = nil,
    headers: [(String, String)] = []
) async throws -> (HTTPResponseStatus, ByteBuffer, HTTPHeaders) {
    var request = HTTPClientRequest(url: url)
    request.method = method
    if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    if let body { request.body = .bytes(body) }
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
    return (response.status, try await response.body.collect(upTo: 64 << 20), response.headers)
}

@Suite("Datastore HTTP API over loopback", .timeLimit(.minutes(2)))
struct DatastoreAPITests {
    @Test("ping answers the zeroconf instance name as a JSON string")
    func ping() async throws {
        let id = UUID()
        try await withDatastoreNode(id: id) { base, _ in
            let (status, body, _) = try await call(.GET, base + "/ping")
            #expect(status == .ok)
            #expect(String(buffer: body) == "\"_datastore\(id.ucpString)._urban-cp._tcp.local.\"")
        }
    }

    @Test("PUT, GET, list and DELETE a nested name as UCP's clients do")
    func roundTrip() async throws {
        try await withDatastoreNode { base, store in
            let job = "3f1c2a4e-0d7b-4c36-9a53-2b8f6f0d1e77"
            let content = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            let (body, type) = multipart(content)
            var (status, answer, headers) = try await call(
                .PUT, base + "/data/\(job)/in%20put.bin", body: body, contentType: type)
            #expect(status == .ok)
            #expect(String(buffer: answer) == "true")
            #expect(store.list() == ["\(job)/in put.bin"])

            (status, answer, headers) = try await call(.GET, base + "/data/\(job)/in%20put.bin")
            #expect(status == .ok)
            #expect(Array(buffer: answer) == content)
            #expect(headers["Content-Disposition"] == ["attachment; filename=\"in put.bin\""])
            #expect(headers["Content-Length"] == ["300000"])

            (status, answer, _) = try await call(.GET, base + "/list")
            #expect(String(buffer: answer) == "[\"\(job)/in put.bin\"]")

            (status, answer, _) = try await call(.DELETE, base + "/data/\(job)/in%20put.bin")
            #expect(status == .ok)
            #expect(String(buffer: answer) == "null")
            (status, answer, _) = try await call(.GET, base + "/data/\(job)/in%20put.bin")
            #expect(status == .notFound)
            #expect(String(buffer: answer).contains("\"detail\""))
            (status, _, _) = try await call(.DELETE, base + "/data/\(job)/in%20put.bin")
            #expect(status == .notFound)

            // UCP's datastore lost its root here; ours takes the next upload.
            (status, _, _) = try await call(.PUT, base + "/data/again", body: multipart([1]).0, contentType: type)
            #expect(status == .ok)
        }
    }

    @Test(
        "bad names get 400 and nothing is written",
        arguments: [
            "/data/..%2Fescape", "/data/a%2F..%2F..%2Fescape", "/data/a//b", "/data/a/./b", "/data/%00x",
            "/data/a%5C..%5Cb", "/data/%2Fetc%2Fpasswd", "/data/x%0Ay",
            // "/" followed by a combining mark (U+0301): still a separator.
            "/data/..%2F%CC%81x", "/data/%2F%CC%81etc%2Fpasswd", "/data/a%2F%CC%81..%2F..%2Fx",
        ])
    func badNames(path: String) async throws {
        try await withDatastoreNode { base, store in
            let (body, type) = multipart(Array("payload".utf8))
            let (status, answer, _) = try await call(.PUT, base + path, body: body, contentType: type)
            #expect(status == .badRequest, "\(path)")
            #expect(String(buffer: answer).contains("\"detail\""))
            #expect(store.list().isEmpty)
            #expect(try FileManager.default.contentsOfDirectory(atPath: store.root.path + "/data").isEmpty)
            #expect(try FileManager.default.contentsOfDirectory(atPath: store.root.path + "/incoming").isEmpty)
            #expect(
                try FileManager.default.contentsOfDirectory(atPath: store.root.path).sorted() == ["data", "incoming"])
            let (getStatus, _, _) = try await call(.GET, base + path)
            #expect(getStatus == .badRequest, "\(path)")
        }
    }

    @Test("an upload over the limit gets 413, with or without a Content-Length, and stores nothing")
    func tooLarge() async throws {
        try await withDatastoreNode(maxItemBytes: 64 << 10) { base, store in
            let big = [UInt8](repeating: 0x5A, count: 4 << 20)
            let (body, type) = multipart(big)
            // With a Content-Length: refused before reading the body.
            var (status, answer, _) = try await call(.PUT, base + "/data/big", body: body, contentType: type)
            #expect(status == .payloadTooLarge)
            #expect(String(buffer: answer).contains("limit"))

            // Streamed without a length: refused once the data passes the limit.
            var request = HTTPClientRequest(url: base + "/data/big-stream")
            request.method = .PUT
            request.headers.add(name: "Content-Type", value: type)
            let chunks = stride(from: 0, to: body.readableBytes, by: 16 << 10).map { start in
                body.getSlice(at: start, length: min(16 << 10, body.readableBytes - start))!
            }
            request.body = .stream(chunks.async, length: .unknown)
            do {
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
                status = response.status
                answer = try await response.body.collect(upTo: 1 << 20)
                #expect(status == .payloadTooLarge)
            } catch {
                // The server may close the connection before the client has sent everything.
                Issue.record("streamed upload failed on the client side: \(error)")
            }
            #expect(store.list().isEmpty)
            #expect(try FileManager.default.contentsOfDirectory(atPath: store.root.path + "/incoming").isEmpty)

            // The node still works.
            (status, _, _) = try await call(
                .PUT, base + "/data/small", body: multipart([1, 2, 3]).0, contentType: type)
            #expect(status == .ok)
        }
    }

    @Test(
        "percent-decoding is strict: a stray % or bytes that are not UTF-8 are refused",
        arguments: [("a%20b", "a b"), ("%2e%2E", ".."), ("plain", "plain"), ("%E5%90%8D", "名")])
    func percentDecoding(raw: String, decoded: String) throws {
        #expect(try DatastoreAPI.percentDecoded(raw) == decoded)
    }

    @Test("malformed percent-encoding", arguments: ["bad%zz", "end%", "end%4", "%C3%28", "%FF"])
    func malformedPercentEncoding(raw: String) {
        #expect(throws: APIError.self) { try DatastoreAPI.percentDecoded(raw) }
    }

    @Test("a body streamed in tiny chunks, with another field first and CRLFs in the data, arrives intact")
    func chunkedMultipart() async throws {
        try await withDatastoreNode { base, store in
            let boundary = "----py-requests-5b2c"
            let content =
                Array("line\r\n--not-a-boundary\r\n\r\n".utf8) + (0..<5000).map { UInt8(truncatingIfNeeded: $0) }
            var body = ByteBuffer()
            body.writeString("--\(boundary)\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nignored\r\n")
            body.writeString("--\(boundary)\r\nContent-Disposition: form-data; name=data; filename=\"x\"\r\n\r\n")
            body.writeBytes(content)
            body.writeString("\r\n--\(boundary)--\r\n")
            var request = HTTPClientRequest(url: base + "/data/chunked/x")
            request.method = .PUT
            request.headers.add(name: "Content-Type", value: "multipart/form-data; boundary=\(boundary)")
            let chunks = stride(from: 0, to: body.readableBytes, by: 7).map { start in
                body.getSlice(at: start, length: min(7, body.readableBytes - start))!
            }
            request.body = .stream(chunks.async, length: .known(Int64(body.readableBytes)))
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
            #expect(response.status == .ok)
            #expect(try store.bytes(of: DataName("chunked/x")) == content)
        }
    }

    @Test("concurrent uploads and deletes in one folder leave a consistent store")
    func concurrentClients() async throws {
        try await withDatastoreNode { base, store in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<12 {
                    group.addTask {
                        let (body, type) = multipart(Array("item \(index)".utf8))
                        let (status, _, _) = try await call(
                            .PUT, base + "/data/shared/dir/item-\(index)", body: body, contentType: type)
                        #expect(status == .ok)
                        if index % 2 == 0 {
                            let (deleted, _, _) = try await call(.DELETE, base + "/data/shared/dir/item-\(index)")
                            #expect(deleted == .ok)
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(store.list() == (0..<12).filter { $0 % 2 == 1 }.map { "shared/dir/item-\($0)" }.sorted())
            for index in stride(from: 1, to: 12, by: 2) {
                let (status, answer, _) = try await call(.GET, base + "/data/shared/dir/item-\(index)")
                #expect(status == .ok)
                #expect(String(buffer: answer) == "item \(index)")
            }
        }
    }

    @Test("a body without a data field, or not multipart, gets 400")
    func badBodies() async throws {
        try await withDatastoreNode { base, store in
            let (wrongField, type) = multipart(field: "file", [1, 2])
            var (status, answer, _) = try await call(.PUT, base + "/data/x", body: wrongField, contentType: type)
            #expect(status == .badRequest)
            #expect(String(buffer: answer).contains("no field named data"))
            (status, _, _) = try await call(
                .PUT, base + "/data/x", body: ByteBuffer(string: "raw"), contentType: "text/plain")
            #expect(status == .badRequest)
            var truncated = multipart([1, 2, 3]).0
            truncated.moveWriterIndex(to: truncated.writerIndex - 20)
            (status, _, _) = try await call(.PUT, base + "/data/x", body: truncated, contentType: type)
            #expect(status == .badRequest)
            #expect(store.list().isEmpty)
        }
    }

    @Test("DELETE /job_data keeps the result; /list pages by prefix and job id; /free counts bytes")
    func jobDataAndPaging() async throws {
        try await withDatastoreNode { base, store in
            let job = UUID().ucpString
            for name in ["\(job)/result", "\(job)/a", "\(job)/b", "\(job)/c", "\(job)/d", "shared/x"] {
                try store.put(DataName(name), bytes: [1])
            }
            var (status, answer, _) = try await call(.GET, base + "/list/\(job)/?page=2&size=2")
            #expect(status == .ok)
            #expect(
                try UCPJSON.decode(DataPage.self, from: Data(buffer: answer))
                    == DataPage(items: ["\(job)/c", "\(job)/d"], total: 5, page: 2, size: 2, pages: 3))
            (status, answer, _) = try await call(.GET, base + "/list/sha?job_id=\(job)")
            #expect(try UCPJSON.decode(DataPage.self, from: Data(buffer: answer)).total == 0)
            (status, answer, _) = try await call(.GET, base + "/list/shared")
            #expect(try UCPJSON.decode(DataPage.self, from: Data(buffer: answer)).items == ["shared/x"])
            for query in ["size=101", "size=0", "page=0", "page=x", "job_id=nope"] {
                (status, _, _) = try await call(.GET, base + "/list/\(job)?\(query)")
                #expect(status == .badRequest, "\(query)")
            }

            (status, answer, _) = try await call(.DELETE, base + "/job_data/\(job)")
            #expect(status == .ok)
            #expect(String(buffer: answer) == "null")
            #expect(store.list() == ["\(job)/result", "shared/x"])
            (status, _, _) = try await call(.DELETE, base + "/job_data/not-a-uuid")
            #expect(status == .badRequest)

            (status, answer, _) = try await call(.GET, base + "/free")
            #expect(status == .ok)
            #expect((Int(String(buffer: answer)) ?? 0) > 0)
        }
    }
}
