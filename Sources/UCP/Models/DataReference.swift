/// A piece of data a job reads: UCP's `wasm_bin` and `stdin` fields, which are either a data
/// name (`"prog.wasm"`) or a `[name, path]` pair (`["job/prog.wasm", "prog.wasm"]`).
///
/// The form it was decoded from is kept, so a value encodes the way it arrived: `path == nil`
/// encodes as the bare name, anything else as the pair.
public struct DataReference: Sendable, Hashable, Codable {
    /// The data name (in a datastore).
    public var name: String
    /// Where the data goes inside the job, or nil when only a name was given.
    public var path: String?

    /// A reference by name alone.
    public init(name: String) {
        self.name = name
        self.path = nil
    }

    /// A `[name, path]` pair.
    public init(name: String, path: String) {
        self.name = name
        self.path = path
    }

    /// UCP's default `stdin`: the pair `["", ""]`, i.e. no stdin.
    public static let none = DataReference(name: "", path: "")

    /// True when neither a name nor a path is given (UCP's "no stdin").
    public var isEmpty: Bool { name.isEmpty && (path ?? "").isEmpty }

    /// Decodes a string or an array of exactly two strings; anything else is a
    /// `DecodingError.typeMismatch` or `.dataCorrupted` that says what was expected.
    public init(from decoder: any Decoder) throws {
        let single = try decoder.singleValueContainer()
        if let name = try? single.decode(String.self) {
            self.init(name: name)
            return
        }
        guard let pair = try? single.decode([String].self) else {
            throw DecodingError.typeMismatch(
                DataReference.self,
                .init(
                    codingPath: decoder.codingPath,
                    debugDescription: "expected a data name or a [name, path] pair of strings"))
        }
        guard pair.count == 2 else {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: decoder.codingPath,
                    debugDescription: "expected a [name, path] pair, found \(pair.count) strings"))
        }
        self.init(name: pair[0], path: pair[1])
    }

    /// Encodes the bare name, or the `[name, path]` pair when a path is set.
    public func encode(to encoder: any Encoder) throws {
        var single = encoder.singleValueContainer()
        if let path {
            try single.encode([name, path])
        } else {
            try single.encode(name)
        }
    }
}
