import Foundation

/// A fresh folder under the system's temporary folder, removed with everything in it by
/// `remove()` (call it in a `defer`).
struct TemporaryFolder: Sendable {
    let path: String

    init(_ prefix: String = "causal-test") throws {
        let template = (NSTemporaryDirectory() as NSString).appendingPathComponent("\(prefix).XXXXXX")
        var bytes = Array(template.utf8CString)
        guard let made = mkdtemp(&bytes) else { throw CocoaError(.fileWriteUnknown) }
        path = String(cString: made)
    }

    /// `path/name`.
    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}
