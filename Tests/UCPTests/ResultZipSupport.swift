import Foundation
import ZIPFoundation

/// A whole result zip, as an executor sends one: `stdout.txt` holding `text` (stored
/// uncompressed, so that `text` can be found in the zip's bytes) and an empty `stderr.txt`.
func resultZip(_ text: String) throws -> [UInt8] {
    let archive = try Archive(accessMode: .create)
    for (name, data) in [("stdout.txt", Data(text.utf8)), ("stderr.txt", Data())] {
        try archive.addEntry(
            with: name, type: .file, uncompressedSize: Int64(data.count), compressionMethod: .none,
            provider: { position, size in data.subdata(in: Int(position)..<Int(position) + size) })
    }
    return Array(archive.data ?? Data())
}
