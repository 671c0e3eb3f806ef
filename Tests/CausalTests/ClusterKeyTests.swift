import Causal
import Foundation
import Testing

@Suite("ClusterKey")
struct ClusterKeyTests {
    static let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

    static let badHexCases: [(String, ClusterKeyError)] = {
        let hex = Self.hex
        let g = UInt8(ascii: "g")
        let x = UInt8(ascii: "x")
        var cases: [(String, ClusterKeyError)] = []
        cases.append((String(hex.dropLast(2)), .wrongLength(31)))
        cases.append((hex + "00", .wrongLength(33)))
        cases.append((String(hex.dropLast()), .oddHexDigits(63)))
        cases.append(("", .wrongLength(0)))
        cases.append((String(hex.dropLast(1)) + "g", .invalidHex(offset: 63, character: g)))
        cases.append(("0x" + String(hex.dropFirst(2)), .invalidHex(offset: 1, character: x)))
        cases.append((String(hex.prefix(32)) + " " + String(hex.suffix(32)), .invalidHex(offset: 32, character: 0x20)))
        return cases
    }()

    @Test("hex round trip, upper or lower case, whitespace around it")
    func hexRoundTrip() throws {
        let key = try ClusterKey(hex: Self.hex)
        #expect(key.bytes == Array(0..<32))
        #expect(key.hex == Self.hex)
        #expect(try ClusterKey(hex: "  \n" + Self.hex.uppercased() + "\r\n\t") == key)
        #expect(!key.description.contains("0a0b"))
    }

    @Test("random keys differ and are 32 bytes")
    func random() {
        let keys = (0..<8).map { _ in ClusterKey.random() }
        #expect(Set(keys).count == 8)
        #expect(keys.allSatisfy { $0.bytes.count == 32 })
    }

    @Test(
        "bad key text is refused with the failing value",
        arguments: badHexCases)
    func badHex(text: String, error: ClusterKeyError) {
        #expect(throws: error) { try ClusterKey(hex: text) }
    }

    @Test("key files: hex with a newline, 32 raw bytes, and clear errors for the rest")
    func files() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let key = ClusterKey.random()
        let written = folder.file("written.key")
        try key.write(toFile: written)
        #expect(try ClusterKey(contentsOfFile: written) == key)
        let mode = try FileManager.default.attributesOfItem(atPath: written)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(throws: ClusterKeyError.self) { try key.write(toFile: written) }  // never overwritten
        #expect(try ClusterKey(contentsOfFile: written) == key)

        let raw = folder.file("raw.key")
        try Data(key.bytes).write(to: URL(fileURLWithPath: raw))
        #expect(try ClusterKey(contentsOfFile: raw) == key)

        let short = folder.file("short.key")
        try Data(key.bytes.prefix(20)).write(to: URL(fileURLWithPath: short))
        #expect(throws: ClusterKeyError.self) { try ClusterKey(contentsOfFile: short) }

        let big = folder.file("big.key")
        try Data(repeating: 0x41, count: 100_000).write(to: URL(fileURLWithPath: big))
        #expect(throws: ClusterKeyError.wrongLength(4097)) { try ClusterKey(contentsOfFile: big) }

        let missing = folder.file("missing.key")
        #expect {
            try ClusterKey(contentsOfFile: missing)
        } throws: { error in
            guard case .unreadable(let path, let reason) = error as? ClusterKeyError else { return false }
            return path == missing && !reason.isEmpty && "\(error)".contains(missing)
        }
    }
}
