/// Why a datastore operation failed; each case names the data concerned.
public enum DatastoreError: Error, Hashable, CustomStringConvertible {
    /// No data of that name.
    case notFound(String)
    /// The data grew past the store's per-item limit; nothing was stored.
    case tooLarge(String, limit: Int64)
    /// The name is not acceptable (see ``DataName``).
    case invalidName(InvalidName)
    /// The name clashes with existing data: a folder where a file should go, or a file where a
    /// folder should go (`a` and `a/b` cannot both be data).
    case conflict(String, UnsafePath)
    /// The file system failed (full disk, permissions, ...).
    case storage(String, UnsafePath)

    /// One line naming the data.
    public var description: String {
        switch self {
        case .notFound(let name): "no data named \"\(name)\""
        case .tooLarge(let name, let limit): "data \"\(name)\" is larger than the limit of \(limit) bytes"
        case .invalidName(let error): "\(error)"
        case .conflict(let name, let cause): "data \"\(name)\" clashes with existing data (\(cause))"
        case .storage(let name, let cause): "cannot store data \"\(name)\": \(cause)"
        }
    }
}

/// A page of names, as UCP's `GET /list/{prefix}` answers (fastapi-pagination's `Page`):
/// `{"items": [...], "total": n, "page": p, "size": s, "pages": k}`.
public struct DataPage: Sendable, Hashable, Codable {
    /// The names on this page, in order.
    public var items: [String]
    /// Names matching in all.
    public var total: Int
    /// This page's number, from 1.
    public var page: Int
    /// The page size asked for.
    public var size: Int
    /// Pages in all (`ceil(total / size)`).
    public var pages: Int

    /// A page.
    public init(items: [String], total: Int, page: Int, size: Int, pages: Int) {
        self.items = items
        self.total = total
        self.page = page
        self.size = size
        self.pages = pages
    }
}
