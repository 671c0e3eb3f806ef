import Foundation
import Testing
import UCP

@Suite("Datastore: file storage")
struct DatastoreTests {
    @Test("put, get, list and delete, with nested names")
    func roundTrip() throws {
        try withTemporaryFolder { folder in
            let store = try Datastore(rootdir: folder + "/ds")
            let name = try DataName("3f1c2a4e-0d7b-4c36-9a53-2b8f6f0d1e77/inputs/a.txt")
            try store.put(name, bytes: Array("hello".utf8))
            try store.put(DataName("top.bin"), bytes: [0, 1, 2])
            #expect(try store.bytes(of: name) == Array("hello".utf8))
            #expect(store.list() == ["3f1c2a4e-0d7b-4c36-9a53-2b8f6f0d1e77/inputs/a.txt", "top.bin"])
            try store.put(name, bytes: Array("replaced".utf8))
            #expect(try store.bytes(of: name) == Array("replaced".utf8))
            try store.delete(name)
            #expect(throws: DatastoreError.notFound(name.rawValue)) { try store.bytes(of: name) }
            #expect(throws: DatastoreError.notFound(name.rawValue)) { try store.delete(name) }
            #expect(store.list() == ["top.bin"])
            // The folders it left empty are gone, the store's own folders are not.
            #expect(
                !FileManager.default.fileExists(atPath: store.root.path + "/data/3f1c2a4e-0d7b-4c36-9a53-2b8f6f0d1e77"))
            #expect(try store.freeBytes() > 0)
        }
    }

    @Test("deleting the last data never removes the root; the next upload works (UCP's fault)")
    func rootSurvives() throws {
        try withTemporaryFolder { folder in
            let store = try Datastore(rootdir: folder + "/ds")
            let name = try DataName("job/deep/only.txt")
            try store.put(name, bytes: [1])
            try store.delete(name)
            var isFolder: ObjCBool = false
            #expect(
                FileManager.default.fileExists(atPath: store.root.path + "/data", isDirectory: &isFolder)
                    && isFolder.boolValue)
            #expect(try FileManager.default.contentsOfDirectory(atPath: store.root.path + "/data").isEmpty)
            try store.put(name, bytes: [2])
            #expect(try store.bytes(of: name) == [2])
        }
    }

    @Test("an upload past the limit stores nothing and leaves no temporary file")
    func sizeLimit() throws {
        try withTemporaryFolder { folder in
            let store = try Datastore(rootdir: folder + "/ds", maxItemBytes: 10)
            let name = try DataName("big")
            #expect(throws: DatastoreError.tooLarge("big", limit: 10)) {
                try store.put(name, bytes: [UInt8](repeating: 7, count: 11))
            }
            #expect(store.list().isEmpty)
            #expect(try FileManager.default.contentsOfDirectory(atPath: store.root.path + "/incoming").isEmpty)
            try store.put(name, bytes: [UInt8](repeating: 7, count: 10))
            #expect(try store.bytes(of: name).count == 10)
        }
    }

    @Test("an aborted upload leaves nothing; an unfinished one is dropped at the next start")
    func unfinishedUploads() throws {
        try withTemporaryFolder { folder in
            let store = try Datastore(rootdir: folder + "/ds")
            let upload = try store.beginUpload(DataName("half"))
            try upload.write(Array("partial".utf8))
            #expect(try FileManager.default.contentsOfDirectory(atPath: store.root.path + "/incoming").count == 1)
            upload.abort()
            #expect(store.list().isEmpty)
            #expect(try FileManager.default.contentsOfDirectory(atPath: store.root.path + "/incoming").isEmpty)

            try write("left over", to: store.root.path + "/incoming/stale")
            try store.put(DataName("kept/x"), bytes: [9])
            let reopened = try Datastore(rootdir: folder + "/ds")
            #expect(reopened.list() == ["kept/x"])
            #expect(try FileManager.default.contentsOfDirectory(atPath: store.root.path + "/incoming").isEmpty)
        }
    }

    @Test("a file and a folder of the same name clash instead of overwriting each other")
    func conflicts() throws {
        try withTemporaryFolder { folder in
            let store = try Datastore(rootdir: folder + "/ds")
            try store.put(DataName("a"), bytes: [1])
            #expect {
                try store.put(DataName("a/b"), bytes: [2])
            } throws: { error in
                if case .conflict("a/b", _) = error as? DatastoreError { true } else { false }
            }
            try store.put(DataName("x/y"), bytes: [3])
            #expect {
                try store.put(DataName("x"), bytes: [4])
            } throws: { error in
                if case .conflict("x", _) = error as? DatastoreError { true } else { false }
            }
            #expect(store.list() == ["a", "x/y"])
        }
    }

    @Test("deleting a job's data keeps its result")
    func jobData() throws {
        try withTemporaryFolder { folder in
            let store = try Datastore(rootdir: folder + "/ds")
            let job = "3f1c2a4e-0d7b-4c36-9a53-2b8f6f0d1e77"
            for name in ["\(job)/result", "\(job)/in.txt", "\(job)/sub/x", "other/in.txt"] {
                try store.put(DataName(name), bytes: [1])
            }
            #expect(store.deleteJobData(job) == ["\(job)/in.txt", "\(job)/sub/x"])
            #expect(store.list() == ["\(job)/result", "other/in.txt"])
        }
    }

    @Test("pages of names by prefix and job id")
    func paging() throws {
        try withTemporaryFolder { folder in
            let store = try Datastore(rootdir: folder + "/ds")
            for index in 0..<7 { try store.put(DataName("j1/part-\(index)"), bytes: [1]) }
            try store.put(DataName("j2/part-0"), bytes: [1])
            #expect(
                store.list(prefix: "j1/", page: 2, size: 3)
                    == DataPage(items: ["j1/part-3", "j1/part-4", "j1/part-5"], total: 7, page: 2, size: 3, pages: 3))
            #expect(store.list(prefix: "j1/", page: 3, size: 3).items == ["j1/part-6"])
            #expect(store.list(prefix: "j1/", page: 9, size: 3).items == [])
            #expect(store.list(prefix: "", jobID: "j2").items == ["j2/part-0"])
            #expect(store.list(prefix: "nothing").pages == 0)
        }
    }

    @Test("links planted in the store are never served, followed or listed")
    func plantedLinks() throws {
        try withTemporaryFolder { folder in
            let store = try Datastore(rootdir: folder + "/ds")
            try FileManager.default.createSymbolicLink(
                atPath: store.root.path + "/data/passwd", withDestinationPath: "/etc/passwd")
            try FileManager.default.createSymbolicLink(
                atPath: store.root.path + "/data/etc", withDestinationPath: "/etc")
            #expect(throws: DatastoreError.notFound("passwd")) { try store.bytes(of: DataName("passwd")) }
            #expect(throws: DatastoreError.notFound("etc/passwd")) { try store.bytes(of: DataName("etc/passwd")) }
            #expect(throws: DatastoreError.notFound("etc/passwd")) { try store.delete(DataName("etc/passwd")) }
            #expect {
                try store.put(DataName("etc/evil"), bytes: [1])
            } throws: { error in
                if case .conflict = error as? DatastoreError { true } else { false }
            }
            #expect(!FileManager.default.fileExists(atPath: "/etc/evil"))
            #expect(try Datastore(rootdir: folder + "/ds").list().isEmpty)
        }
    }
}
