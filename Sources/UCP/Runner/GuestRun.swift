import Foundation
import WASI
@_spi(Fuzzing) import WasmKit
import WasmKitWASI

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// One run of a guest, synchronous, on the calling thread: the only code that drives WasmKit.
///
/// The caller owns the descriptors; this links the module's WASI imports (only the groups it
/// needs, each function wrapped with the deadline, preemption and output checks), instantiates it with a
/// fuel budget and a memory cap, and runs `_start`.
struct GuestRun {
    let engine: Engine
    let module: CompiledModule
    let args: [String]
    let env: [String: String]
    let dataFolder: String
    let stdin: CInt
    let stdout: CInt
    let stderr: CInt
    let fuel: UInt64
    let deadline: ContinuousClock.Instant
    let maxOutputBytes: Int64
    let maxMemoryBytes: Int
    /// Raised by the executor to stop the run at its next WASI call; nil when it cannot be preempted.
    var preemption: PreemptionFlag? = nil

    /// Why the host stopped a guest from inside a WASI call.
    enum HostStop: Error {
        case deadline
        case outputLimit(Int64)
        /// The run's ``PreemptionFlag`` was raised.
        case preempted
    }

    /// How the run ended, before it becomes a ``JobOutcome`` (which also needs the timing).
    enum End {
        case exited(UInt32)
        case trapped(String)
        case outOfTime
        case failed(String)
        /// Stopped at a WASI call because the run was preempted.
        case preempted
    }

    func run() -> End {
        let bridge: WASIBridgeToHost
        do {
            bridge = try WASIBridgeToHost(
                args: args, environment: env, preopens: [.init(guestPath: "/", hostPath: dataFolder)],
                stdin: stdin, stdout: stdout, stderr: stderr)
        } catch {
            return .failed("cannot set up WASI: \(error)")
        }
        do {
            return try bridge.runAndClose { bridge in
                let store = Store(engine: engine)
                store.fuel = Fuel(remaining: fuel)
                store.resourceLimiter = MemoryCap(bytes: maxMemoryBytes)
                var imports = Imports()
                link(bridge, into: &imports, store: store)
                do {
                    let instance = try module.module.instantiate(store: store, imports: imports)
                    return .exited(try bridge.start(instance))
                } catch let stop as HostStop {
                    switch stop {
                    case .deadline: return .outOfTime
                    case .outputLimit(let limit): return .failed("output limit of \(limit) bytes reached")
                    case .preempted: return .preempted
                    }
                } catch let trap as Trap {
                    return Self.isOutOfFuel(trap) ? .outOfTime : .trapped(Self.message(of: trap))
                } catch {
                    return .failed("\(error)")
                }
            }
        } catch {
            return .failed("closing WASI: \(error)")
        }
    }

    private func link(_ bridge: WASIBridgeToHost, into imports: inout Imports, store: Store) {
        let functions = bridge.hostFunctions(capabilities: module.capabilities, stubUnlinked: false)
        let deadline = self.deadline
        let stdout = self.stdout
        let stderr = self.stderr
        let maxOutput = self.maxOutputBytes
        let preemption = self.preemption
        for entry in module.wasiImports {
            switch entry {
            case .provided(let name):
                guard let function = functions[name] else { continue }
                let implementation = function.implementation
                let writes = name == "fd_write" || name == "fd_pwrite"
                imports.define(
                    module: "wasi_snapshot_preview1", name: name,
                    Function(store: store, type: function.type) { caller, arguments in
                        if ContinuousClock.now >= deadline { throw HostStop.deadline }
                        if preemption?.isRequested == true { throw HostStop.preempted }
                        guard case .memory(let memory) = caller.instance?.export("memory") else {
                            throw WASIError(description: "Missing required \"memory\" export")
                        }
                        let results = try implementation(memory, arguments)
                        if writes, Self.size(of: stdout) > maxOutput || Self.size(of: stderr) > maxOutput {
                            throw HostStop.outputLimit(maxOutput)
                        }
                        return results
                    })
            case .stub(let name, let type):
                imports.define(
                    module: "wasi_snapshot_preview1", name: name,
                    Function(store: store, type: type) { _, _ in
                        if ContinuousClock.now >= deadline { throw HostStop.deadline }
                        if preemption?.isRequested == true { throw HostStop.preempted }
                        return [.i32(Self.enosys)]
                    })
            }
        }
    }

    /// WASI's `ENOSYS` ("function not supported").
    static let enosys: UInt32 = 52

    private static func size(of fd: CInt) -> Int64 {
        var info = stat()
        return fstat(fd, &info) == 0 ? Int64(info.st_size) : 0
    }

    /// True when `trap` is WasmKit's out-of-fuel trap. WasmKit keeps the trap's reason
    /// package-internal, so this reads the first line of its description (`Trap: out of fuel`).
    static func isOutOfFuel(_ trap: Trap) -> Bool {
        message(of: trap) == "out of fuel"
    }

    /// The trap's reason without the `Trap: ` prefix and the backtrace.
    static func message(of trap: Trap) -> String {
        var line = trap.description.split(separator: "\n", maxSplits: 1).first.map(String.init) ?? ""
        if line.hasPrefix("Trap: ") { line.removeFirst(6) }
        return line
    }
}

/// Refuses memory growth past a fixed number of bytes (per memory of a store).
final class MemoryCap: ResourceLimiter {
    let bytes: Int

    init(bytes: Int) {
        self.bytes = bytes
    }

    func limitMemoryGrowth(to desired: Int) throws -> Bool {
        desired <= bytes
    }

    func limitTableGrowth(to desired: Int) throws -> Bool {
        desired <= 1 << 20
    }
}
