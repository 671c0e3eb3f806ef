extension VectorClock: CustomStringConvertible {
    /// The stored entries in brackets, e.g. `[1, 0, 3]`.
    public var description: String {
        "[" + storage.map(String.init).joined(separator: ", ") + "]"
    }
}
