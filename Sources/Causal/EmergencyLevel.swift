/// How urgent a message is. A normal message is `.low`.
///
/// Raw values are the C core's `CC_LEVEL_*` numbers. Levels order by urgency
/// (`.low < .medium < .high < .critical`); among messages that may be delivered at the same
/// moment a higher level goes first, but no level ever overrides causal order.
public enum EmergencyLevel: UInt8, Comparable, Sendable, CaseIterable {
    /// Routine traffic.
    case low = 1
    /// Worth attention soon.
    case medium = 2
    /// Urgent.
    case high = 3
    /// Life or infrastructure at stake.
    case critical = 4

    /// Parses a level from its name in any case (`"low"`, `"MEDIUM"`) or its number
    /// (`"1"`...`"4"`), ignoring surrounding whitespace.
    ///
    /// - Throws: `CausalError.unknownEmergencyLevel(text)` for anything else; an unknown
    ///   level is never read as `.low`.
    public init(parsing text: String) throws {
        var trimmed = Substring(text)
        while trimmed.first?.isWhitespace == true { trimmed.removeFirst() }
        while trimmed.last?.isWhitespace == true { trimmed.removeLast() }
        let word = String(trimmed)
        if !word.isEmpty, word.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let number = UInt8(word), let level = EmergencyLevel(rawValue: number)
        {
            self = level
            return
        }
        guard let level = Self.allCases.first(where: { $0.name == word.uppercased() }) else {
            throw CausalError.unknownEmergencyLevel(text)
        }
        self = level
    }

    /// The upper-case name UCP writes: `"LOW"`, `"MEDIUM"`, `"HIGH"`, `"CRITICAL"`.
    public var name: String {
        switch self {
        case .low: "LOW"
        case .medium: "MEDIUM"
        case .high: "HIGH"
        case .critical: "CRITICAL"
        }
    }

    /// True for `.high` and `.critical`: the levels that are handled as emergencies.
    public var isCritical: Bool { self >= .high }

    /// Orders levels by urgency.
    public static func < (lhs: EmergencyLevel, rhs: EmergencyLevel) -> Bool {
        lhs.rawValue < rhs.rawValue
    }
}

extension EmergencyLevel: CustomStringConvertible {
    /// The upper-case name, e.g. `HIGH`.
    public var description: String { name }
}

extension EmergencyLevel: Codable {
    /// Decodes a name in any case (`"high"`) or a number (`3`, `"3"`).
    /// An unknown value is a `DecodingError.dataCorrupted` whose underlying error is
    /// `CausalError.unknownEmergencyLevel`.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text: String
        if let number = try? container.decode(Int.self) {
            text = String(number)
        } else {
            text = try container.decode(String.self)
        }
        do {
            self = try EmergencyLevel(parsing: text)
        } catch {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: container.codingPath, debugDescription: "\(error)", underlyingError: error))
        }
    }

    /// Encodes the upper-case name, e.g. `"HIGH"`.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(name)
    }
}
