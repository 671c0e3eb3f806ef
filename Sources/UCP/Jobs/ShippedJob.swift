import Synchronization
import WAT

/// The jobs that ship with CausalUCP: hand-written WebAssembly text against
/// `wasi_snapshot_preview1`, assembled with WasmKit's `wat2wasm` when first asked for.
///
/// They are Swift string literals rather than bundle resources: `Bundle.module` stops the process
/// when the resource bundle is not beside the executable (an installed `ucp`), a literal cannot
/// go missing.
///
/// | job | does |
/// | --- | --- |
/// | `hello` | prints `Hello, world!` |
/// | `echo` | copies stdin to stdout |
/// | `wordcount PATH` | prints `N PATH`, N the words of the file (a leading `/` is the job's data folder) |
/// | `sum [N...]` | prints the sum of the integers in its arguments, or on stdin without arguments |
/// | `cat PATH` | copies the file at PATH, opened exactly as given, to stdout |
/// | `trap` | executes `unreachable` |
/// | `spin` | loops forever |
/// | `ticker N [WORK]` | N ticks of WORK compute steps (default 100 000), one `.` on stdout each, then `ticker: N ticks, checksum C`; preemptible at every tick |
///
/// Exit codes: 0 done, 1 an input could not be read or parsed (a line on stderr says which),
/// 2 wrong usage.
public enum ShippedJob: String, CaseIterable, Sendable {
    /// Prints `Hello, world!`.
    case hello
    /// Copies stdin to stdout.
    case echo
    /// Counts the words of a data file.
    case wordcount
    /// Sums integers from its arguments or stdin.
    case sum
    /// Copies a file to stdout, its path taken verbatim.
    case cat
    /// Traps at once (`unreachable`).
    case trap
    /// Never ends.
    case spin
    /// Ticks N times (compute, then one WASI write each), then prints a summary: a long job that
    /// can be preempted at every tick.
    case ticker

    /// The module's file name, e.g. `hello.wasm`.
    public var fileName: String { rawValue + ".wasm" }

    /// The WebAssembly text.
    public var wat: String {
        switch self {
        case .hello: ShippedWAT.hello
        case .echo: ShippedWAT.echo
        case .wordcount: ShippedWAT.wordcount
        case .sum: ShippedWAT.sum
        case .cat: ShippedWAT.cat
        case .trap: ShippedWAT.trap
        case .spin: ShippedWAT.spin
        case .ticker: ShippedWAT.ticker
        }
    }

    private static let assembled = Mutex<[ShippedJob: [UInt8]]>([:])

    /// The binary module, assembled once per process.
    ///
    /// - Throws: `WatParserError` if the text does not assemble (a bug, caught by the tests).
    public func wasm() throws -> [UInt8] {
        if let bytes = Self.assembled.withLock({ $0[self] }) { return bytes }
        let bytes = try wat2wasm(wat)
        Self.assembled.withLock { $0[self] = bytes }
        return bytes
    }
}
