import Foundation

/// Where the package's built executables are: next to the test bundle, which SwiftPM puts in
/// the same build-products folder (`.build/<triple>/debug/`).
enum BuildProducts {
    /// The folder holding the running test binary (or bundle), resolved through links.
    static var folder: URL {
        // The test binary itself: `/proc/self/exe` on Linux, the main bundle elsewhere.
        #if os(Linux)
            if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
                let url = URL(fileURLWithPath: exe).deletingLastPathComponent()
                // A bundle directory (`X.xctest/`) on platforms that make one.
                return url.pathExtension == "xctest" ? url.deletingLastPathComponent() : url
            }
        #endif
        var url = Bundle.main.bundleURL
        while url.pathComponents.count > 1 && url.pathExtension != "xctest" && !url.lastPathComponent.hasPrefix("debug")
            && !url.lastPathComponent.hasPrefix("release")
        {
            url.deleteLastPathComponent()
        }
        return url.pathExtension == "xctest" ? url.deletingLastPathComponent() : url
    }

    /// The path of the executable `name`, or nil when it has not been built. The environment
    /// variable `UCP_BINARY` overrides the search for `ucp`.
    static func executable(_ name: String) -> String? {
        if name == "ucp", let given = ProcessInfo.processInfo.environment["UCP_BINARY"] { return given }
        var candidates = [folder.appendingPathComponent(name).path]
        // `swift test --scratch-path X` and plain `.build` put products in the same place; also
        // look in the sibling configuration in case tests run from a release build.
        for configuration in ["debug", "release"] {
            candidates.append(
                folder.deletingLastPathComponent().appendingPathComponent(configuration).appendingPathComponent(name)
                    .path)
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }
}
