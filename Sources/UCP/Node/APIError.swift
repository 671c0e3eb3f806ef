import Foundation
import Hummingbird

/// An error answer in FastAPI's shape, `{"detail": "..."}`, as UCP's nodes send them.
public struct APIError: HTTPResponseError, CustomStringConvertible {
    /// The status to answer with.
    public var status: HTTPResponse.Status
    /// The message for the `detail` field.
    public var detail: String

    /// An error answer.
    public init(_ status: HTTPResponse.Status, _ detail: String) {
        self.status = status
        self.detail = detail
    }

    /// The answer: `status` with `{"detail": detail}`.
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = (try? UCPJSON.encode(["detail": detail])) ?? Data("{}".utf8)
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// `status detail`.
    public var description: String { "\(status.code) \(detail)" }
}

extension APIError {
    /// The answer for a datastore failure: 404 unknown, 413 too large, 400 bad name,
    /// 409 clash with existing data, 500 storage failure.
    init(_ error: DatastoreError) {
        switch error {
        case .notFound: self.init(.notFound, "\(error)")
        case .tooLarge: self.init(.contentTooLarge, "\(error)")
        case .invalidName: self.init(.badRequest, "\(error)")
        case .conflict: self.init(.conflict, "\(error)")
        case .storage: self.init(.internalServerError, "\(error)")
        }
    }
}

/// JSON answers.
enum JSONResponse {
    /// `value` as a JSON body with status 200.
    static func ok(_ value: some Encodable) throws -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: try UCPJSON.encode(value))))
    }

    /// The JSON `null` with status 200 (what FastAPI answers for a route returning None).
    static func null() -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: "null")))
    }
}
