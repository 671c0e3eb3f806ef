import Causal
import Foundation
import Logging
import Testing
import UCP
import ZIPFoundation

/// The client's side of results under attack: a listener started with the cluster key takes
/// results only from members, and a result zip inflates to a bounded size.
@Suite("Result listener and result zips: keyed and bounded", .timeLimit(.minutes(1)))
struct ResultListenerTrustTests {
    @Test("with a key, a result without a member's proof is 401 and not kept; a member's is kept")
    func keyedListener() async throws {
        let auth = ClusterAuth(key: ClusterKey.random())
        var quiet = Logger(label: "listener-test")
        quiet.logLevel = .warning
        try await withTemporaryFolder { folder in
            try await ResultListener.serving(folder: folder, auth: auth, logger: quiet) { listener, address in
                let zip = try resultZip("member\n")
                let stranger = NodeHTTPClient(clock: NodeClock(nodeID: "stranger", role: .dotted))
                let member = NodeHTTPClient(clock: NodeClock(nodeID: "broker", role: .member), auth: auth)
                defer {
                    Task {
                        await stranger.shutdown()
                        await member.shutdown()
                    }
                }
                let job = UUID()
                await #expect(throws: NodeCallError.self) {
                    try await stranger.upload(.PUT, address, "/result/\(job.ucpString)", bytes: zip)
                }
                #expect(!FileManager.default.fileExists(atPath: listener.path(for: job)))
                try await member.upload(.PUT, address, "/result/\(job.ucpString)", bytes: zip)
                let path = try await listener.result(for: job, timeout: .seconds(10))
                #expect(try ResultZip(path: path).stdout == "member\n")
            }
        }
    }

    @Test("a zip that inflates past the limit is refused while it inflates")
    func zipBomb() throws {
        let archive = try Archive(accessMode: .create)
        let zeros = Data(count: 4 << 20)
        try archive.addEntry(
            with: "stdout.txt", type: .file, uncompressedSize: Int64(zeros.count), compressionMethod: .deflate,
            provider: { position, size in zeros.subdata(in: Int(position)..<Int(position) + size) })
        let bytes = Array(try #require(archive.data))
        #expect(bytes.count < 64 << 10, "deflated zeros are small")
        #expect(throws: ResultZipError.self) { try ResultZip(bytes: bytes, maxBytes: 1 << 20) }
        #expect(try ResultZip(bytes: bytes).entries["stdout.txt"]?.count == 4 << 20)
    }
}
