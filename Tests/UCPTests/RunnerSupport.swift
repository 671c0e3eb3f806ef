import Foundation
import Synchronization
import UCP
import ZIPFoundation

/// The fuel rate measured by the first runner, reused by the others so the suite calibrates once.
private let measuredRate = Mutex<FuelRate?>(nil)

/// A runner over `root`, with `configure` applied to the default configuration.
func makeRunner(root: String, _ configure: (inout JobRunnerConfiguration) -> Void = { _ in }) throws -> JobRunner {
    var configuration = JobRunnerConfiguration(workers: 2)
    configuration.fuelRate = measuredRate.withLock { $0 }
    configure(&configuration)
    let runner = try JobRunner(rootdir: root, configuration: configuration)
    measuredRate.withLock { if $0 == nil { $0 = runner.fuelRate } }
    return runner
}

/// Prepares `jobID`'s folder with `job`'s binary in `code/` and `files` (path → text) in `data/`.
@discardableResult
func stage(_ job: ShippedJob, as jobID: String, in runner: JobRunner, files: [String: String] = [:]) throws -> JobFolder
{
    let folder = try runner.prepare(jobID: jobID)
    try write(try job.wasm(), to: folder.code.path + "/" + job.fileName)
    for (path, text) in files {
        try write(text, to: folder.data.path + "/" + path)
    }
    return folder
}

/// A spec for a shipped job staged with ``stage(_:as:in:files:)``.
func spec(
    _ job: ShippedJob, as jobID: String, args: [String] = [], stdin: String? = nil,
    zip: [String: String] = ["/": "/"], named: [String: String] = [:], limit: Duration? = nil
) throws -> JobSpec {
    var zipResults: [JobPath: JobPath] = [:]
    for (inJob, inZip) in zip { zipResults[try JobPath(inJob)] = try JobPath(inZip) }
    var namedResults: [JobPath: String] = [:]
    for (inJob, name) in named { namedResults[try JobPath(inJob)] = name }
    return try JobSpec(
        jobID: jobID, module: try JobPath(job.fileName), args: args, stdin: try stdin.map { try JobPath($0) },
        zipResults: zipResults, namedResults: namedResults, timeLimit: limit)
}

/// Every entry of the zip at `path`: entry path → content.
func unzip(_ path: String) throws -> [String: String] {
    let archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read)
    var entries: [String: String] = [:]
    for entry in archive where entry.type == .file {
        var data = Data()
        _ = try archive.extract(entry) { data.append($0) }
        entries[entry.path] = String(decoding: data, as: UTF8.self)
    }
    return entries
}
