import Foundation

/// A failure of the broker's database, or a state change it refuses.
public enum BrokerStoreError: Error, Hashable, CustomStringConvertible {
    /// The folder or database file could not be opened.
    case cannotOpen(String, String)
    /// SQLite failed.
    case database(String)
    /// The data folder belongs to another broker.
    case identityMismatch(stored: UUID, proposed: UUID)
    /// A job with that id was already submitted.
    case duplicateJob(UUID)
    /// No job with that id was ever submitted.
    case unknownJob(UUID)
    /// A `wait_for` names jobs never submitted.
    case unknownJobs([UUID])

    /// One line naming what failed.
    public var description: String {
        switch self {
        case .cannotOpen(let path, let why): "cannot open the broker database at \(path): \(why)"
        case .database(let why): "broker database failure: \(why)"
        case .identityMismatch(let stored, let proposed):
            "the data folder belongs to broker \(stored.ucpString), not \(proposed.ucpString)"
        case .duplicateJob(let id): "job \(id.ucpString) was already submitted"
        case .unknownJob(let id): "no job \(id.ucpString)"
        case .unknownJobs(let ids):
            "wait_for names unknown jobs: \(ids.map { $0.ucpString }.joined(separator: ", "))"
        }
    }
}
