import Foundation
import Testing
import UCP

/// Runs `body` with a fresh temporary folder, removed afterwards whatever happens.
func withTemporaryFolder<T>(_ body: (String) throws -> T) throws -> T {
    let path = NSTemporaryDirectory() + "ucp-tests-" + UUID().ucpString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

/// Runs `body` with a fresh temporary folder, removed afterwards whatever happens.
func withTemporaryFolder<T>(_ body: (String) async throws -> T) async throws -> T {
    let path = NSTemporaryDirectory() + "ucp-tests-" + UUID().ucpString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

/// Writes `text` to `path`, creating its folders.
func write(_ text: String, to path: String) throws {
    try write(Array(text.utf8), to: path)
}

/// Writes `bytes` to `path`, creating its folders.
func write(_ bytes: [UInt8], to path: String) throws {
    try FileManager.default.createDirectory(
        atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// The text of the file at `path`.
func read(_ path: String) throws -> String {
    try String(contentsOfFile: path, encoding: .utf8)
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; then records an issue
/// naming `what` and throws, so that the test stops there.
func eventually(
    _ what: String, timeout: Duration = .seconds(30), sourceLocation: SourceLocation = #_sourceLocation,
    detail: () throws -> String = { "" }, _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    if try await condition() { return }
    Issue.record(
        "timed out after \(timeout) waiting for: \(what) \((try? detail()) ?? "")", sourceLocation: sourceLocation)
    throw APIError(.requestTimeout, "timed out after \(timeout) waiting for \(what)")
}
