/// A data name or job path that was refused, with the value that failed and why.
///
/// Thrown by ``DataName/init(_:)`` and ``JobPath/init(_:)``; its description quotes the value
/// (with control characters escaped) so it can go into a 400 answer or a log as it is.
public struct InvalidName: Error, Hashable, CustomStringConvertible {
    /// Why a name is refused.
    public enum Reason: Hashable, Sendable {
        /// The name is empty.
        case empty
        /// A data name starts with `/`.
        case absolute
        /// A `..` segment.
        case parentSegment
        /// A `.` segment.
        case currentSegment
        /// Two slashes in a row (or a trailing slash where none is allowed).
        case emptySegment
        /// A NUL byte.
        case nul
        /// A backslash, which some systems read as a separator.
        case backslash
        /// Another control character (below U+0020, or U+007F).
        case controlCharacter
        /// More than one segment where a single one is required (a job id).
        case notSingleSegment
        /// Longer than `limit` bytes of UTF-8 in all.
        case tooLong(limit: Int)
        /// A segment longer than `limit` bytes of UTF-8.
        case segmentTooLong(limit: Int)
    }

    /// The refused value, as given.
    public var value: String
    /// Why it was refused.
    public var reason: Reason

    /// A refusal of `value`.
    public init(_ value: String, _ reason: Reason) {
        self.value = value
        self.reason = reason
    }

    /// One line: `invalid name "a/../b": ".." segment`.
    public var description: String {
        let quoted = value.unicodeScalars.map {
            $0.value < 0x20 || $0.value == 0x7F ? $0.escaped(asASCII: true) : String($0)
        }
        .joined()
        let why: String
        switch reason {
        case .empty: why = "empty"
        case .absolute: why = "absolute (starts with /)"
        case .parentSegment: why = "\"..\" segment"
        case .currentSegment: why = "\".\" segment"
        case .emptySegment: why = "empty segment (\"//\" or a trailing /)"
        case .nul: why = "NUL byte"
        case .backslash: why = "backslash"
        case .controlCharacter: why = "control character"
        case .notSingleSegment: why = "must be a single segment (no /)"
        case .tooLong(let limit): why = "longer than \(limit) bytes"
        case .segmentTooLong(let limit): why = "a segment is longer than \(limit) bytes"
        }
        let shown = quoted.count > 200 ? String(quoted.prefix(200)) + "…" : quoted
        return "invalid name \"\(shown)\": \(why)"
    }
}

/// The one validator behind ``DataName`` and ``JobPath``: splits `text` on `/` and refuses
/// anything that could name a file outside a root or confuse a file system.
enum NameRules {
    /// Longest accepted name, in bytes of UTF-8.
    static let maxLength = 1024
    /// Longest accepted segment, in bytes of UTF-8 (the usual `NAME_MAX`).
    static let maxSegmentLength = 255

    /// The segments of `body` (a name without any leading or trailing slash already removed),
    /// or the reason it is refused. `original` is what the error quotes.
    static func segments(of body: Substring, original: String) throws(InvalidName) -> [Substring] {
        if original.utf8.count > maxLength { throw InvalidName(original, .tooLong(limit: maxLength)) }
        for byte in original.utf8 {
            switch byte {
            case 0: throw InvalidName(original, .nul)
            case UInt8(ascii: "\\"): throw InvalidName(original, .backslash)
            case 0x01..<0x20, 0x7F: throw InvalidName(original, .controlCharacter)
            default: continue
            }
        }
        // Split and compared on Unicode scalars, as the file system sees the name, never on
        // characters: "/" followed by a combining mark is one character but still a separator.
        let parts = split(body)
        for part in parts {
            switch part.utf8.count {
            case 0: throw InvalidName(original, .emptySegment)
            case 1 where part.utf8.first == dot: throw InvalidName(original, .currentSegment)
            case 2 where part.utf8.allSatisfy({ $0 == dot }): throw InvalidName(original, .parentSegment)
            case (maxSegmentLength + 1)...: throw InvalidName(original, .segmentTooLong(limit: maxSegmentLength))
            default: continue
            }
        }
        return parts
    }

    /// `text` split at every `/` scalar, empty segments kept.
    static func split(_ text: Substring) -> [Substring] {
        text.unicodeScalars.split(separator: "/", omittingEmptySubsequences: false).map { Substring($0) }
    }

    /// True when `text` starts with the `/` scalar.
    static func startsWithSlash(_ text: Substring) -> Bool { text.utf8.first == slash }

    /// True when `text` ends with the `/` scalar.
    static func endsWithSlash(_ text: Substring) -> Bool { text.utf8.last == slash }

    private static let dot = UInt8(ascii: ".")
    private static let slash = UInt8(ascii: "/")
}

/// The name of a piece of data in a datastore, e.g. `"input.txt"` or `"<job_id>/result"`.
///
/// Valid names are relative: one or more segments separated by single slashes, none of them
/// `.` or `..`, with no NUL, backslash or control character, at most 255 bytes a segment and
/// 1024 bytes in all. Such a name, resolved under a root with ``FileRoot``, never leaves it.
public struct DataName: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The name as given (already valid).
    public let rawValue: String

    /// Validates `text`.
    ///
    /// - Throws: ``InvalidName`` quoting `text` and the reason.
    public init(_ text: String) throws(InvalidName) {
        if text.isEmpty { throw InvalidName(text, .empty) }
        if NameRules.startsWithSlash(Substring(text)) { throw InvalidName(text, .absolute) }
        _ = try NameRules.segments(of: Substring(text), original: text)
        rawValue = text
    }

    /// The segments between slashes.
    public var segments: [Substring] { NameRules.split(Substring(rawValue)) }

    /// The last segment, e.g. `result` for `"<job_id>/result"`.
    public var lastSegment: Substring { segments.last ?? Substring(rawValue) }

    /// The name itself.
    public var description: String { rawValue }

    /// Orders names by their text.
    public static func < (lhs: DataName, rhs: DataName) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A path inside a job's data folder, as the job's guest sees it: `/` is the folder itself,
/// `/input.txt` and `input.txt` are the same file, a trailing slash is allowed (`out/`).
///
/// Apart from one leading and one trailing slash the rules are those of ``DataName``: no `..`,
/// no `.`, no empty segment, no NUL, backslash or control character, bounded lengths. A leading
/// slash is relative to the job's folder, never the host's root.
public struct JobPath: Sendable, Hashable, CustomStringConvertible {
    /// The path as given (already valid).
    public let rawValue: String
    /// The segments below the job's folder; empty for the folder itself.
    public let segments: [Substring]

    /// The job's data folder itself (`/`).
    public static let root = try! JobPath("/")

    /// Validates `text`.
    ///
    /// - Throws: ``InvalidName`` quoting `text` and the reason.
    public init(_ text: String) throws(InvalidName) {
        if text.isEmpty { throw InvalidName(text, .empty) }
        var body = Substring(text)
        if NameRules.startsWithSlash(body) { body = Substring(body.unicodeScalars.dropFirst()) }
        if NameRules.endsWithSlash(body) { body = Substring(body.unicodeScalars.dropLast()) }
        rawValue = text
        segments = body.isEmpty ? [] : try NameRules.segments(of: body, original: text)
        if body.isEmpty, text.utf8.count > 1 { throw InvalidName(text, .emptySegment) }
    }

    /// True for the job's folder itself.
    public var isRoot: Bool { segments.isEmpty }

    /// The path relative to the job's folder, without leading or trailing slash (`""` for the root).
    public var relative: String { segments.joined(separator: "/") }

    /// The path as given.
    public var description: String { rawValue }
}
