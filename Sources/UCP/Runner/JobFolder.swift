import Foundation

/// A job's folder, `rootdir/<job_id>/`, with `code/` (the binary), `data/` (the guest's `/`) and
/// `out/` (`stdout.txt`, `stderr.txt`); the result zip is `rootdir/<job_id>/<job_id>.zip`.
public struct JobFolder: Sendable, Hashable {
    /// The job's id.
    public let jobID: DataName
    /// `rootdir/<job_id>`.
    public let path: String
    /// `code/`, as a root that names resolve under.
    public let code: FileRoot
    /// `data/`, the guest's `/`.
    public let data: FileRoot
    /// `out/`.
    public let out: FileRoot

    /// Creates (or reuses) the folder of `jobID` under `root`, with `code/`, `data/`, `out/` and
    /// the given `directories` inside `data/`.
    ///
    /// - Throws: ``InvalidName`` for a job id that is not one safe segment or a bad directory;
    ///   ``UnsafePath`` when a folder cannot be created or runs through a link.
    public init(root: FileRoot, jobID: DataName, directories: [JobPath] = []) throws {
        guard jobID.segments.count == 1 else { throw InvalidName(jobID.rawValue, .notSingleSegment) }
        self.jobID = jobID
        // `createFolders` checks every component (no link, a folder) under the canonical root, so
        // the results are canonical folders as they are.
        let folder = try root.createFolders(jobID.segments[...])
        let job = FileRoot(verified: folder)
        path = folder
        code = FileRoot(verified: try job.createFolders(["code"]))
        data = FileRoot(verified: try job.createFolders(["data"]))
        out = FileRoot(verified: try job.createFolders(["out"]))
        for directory in directories {
            try data.createFolders(directory.segments[...])
        }
    }

    /// `out/stdout.txt`.
    public var stdoutPath: String { out.path + "/stdout.txt" }
    /// `out/stderr.txt`.
    public var stderrPath: String { out.path + "/stderr.txt" }
    /// `<job_id>.zip` in the job's folder.
    public var resultZipPath: String { path + "/" + jobID.rawValue + ".zip" }

    /// Removes the job's folder and everything in it (links are removed, never followed).
    public func remove() throws {
        try FileManager.default.removeItem(atPath: path)
    }
}
