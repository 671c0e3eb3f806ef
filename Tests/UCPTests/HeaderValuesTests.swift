import Causal
import Foundation
import Testing

@testable import UCP

/// The header parsers at their edges; `Fuzz/Swift/HeaderFuzz.swift` explores between them.
@Suite("Header values: clocks, dots and proofs from strangers, at their extremes")
struct HeaderValuesTests {
    static let notAClock = "X-UCP-Clock must be a JSON object of node ids to unsigned integers, not "
    static let hex = String(repeating: "ab", count: ClusterKey.authenticatorByteCount)
    static let tag = [UInt8](repeating: 0xab, count: ClusterKey.authenticatorByteCount)

    /// The clock read from `value`, or the error's description.
    static func outcome(_ value: String) -> Result<[String: UInt64], ClockHeaderError> {
        Result { () throws(ClockHeaderError) in try HeaderValues.clock(value) }
    }

    @Test(
        "clock values: 2^64-1 is read, 2^64, negatives and strings are refused",
        arguments: [
            (#"{"b1":18446744073709551615}"#, .success(["b1": UInt64.max])),
            (#"{"b1":0,"b2":7}"#, .success(["b1": 0, "b2": 7])),
            (" {} ", .success([:])),
            (#"{"b1":18446744073709551616}"#, .failure(ClockHeaderError(notAClock + #"{"b1":18446744073709551616}"#))),
            (#"{"b1":-1}"#, .failure(ClockHeaderError(notAClock + #"{"b1":-1}"#))),
            (#"{"b1":-9223372036854775808}"#, .failure(ClockHeaderError(notAClock + #"{"b1":-9223372036854775808}"#))),
            (#"{"b1":"1"}"#, .failure(ClockHeaderError(notAClock + #"{"b1":"1"}"#))),
            (#"{"b1":1.5}"#, .failure(ClockHeaderError(notAClock + #"{"b1":1.5}"#))),
            (#"{"b1":null}"#, .failure(ClockHeaderError(notAClock + #"{"b1":null}"#))),
            ("[1,2]", .failure(ClockHeaderError(notAClock + "[1,2]"))),
            ("not json", .failure(ClockHeaderError(notAClock + "not json"))),
            ("", .failure(ClockHeaderError(notAClock))),
            (#"{"\ud800":1}"#, .failure(ClockHeaderError(notAClock + #"{"\ud800":1}"#))),
        ] as [(String, Result<[String: UInt64], ClockHeaderError>)])
    func clockValues(value: String, expected: Result<[String: UInt64], ClockHeaderError>) {
        #expect(Self.outcome(value) == expected)
    }

    @Test("clock ids: 1 to 128 UTF-8 bytes, however few characters those are")
    func clockIDs() {
        let longest = String(repeating: "n", count: 128)
        #expect(Self.outcome(#"{"\#(longest)":1}"#) == .success([longest: 1]))
        #expect(
            Self.outcome(#"{"\#(longest)n":1}"#)
                == .failure(ClockHeaderError("X-UCP-Clock has a node id of 129 bytes (1...128)")))
        #expect(
            Self.outcome(#"{"":1}"#) == .failure(ClockHeaderError("X-UCP-Clock has a node id of 0 bytes (1...128)")))
        // 42 accented letters of 3 bytes each fit; one letter with 200 combining marks does not.
        let accented = String(repeating: "e\u{301}", count: 42)
        #expect(Self.outcome(#"{"\#(accented)":1}"#) == .success([accented: 1]))
        let oneCharacter = "e" + String(repeating: "\u{301}", count: 200)
        #expect(oneCharacter.count == 1)
        #expect(
            Self.outcome(#"{"\#(oneCharacter)":1}"#)
                == .failure(ClockHeaderError("X-UCP-Clock has a node id of 401 bytes (1...128)")))
    }

    @Test("clock width: 1024 entries are read, 1025 refused")
    func clockEntries() throws {
        let widest = "{" + (0..<1024).map { #""n\#($0)":1"# }.joined(separator: ",") + "}"
        #expect(try HeaderValues.clock(widest).count == 1024)
        let wider = "{" + (0..<1025).map { #""n\#($0)":1"# }.joined(separator: ",") + "}"
        #expect(
            Self.outcome(wider) == .failure(ClockHeaderError("X-UCP-Clock has 1025 entries; at most 1024 are accepted"))
        )
    }

    @Test("clock length: at most 155,648 bytes are read; a longer value is refused before decoding, quoted to 80")
    func clockLength() {
        #expect(HeaderValues.maxClockBytes == 155_648)
        let padded = #"{"b1":1}"# + String(repeating: " ", count: HeaderValues.maxClockBytes - 8)
        #expect(Self.outcome(padded) == .success(["b1": 1]))
        #expect(
            Self.outcome(padded + " ") == .failure(ClockHeaderError("X-UCP-Clock is longer than 1024 entries can be")))
        let long = String(repeating: "x", count: 10_000)
        #expect(Self.outcome(long) == .failure(ClockHeaderError(Self.notAClock + String(repeating: "x", count: 80))))
    }

    @Test(
        "dots: node before the last colon, seq a decimal UInt64",
        arguments: [
            ("exec-1:42", "exec-1", 42), ("x:18446744073709551615", "x", UInt64.max), ("a:b::c:7", "a:b::c", 7),
            ("x:0", "x", 0), (String(repeating: "n", count: 128) + ":1", String(repeating: "n", count: 128), 1),
        ] as [(String, String, UInt64)])
    func dots(value: String, node: String, seq: UInt64) throws {
        let dot = try #require(HeaderValues.dot(value))
        #expect(dot.node == node && dot.seq == seq)
        #expect(Dot(header: value) == Dot(node: node, seq: seq))
    }

    @Test(
        "malformed dots are refused",
        arguments: [
            "", "x", "exec-1", ":1", "x:", "x:18446744073709551616", "x:-1", "x:-9223372036854775808", "x: 1", "x:1 ",
            "x:0x10", "x:1e3", String(repeating: "n", count: 129) + ":1", String(repeating: "9", count: 10_000),
            // One character of 401 bytes, and one of 20,000 people joined by zero-width joiners.
            "e" + String(repeating: "\u{301}", count: 200) + ":1",
            String(repeating: "\u{1F468}\u{200D}", count: 20_000) + "\u{1F468}:1",
        ])
    func malformedDots(value: String) {
        #expect(HeaderValues.dot(value) == nil)
        #expect(Dot(header: value) == nil)
    }

    @Test(
        "proof times: every Int64 is read, beyond it is refused",
        arguments: [
            ("-9223372036854775808", Int64.min), ("9223372036854775807", Int64.max), ("0", 0),
            ("1700000000", 1_700_000_000),
            ("-1", -1),
        ] as [(String, Int64)])
    func proofTimes(time: String, seconds: Int64) throws {
        let proof = try #require(HeaderValues.proof("\(time):\(Self.hex)", tagByteCount: 32))
        #expect(proof.seconds == seconds && proof.tag == Self.tag)
    }

    static let malformedProofValues: [String] = {
        let hex = Self.hex
        let short = String(hex.dropLast(2))
        return [
            "", "5", "5:", ":" + hex, "9223372036854775808:" + hex, "-9223372036854775809:" + hex,
            "99999999999999999999:" + hex, "5:" + String(hex.dropLast()), "5:" + hex + "a", "5:" + hex + "ab",
            "5:" + short, "5:" + short + "zz", "5:" + short + "-1", " 5:" + hex, "5 :" + hex, "0x5:" + hex,
            // A leading colon was skipped by the former split(separator:); it is malformed.
            ":5:" + hex,
        ]
    }()

    @Test("malformed proofs are refused", arguments: malformedProofValues)
    func malformedProofs(value: String) {
        #expect(HeaderValues.proof(value, tagByteCount: 32) == nil)
    }

    @Test("proof hex: either case, two digits a byte")
    func proofHex() throws {
        let proof = try #require(HeaderValues.proof("5:" + String(repeating: "0fA9", count: 16), tagByteCount: 32))
        #expect(proof.tag == Array(repeating: [0x0f, 0xa9], count: 16).flatMap { $0 })
        #expect(HeaderValues.bytes(hex: "") == [])
        #expect(HeaderValues.bytes(hex: "f") == nil)
        #expect(HeaderValues.bytes(hex: "fg") == nil)
    }

    @Test(
        "skew: the exact distance, even between Int64.min and Int64.max",
        arguments: [
            (1_700_000_300, 1_700_000_000, 300, true), (1_699_999_700, 1_700_000_000, 300, true),
            (1_700_000_301, 1_700_000_000, 300, false), (1_699_999_699, 1_700_000_000, 300, false),
            (Int64.min, 1_700_000_000, 300, false), (Int64.max, 1_700_000_000, 300, false),
            (Int64.min, Int64.max, UInt64.max, true), (Int64.max, Int64.min, UInt64.max, true),
            (Int64.min, Int64.max, UInt64.max - 1, false), (0, Int64.min, 1 << 63, true),
            (0, Int64.min, (1 << 63) - 1, false), (Int64.max, Int64.max, 0, true), (-1, 0, 0, false),
        ] as [(Int64, Int64, UInt64, Bool)])
    func skew(sent: Int64, now: Int64, skew: UInt64, within: Bool) {
        #expect(HeaderValues.isWithin(sent, of: now, skew: skew) == within)
    }

    @Test("ClusterAuth refuses proofs at Int64.min and Int64.max as stale, and malformed ones by their form")
    func clusterAuth() {
        let auth = ClusterAuth(key: ClusterKey.random())
        let now: Int64 = 1_700_000_000
        func problem(_ proof: String) -> String? {
            auth.problem(method: "PUT", path: "/job/done/x", clock: "{}", dot: nil, proof: proof, now: now)
        }
        #expect(
            problem("-9223372036854775808:\(Self.hex)")
                == "X-UCP-Auth was made at -9223372036854775808, not within ±300 s of this node's time 1700000000")
        #expect(
            problem("9223372036854775807:\(Self.hex)")
                == "X-UCP-Auth was made at 9223372036854775807, not within ±300 s of this node's time 1700000000")
        #expect(problem("\(now):\(Self.hex)") == "X-UCP-Auth does not match this cluster's key")
        #expect(problem(":\(now):\(Self.hex)") == "X-UCP-Auth must be <unix seconds>:<64 hex digits>")
        let good = auth.proof(method: "PUT", path: "/job/done/x", clock: "{}", dot: nil, at: now - 300)
        #expect(problem(good) == nil)
    }
}
