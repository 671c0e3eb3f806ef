import Foundation
import ZIPFoundation

/// The result of a job that could not run at all (its data could not be fetched, or the host
/// failed): a zip of `stdout.txt` (what the guest wrote, if anything) and `stderr.txt` ending
/// with a line that says why, written where the runner writes its zip.
enum ErrorResult {
    /// Appends `reason` to `out/stderr.txt` and writes `<job_id>.zip` in `folder`; returns its path.
    static func write(in folder: JobFolder, reason: String) throws -> String {
        let stdout = (try? Data(contentsOf: URL(fileURLWithPath: folder.stdoutPath))) ?? Data()
        var stderr = (try? Data(contentsOf: URL(fileURLWithPath: folder.stderrPath))) ?? Data()
        stderr.append(Data((reason.hasSuffix("\n") ? reason : reason + "\n").utf8))
        try? stderr.write(to: URL(fileURLWithPath: folder.stderrPath))
        let zipPath = folder.resultZipPath
        if FileManager.default.fileExists(atPath: zipPath) { try FileManager.default.removeItem(atPath: zipPath) }
        let archive = try Archive(url: URL(fileURLWithPath: zipPath), accessMode: .create)
        for (name, data) in [("stdout.txt", stdout), ("stderr.txt", stderr)] {
            try archive.addEntry(
                with: name, type: .file, uncompressedSize: Int64(data.count), compressionMethod: .deflate,
                provider: { position, size in data.subdata(in: Int(position)..<Int(position) + size) })
        }
        return zipPath
    }
}
