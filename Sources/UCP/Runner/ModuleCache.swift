import Synchronization
import WasmKit
import WasmKitWASI

/// A parsed module ready to instantiate, with the WASI functions it imports sorted out once.
public struct CompiledModule: Sendable {
    /// The parsed module; reused for every run.
    let module: Module
    /// The digest of its bytes.
    public let hash: ContentHash
    /// Every `wasi_snapshot_preview1` import, with the way it is satisfied.
    let wasiImports: [WASIImport]
    /// The capability groups to link: only those that provide an import.
    let capabilities: [WasmKitWASI.WASICapability]

    /// How one WASI import is satisfied.
    enum WASIImport: Sendable {
        /// By the host function of this name from a linked group.
        case provided(name: String)
        /// By a stub that answers `ENOSYS` (a function the runner refuses to provide).
        case stub(name: String, type: FunctionType)
    }
}

/// A failure to turn bytes into a runnable module.
public struct ModuleError: Error, Hashable, CustomStringConvertible {
    /// What was wrong.
    public var message: String
    /// The message.
    public var description: String { message }
}

/// Parses each distinct module once: a bounded cache keyed by ``ContentHash``, least recently
/// used out first. Thread-safe; parsing happens outside the lock, so two threads that miss on
/// the same bytes at once may both parse (the second result is dropped).
public final class ModuleCache: Sendable {
    private struct State {
        var entries: [ContentHash: (module: CompiledModule, lastUse: UInt64)] = [:]
        var clock: UInt64 = 0
        var hits = 0
        var misses = 0
    }

    private let state = Mutex(State())
    private let capacity: Int

    /// A cache of at most `capacity` modules.
    public init(capacity: Int = 64) {
        precondition(capacity > 0, "capacity must be positive")
        self.capacity = capacity
    }

    /// Hits and misses so far.
    public var statistics: (hits: Int, misses: Int) {
        state.withLock { ($0.hits, $0.misses) }
    }

    /// The module for `bytes`, parsed on first sight.
    ///
    /// - Throws: ``ModuleError`` when the bytes are not a valid module.
    public func module(for bytes: [UInt8]) throws(ModuleError) -> CompiledModule {
        let hash = ContentHash(of: bytes)
        if let hit = state.withLock({ state -> CompiledModule? in
            state.clock += 1
            guard let entry = state.entries[hash] else { return nil }
            state.entries[hash]?.lastUse = state.clock
            state.hits += 1
            return entry.module
        }) {
            return hit
        }
        let compiled = try Self.compile(bytes, hash: hash)
        state.withLock { state in
            state.misses += 1
            if state.entries[hash] == nil, state.entries.count >= capacity,
                let oldest = state.entries.min(by: { $0.value.lastUse < $1.value.lastUse })?.key
            {
                state.entries[oldest] = nil
            }
            state.entries[hash] = (compiled, state.clock)
        }
        return compiled
    }

    static func compile(_ bytes: [UInt8], hash: ContentHash) throws(ModuleError) -> CompiledModule {
        let module: Module
        do {
            module = try parseWasm(bytes: bytes)
        } catch {
            throw ModuleError(message: "not a valid WebAssembly module: \(error)")
        }
        var imports: [CompiledModule.WASIImport] = []
        var groups = Set<Int>()
        let table = WASIGroups.shared
        for entry in module.imports where entry.module == "wasi_snapshot_preview1" {
            guard case .function = entry.descriptor else { continue }
            if let group = table.group(of: entry.name) {
                groups.insert(group)
                imports.append(.provided(name: entry.name))
            } else if let type = table.stubTypes[entry.name] {
                imports.append(.stub(name: entry.name, type: type))
            }
            // Anything else is left unresolved: instantiation then fails and says which import.
        }
        return CompiledModule(
            module: module, hash: hash, wasiImports: imports,
            capabilities: groups.sorted().map { table.capabilities[$0] })
    }
}

/// Which WASI capability group provides which function, learnt once from WasmKit itself.
///
/// Only these groups are ever linked: arguments and environment, clocks, random, process exit,
/// stdio and the file system. `poll_oneoff` (a guest could sleep in it past its deadline, where
/// no check can reach it) and the socket calls are answered `ENOSYS`.
struct WASIGroups: Sendable {
    let capabilities: [WasmKitWASI.WASICapability]
    let members: [[String]]
    let stubTypes: [String: FunctionType]

    static let shared = WASIGroups()

    private init() {
        capabilities = [.environment, .clocks, .random, .process, .stdio, .fileSystem]
        // A bridge without preopens, on borrowed stdio, only to list the functions.
        guard let bridge = try? WASIBridgeToHost() else {
            members = []
            stubTypes = [:]
            return
        }
        members = capabilities.map { bridge.hostFunctions(capabilities: [$0], stubUnlinked: false).keys.sorted() }
        stubTypes = bridge.hostFunctions(capabilities: [WasmKitWASI.WASICapability](), stubUnlinked: true).mapValues(
            \.type)
        try? bridge.close()
    }

    func group(of name: String) -> Int? {
        members.firstIndex { $0.contains(name) }
    }
}
