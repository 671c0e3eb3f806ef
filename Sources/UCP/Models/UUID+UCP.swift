import Foundation

extension UUID {
    /// The id as UCP writes it everywhere (paths, JSON, clock entries, file names): its
    /// `uuidString`, lowercased.
    public var ucpString: String { uuidString.lowercased() }
}
