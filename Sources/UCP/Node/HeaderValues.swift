import Foundation

/// Reads the values of the headers that nodes send one another — `X-UCP-Clock`, `X-UCP-Dot`
/// and `X-UCP-Auth` — from anyone, without trusting them.
///
/// Parsing only: no key, no clock, no state. This file depends on Foundation alone so that the
/// libFuzzer target in `Fuzz/Swift/` builds from it and its harness (see `Fuzz/Swift/build.sh`).
/// ``ClockStamp``, ``Dot`` and ``ClusterAuth`` call it. Every function is safe from any thread.
enum HeaderValues {
    /// The header that carries the clock.
    static let clockHeader = "X-UCP-Clock"
    /// The header that carries the dot.
    static let dotHeader = "X-UCP-Dot"
    /// Most entries a received clock may have (see ``ClockStamp/maxEntries``).
    static let maxClockEntries = 1024
    /// Longest node id accepted in a clock or dot, in UTF-8 bytes. Bytes, not characters: one
    /// character can hold any number of combining marks, so a bound in characters bounds nothing.
    /// Node ids are UUIDs, 36 bytes, or `client-` and a UUID.
    static let maxNodeIDLength = 128
    /// Longest `X-UCP-Clock` value read: ``maxClockEntries`` entries of the longest id, quotes,
    /// colon, comma and a 20-digit count. Longer values are refused before JSON decoding.
    static let maxClockBytes = maxClockEntries * (maxNodeIDLength + 24)

    /// Reads an `X-UCP-Clock` value: a JSON object of at most ``maxClockEntries`` node ids
    /// (non-empty, at most ``maxNodeIDLength`` UTF-8 bytes) to unsigned 64-bit integers.
    ///
    /// Complexity: O(n) in the value's length, which is at most ``maxClockBytes``.
    /// - Throws: ``ClockHeaderError`` saying what is wrong.
    static func clock(_ value: some StringProtocol) throws(ClockHeaderError) -> [String: UInt64] {
        guard value.utf8.count <= maxClockBytes else {
            throw ClockHeaderError("\(clockHeader) is longer than \(maxClockEntries) entries can be")
        }
        let entries: [String: UInt64]
        do {
            entries = try JSONDecoder().decode([String: UInt64].self, from: Data(value.utf8))
        } catch {
            throw ClockHeaderError(
                "\(clockHeader) must be a JSON object of node ids to unsigned integers, not \(value.prefix(80))")
        }
        guard entries.count <= maxClockEntries else {
            throw ClockHeaderError(
                "\(clockHeader) has \(entries.count) entries; at most \(maxClockEntries) are accepted")
        }
        if let bad = entries.keys.first(where: { $0.isEmpty || $0.utf8.count > maxNodeIDLength }) {
            throw ClockHeaderError("\(clockHeader) has a node id of \(bad.utf8.count) bytes (1...\(maxNodeIDLength))")
        }
        return entries
    }

    /// Reads an `X-UCP-Dot` value `<node>:<seq>`: the node is everything before the last colon
    /// (non-empty, at most ``maxNodeIDLength`` UTF-8 bytes), seq is a decimal `UInt64`.
    ///
    /// - Returns: the node and seq, or nil when the value is not of that form.
    static func dot(_ value: some StringProtocol) -> (node: String, seq: UInt64)? {
        guard let colon = value.lastIndex(of: ":") else { return nil }
        let node = value[..<colon]
        guard !node.isEmpty, node.utf8.count <= maxNodeIDLength, let seq = UInt64(value[value.index(after: colon)...])
        else { return nil }
        return (String(node), seq)
    }

    /// Reads an `X-UCP-Auth` value `<unix seconds>:<2 × tagByteCount hex digits>`: a decimal
    /// `Int64` (any, even far from now: see ``isWithin(_:of:skew:)``) and the tag's bytes.
    ///
    /// - Parameter tagByteCount: the length of the tag in bytes (``ClusterKey/authenticatorByteCount``).
    /// - Returns: the time and the tag (`tagByteCount` bytes), or nil when the value is not of
    ///   that form.
    static func proof(_ value: some StringProtocol, tagByteCount: Int) -> (seconds: Int64, tag: [UInt8])? {
        guard let colon = value.firstIndex(of: ":") else { return nil }
        let hex = value[value.index(after: colon)...]
        guard let seconds = Int64(value[..<colon]), hex.utf8.count == 2 * tagByteCount, let tag = bytes(hex: hex)
        else { return nil }
        return (seconds, tag)
    }

    /// The bytes of an even number of hex digits (either case), or nil.
    static func bytes(hex: some StringProtocol) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(hex.utf8.count / 2)
        var high: UInt8?
        for c in hex.utf8 {
            let v: UInt8
            switch c {
            case 0x30...0x39: v = c - 0x30
            case 0x61...0x66: v = c - 0x61 + 10
            case 0x41...0x46: v = c - 0x41 + 10
            default: return nil
            }
            if let h = high {
                out.append(h << 4 | v)
                high = nil
            } else {
                high = v
            }
        }
        return high == nil ? out : nil
    }

    /// Whether `sent` lies within `skew` seconds of `now`, either side.
    ///
    /// `sent` is a stranger's number and may be anything from `Int64.min` to `Int64.max`: the
    /// distance is computed exactly, without arithmetic that can overflow.
    static func isWithin(_ sent: Int64, of now: Int64, skew: UInt64) -> Bool {
        // The wrapped difference, read as unsigned, is the exact distance (at most 2^64 - 1).
        let distance = sent >= now ? UInt64(bitPattern: sent &- now) : UInt64(bitPattern: now &- sent)
        return distance <= skew
    }
}

/// A malformed `X-UCP-Clock` or `X-UCP-Dot` header.
public struct ClockHeaderError: Error, Hashable, CustomStringConvertible {
    /// What is wrong.
    public var description: String

    /// An error saying `description`.
    public init(_ description: String) {
        self.description = description
    }
}
