extension VectorClock: Codable {
    /// Decodes a clock from an array of unsigned integers, e.g. the JSON `[1,2,3]`.
    /// Anything else (an object, a negative or fractional number) is a `DecodingError`.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        self.init(try container.decode([UInt64].self))
    }

    /// Encodes the stored entries (trailing zeros included) as an array of integers.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(storage)
    }
}
