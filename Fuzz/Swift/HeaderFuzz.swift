import Foundation

// libFuzzer target for the header parsers in Sources/UCP/Node/HeaderValues.swift: the values of
// X-UCP-Clock, X-UCP-Dot and X-UCP-Auth, which any stranger can send a node. Built by
// Fuzz/Swift/build.sh from that file and this one (not by SwiftPM).
//
// The first byte of an input picks the parser: `c` clock, `d` dot, `p` proof; any other byte
// feeds the rest to all three. The rest is the header value, as HTTP hands it over (bytes that
// are not UTF-8 become U+FFFD). Besides not crashing, each parser must keep the invariants
// below; a broken one stops the run with a message naming the input.

/// The authenticator length of `ClusterKey` (HMAC-SHA-512-256), which ClusterAuth passes.
private let tagByteCount = 32

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let bytes = UnsafeBufferPointer(start: data + 1, count: size - 1)
    let value = String(decoding: bytes, as: UTF8.self)
    switch data[0] {
    case UInt8(ascii: "c"): checkClock(value)
    case UInt8(ascii: "d"): checkDot(value)
    case UInt8(ascii: "p"): checkProof(value, bytes: bytes)
    default:
        checkClock(value)
        checkDot(value)
        checkProof(value, bytes: bytes)
    }
    return 0
}

/// Stops the run, naming the broken invariant and the value.
private func require(_ condition: Bool, _ what: @autoclosure () -> String, _ value: String) {
    if !condition { fatalError("\(what()) — value: \(value.debugDescription.prefix(300))") }
}

/// A clock is refused with an `X-UCP-Clock` error, or has at most `maxClockEntries` entries of
/// 1...`maxNodeIDLength` UTF-8 bytes and survives a round trip through its header form.
private func checkClock(_ value: String) {
    let clock: [String: UInt64]
    do throws(ClockHeaderError) {
        clock = try HeaderValues.clock(value)
    } catch {
        require(error.description.hasPrefix(HeaderValues.clockHeader + " "), "error without the header's name", value)
        return
    }
    require(value.utf8.count <= HeaderValues.maxClockBytes, "a clock over \(HeaderValues.maxClockBytes) bytes", value)
    require(clock.count <= HeaderValues.maxClockEntries, "a clock of \(clock.count) entries", value)
    for id in clock.keys {
        require(
            !id.isEmpty && id.utf8.count <= HeaderValues.maxNodeIDLength, "a node id of \(id.utf8.count) bytes", value)
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    guard let data = try? encoder.encode(clock) else { return require(false, "a clock that does not encode", value) }
    let again = try? HeaderValues.clock(String(decoding: data, as: UTF8.self))
    require(again == clock, "a clock that reads back as \(String(describing: again))", value)
}

/// A dot has a node of 1...`maxNodeIDLength` UTF-8 bytes, and `node:seq` reads back as itself.
private func checkDot(_ value: String) {
    guard let (node, seq) = HeaderValues.dot(value) else { return }
    require(
        !node.isEmpty && node.utf8.count <= HeaderValues.maxNodeIDLength, "a dot node of \(node.utf8.count) bytes",
        value)
    let again = HeaderValues.dot("\(node):\(seq)")
    require(again?.node == node && again?.seq == seq, "a dot that reads back as \(String(describing: again))", value)
}

/// A proof has a 32-byte tag that is the hex after the colon, and reads back as itself; the
/// skew check agrees with 128-bit arithmetic for its time and for times taken from the bytes.
private func checkProof(_ value: String, bytes: UnsafeBufferPointer<UInt8>) {
    if let (seconds, tag) = HeaderValues.proof(value, tagByteCount: tagByteCount) {
        require(tag.count == tagByteCount, "a tag of \(tag.count) bytes", value)
        let hex = tag.map { String(format: "%02x", $0) }.joined()
        require(value.lowercased().hasSuffix(":" + hex), "a tag that is not the value's hex", value)
        let again = HeaderValues.proof("\(seconds):\(hex)", tagByteCount: tagByteCount)
        require(again?.seconds == seconds && again?.tag == tag, "a proof that reads back differently", value)
        for now in [0, 1_800_000_000, Int64.min, Int64.max, -1] {
            for skew in [0, 300, UInt64(Int64.max), UInt64.max] { checkSkew(seconds, now, skew, value) }
        }
    }
    // Times and skews straight from the input's bytes, to reach every corner of the arithmetic.
    if bytes.count >= 24 {
        let raw = UnsafeRawBufferPointer(bytes)
        let sent = Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: Int64.self))
        let now = Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: Int64.self))
        let skew = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        checkSkew(sent, now, skew, value)
    }
}

/// `isWithin` agrees with |sent - now| ≤ skew computed in 128 bits, where nothing overflows.
private func checkSkew(_ sent: Int64, _ now: Int64, _ skew: UInt64, _ value: String) {
    let distance = Int128(sent) - Int128(now)
    let expected = distance.magnitude <= UInt128(skew)
    require(
        HeaderValues.isWithin(sent, of: now, skew: skew) == expected,
        "isWithin(\(sent), of: \(now), skew: \(skew)) is not \(expected)", value)
}
