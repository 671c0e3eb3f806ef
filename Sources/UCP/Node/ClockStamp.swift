import Foundation

/// One event of an executor, datastore or client: the node's id and its own sequence number.
///
/// Nodes that are not brokers own no clock entry (see ``NodeClock``); their events are told
/// apart by dots. Two events of one node are ordered by `seq`. Travels in the `X-UCP-Dot`
/// header as `<node>:<seq>`.
public struct Dot: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The node whose event this is.
    public var node: String
    /// The event's number at that node, from 1.
    public var seq: UInt64

    /// A dot.
    public init(node: String, seq: UInt64) {
        self.node = node
        self.seq = seq
    }

    /// `node:seq`, the header form.
    public var description: String { "\(node):\(seq)" }

    /// Reads the header form `node:seq` (the node part may not be empty nor longer than
    /// ``ClockStamp/maxNodeIDLength`` UTF-8 bytes; seq is decimal).
    public init?(header: some StringProtocol) {
        guard let (node, seq) = HeaderValues.dot(header) else { return nil }
        self.init(node: node, seq: seq)
    }
}

/// When something happened, as far as the platform can tell: a vector clock over the brokers
/// (node id → count) and, for an event of a node that owns no entry, that event's ``Dot``.
///
/// Events are ordered by their clocks; two events of the same dotted node also by their dots.
/// Encodes as `{"clock": {"<id>": n, ...}, "dot": {"node": "<id>", "seq": n}}` (`dot` omitted
/// when nil). On HTTP requests and responses the clock travels as the `X-UCP-Clock` header (the
/// JSON object alone) and the dot as `X-UCP-Dot`.
public struct ClockStamp: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Broker id → number of that broker's events seen.
    public var clock: [String: UInt64]
    /// The event's dot, for events of nodes that own no entry.
    public var dot: Dot?

    /// A stamp.
    public init(clock: [String: UInt64] = [:], dot: Dot? = nil) {
        self.clock = clock
        self.dot = dot
    }

    /// Most entries a received clock may have: clocks are as wide as the broker group, so a
    /// wider one is malformed (or hostile) and refused before it is merged.
    public static let maxEntries = HeaderValues.maxClockEntries
    /// Longest node id accepted in a clock or dot, in UTF-8 bytes.
    public static let maxNodeIDLength = HeaderValues.maxNodeIDLength

    /// The header that carries the clock.
    public static let clockHeader = HeaderValues.clockHeader
    /// The header that carries the dot.
    public static let dotHeader = HeaderValues.dotHeader

    /// The clock as the `X-UCP-Clock` header's value: a JSON object with sorted keys.
    public var clockHeaderValue: String {
        let data = (try? UCPJSON.encode(clock)) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// Reads an `X-UCP-Clock` value: a JSON object of at most ``maxEntries`` node ids (non-empty,
    /// at most ``maxNodeIDLength`` UTF-8 bytes) to unsigned integers.
    ///
    /// - Throws: ``ClockHeaderError`` saying what is wrong.
    public static func clock(fromHeader value: some StringProtocol) throws(ClockHeaderError) -> [String: UInt64] {
        try HeaderValues.clock(value)
    }

    /// How this stamp relates to `other` by clocks alone (missing entries count as 0).
    public func compare(_ other: ClockStamp) -> StampOrder {
        var less = false
        var greater = false
        for key in Set(clock.keys).union(other.clock.keys) {
            let a = clock[key] ?? 0
            let b = other.clock[key] ?? 0
            if a < b { less = true } else if a > b { greater = true }
        }
        if !less && !greater, let d = dot, let e = other.dot, d.node == e.node {
            return d.seq < e.seq ? .before : d.seq > e.seq ? .after : .equal
        }
        switch (less, greater) {
        case (false, false): return .equal
        case (true, false): return .before
        case (false, true): return .after
        case (true, true): return .concurrent
        }
    }

    /// `{b1: 3, b2: 1}` plus ` @node:seq` when dotted.
    public var description: String {
        let entries = clock.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
        return dot.map { "{\(entries)} @\($0)" } ?? "{\(entries)}"
    }
}

/// How two stamps relate.
public enum StampOrder: Sendable, Hashable {
    /// The first happened before the second.
    case before
    /// The first happened after the second.
    case after
    /// The same clock (and dot).
    case equal
    /// Neither happened before the other.
    case concurrent
}
