import Foundation
import Hummingbird

/// Why a broker operation failed, with the HTTP status UCP answers for it and a detail for the
/// caller.
public struct BrokerError: Error, Hashable, CustomStringConvertible {
    /// The class of failure.
    public enum Kind: Sendable, Hashable {
        /// The request is malformed (400).
        case badRequest
        /// An id or name the broker does not know (404).
        case notFound
        /// The request clashes with the broker's state (409).
        case conflict
        /// An upload over the limit (413).
        case tooLarge
        /// No node can take the work now (503).
        case unavailable
        /// A node the broker called failed (502).
        case badGateway
        /// The broker itself failed (500).
        case internalError
    }

    /// The class of failure.
    public var kind: Kind
    /// What went wrong, for the `detail` of the answer.
    public var detail: String
    /// For a result the ledger turned down (409): the job's accepted result.
    public var accepted: LedgerEntry?

    /// An error.
    public init(_ kind: Kind, _ detail: String, accepted: LedgerEntry? = nil) {
        self.kind = kind
        self.detail = detail
        self.accepted = accepted
    }

    /// The HTTP status for it.
    public var status: HTTPResponse.Status {
        switch kind {
        case .badRequest: .badRequest
        case .notFound: .notFound
        case .conflict: .conflict
        case .tooLarge: .contentTooLarge
        case .unavailable: .serviceUnavailable
        case .badGateway: .badGateway
        case .internalError: .internalServerError
        }
    }

    /// `status detail`.
    public var description: String { "\(status.code) \(detail)" }

    /// The error for a failure of the broker's database.
    init(_ error: BrokerStoreError) {
        switch error {
        case .unknownJob, .unknownJobs: self.init(.notFound, error.description)
        case .duplicateJob: self.init(.conflict, error.description)
        default: self.init(.internalError, error.description)
        }
    }

    /// The error for a failed call to another node: its 400, 404, 409 and 413 pass through (the
    /// caller's input was refused), anything else is a 502 naming the node.
    init(calling error: NodeCallError) {
        switch error.status {
        case 400: self.init(.badRequest, error.detail)
        case 404: self.init(.notFound, error.detail)
        case 409: self.init(.conflict, error.detail)
        case 413: self.init(.tooLarge, error.detail)
        default: self.init(.badGateway, error.description)
        }
    }
}
