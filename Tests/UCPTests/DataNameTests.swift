import Foundation
import Testing
import UCP

@Suite("Safe names: DataName, JobPath, FileRoot")
struct DataNameTests {
    @Test(
        "data names that are accepted",
        arguments: [
            "input.txt", "3f1c2a4e-0d7b-4c36-9a53-2b8f6f0d1e77/result", "a/b/c/d.bin", "with space", "ünïcödé/名前",
            "..hidden", "a..b", "...", ".config", "glob*", String(repeating: "x", count: 255),
        ])
    func acceptedDataNames(text: String) throws {
        let name = try DataName(text)
        #expect(name.rawValue == text)
        #expect(name.segments.joined(separator: "/") == text)
    }

    @Test(
        "data names that are refused, each with its reason",
        arguments: [
            ("", InvalidName.Reason.empty),
            ("/etc/passwd", .absolute),
            ("/", .absolute),
            ("..", .parentSegment),
            ("../x", .parentSegment),
            ("a/../../x", .parentSegment),
            ("a/..", .parentSegment),
            // A combining mark after "/" makes one character of the two, but the file system
            // still sees a separator: names are split on Unicode scalars.
            ("../\u{301}x", .parentSegment),
            ("a/\u{301}/../../x", .parentSegment),
            ("/\u{301}etc/passwd", .absolute),
            (".", .currentSegment),
            ("a/./b", .currentSegment),
            ("a//b", .emptySegment),
            ("a/", .emptySegment),
            ("a\0b", .nul),
            ("a\\..\\b", .backslash),
            ("C:\\x", .backslash),
            ("a\nb", .controlCharacter),
            ("a\u{7F}", .controlCharacter),
            (String(repeating: "x", count: 256), .segmentTooLong(limit: 255)),
            (
                Array(repeating: String(repeating: "y", count: 200), count: 6).joined(separator: "/"),
                .tooLong(limit: 1024)
            ),
        ])
    func refusedDataNames(text: String, reason: InvalidName.Reason) {
        #expect(throws: InvalidName(text, reason)) { try DataName(text) }
    }

    @Test("the error quotes the failing value, control characters escaped")
    func errorText() {
        #expect(InvalidName("a/../b", .parentSegment).description == #"invalid name "a/../b": ".." segment"#)
        #expect(InvalidName("a\nb", .controlCharacter).description == #"invalid name "a\nb": control character"#)
    }

    @Test(
        "job paths: a leading / is the job's folder, a trailing / is allowed",
        arguments: [
            ("/", ""), ("/input.txt", "input.txt"), ("input.txt", "input.txt"), ("/out/", "out"),
            ("out/a.txt", "out/a.txt"),
        ])
    func jobPaths(text: String, relative: String) throws {
        let path = try JobPath(text)
        #expect(path.relative == relative)
        #expect(path.isRoot == relative.isEmpty)
    }

    @Test(
        "job paths that are refused",
        arguments: [
            ("", InvalidName.Reason.empty), ("//", .emptySegment), ("///", .emptySegment), ("/../x", .parentSegment),
            ("..", .parentSegment), ("a//b", .emptySegment), ("/a/./b", .currentSegment), ("a\0", .nul),
            ("..\\x", .backslash),
        ])
    func refusedJobPaths(text: String, reason: InvalidName.Reason) {
        #expect(throws: InvalidName(text, reason)) { try JobPath(text) }
    }

    @Test("FileRoot resolves names below the root and refuses symbolic links on the way")
    func resolution() throws {
        try withTemporaryFolder { folder in
            let root = try FileRoot(folder + "/root")
            #expect(try root.resolve(DataName("a/b.txt")) == root.path + "/a/b.txt")  // missing parts are fine
            try write("x", to: root.path + "/real/file.txt")
            #expect(try root.resolve(DataName("real/file.txt")) == root.path + "/real/file.txt")
            #expect(try root.resolve(JobPath("/")) == root.path)

            try FileManager.default.createSymbolicLink(atPath: root.path + "/out", withDestinationPath: "/etc")
            #expect(throws: UnsafePath(root.path + "/out", .symbolicLink)) { try root.resolve(DataName("out/passwd")) }
            #expect(throws: UnsafePath(root.path + "/out", .symbolicLink)) { try root.resolve(DataName("out")) }
            try FileManager.default.createSymbolicLink(
                atPath: root.path + "/real/link", withDestinationPath: "file.txt")
            #expect(throws: UnsafePath(root.path + "/real/link", .symbolicLink)) {
                try root.resolve(DataName("real/link"))
            }
            #expect(throws: UnsafePath(root.path + "/real/file.txt", .notADirectory)) {
                try root.resolve(DataName("real/file.txt/x"))
            }
            #expect(throws: UnsafePath(root.path + "/out", .symbolicLink)) {
                try root.createParents(of: DataName("out/x/y"))
            }
            #expect(try root.createParents(of: DataName("new/deep/file")) == root.path + "/new/deep/file")
            #expect(try root.createParents(of: JobPath("/in/put.txt")) == root.path + "/in/put.txt")
            #expect(throws: UnsafePath(root.path + "/out", .symbolicLink)) {
                try root.createParents(of: JobPath("/out/x"))
            }
            var isFolder: ObjCBool = false
            #expect(
                FileManager.default.fileExists(atPath: root.path + "/new/deep", isDirectory: &isFolder)
                    && isFolder.boolValue)
        }
    }

    @Test("a root that cannot be made names the step that failed")
    func unmakeableRoot() throws {
        try withTemporaryFolder { folder in
            try write("x", to: folder + "/file")
            #expect(throws: UnsafePath(folder + "/file/root", .system(ENOTDIR))) { try FileRoot(folder + "/file/root") }
            #expect(throws: UnsafePath(folder + "/file", .notADirectory)) {
                try FileRoot(folder + "/file", create: false)
            }
        }
    }

    @Test("a root given through a symbolic link is made canonical")
    func canonicalRoot() throws {
        try withTemporaryFolder { folder in
            try FileManager.default.createDirectory(atPath: folder + "/real", withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: folder + "/alias", withDestinationPath: folder + "/real")
            let root = try FileRoot(folder + "/alias", create: false)
            #expect(root.path.hasSuffix("/real"))
            #expect(root.relativeName(of: root.path + "/a/b") == "a/b")
            #expect(root.relativeName(of: root.path) == nil)
            #expect(root.relativeName(of: root.path + "x/y") == nil)
        }
    }
}
