import Foundation
import Hummingbird

/// Why a broker operation failed, with the HTTP status UCP answers for it and a detail for the
/// caller. A route throws it as it is: it is the answer (``response(from:context:)``).
///
/// A ``Broker`` method that reads or writes its store also lets the store's
/// ``BrokerStoreError`` through, which is an answer of its own (404, 409 or 500, below).
public struct BrokerError: HTTPResponseError, Hashable, CustomStringConvertible {
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

    /// The answer: `status` with `{"detail": detail}` (``APIError``), or, for a result the ledger
    /// refused, a ``LedgerConflict`` naming the accepted one.
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        if let accepted {
            return try LedgerConflict(detail: detail, accepted: accepted).response(from: request, context: context)
        }
        return try APIError(status, detail).response(from: request, context: context)
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

extension BrokerStoreError: HTTPResponseError {
    /// The HTTP status for it: 404 for jobs never submitted, 409 for a job submitted twice, 500
    /// for anything else (the database failed).
    public var status: HTTPResponse.Status {
        switch self {
        case .unknownJob, .unknownJobs: .notFound
        case .duplicateJob: .conflict
        case .cannotOpen, .database, .identityMismatch: .internalServerError
        }
    }

    /// The answer: ``status`` with `{"detail": description}` (``APIError``).
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        try APIError(status, description).response(from: request, context: context)
    }
}
