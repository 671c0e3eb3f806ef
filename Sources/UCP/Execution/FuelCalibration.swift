import Foundation
import WAT
import WasmKit

/// How fast this machine burns WasmKit fuel, measured at start-up: the basis of job time limits.
///
/// WasmKit cannot interrupt a running guest, so a time limit becomes a fuel budget:
/// `limit × fuelPerSecond × safetyFactor`. Fuel counts instructions, not time: cheap instructions
/// burn fuel fastest, so the rate is measured on a tight loop of cheap instructions (the best of
/// a few short runs, so that a busy moment during calibration cannot shrink budgets). A guest of
/// costlier instructions (memory, calls, bulk copies) burns fuel more slowly and overruns its
/// limit by up to a few times; a guest that calls WASI is also stopped at its first call after
/// the deadline.
public struct FuelRate: Sendable, Hashable, CustomStringConvertible {
    /// Fuel units per second on the calibration loop.
    public let fuelPerSecond: Double

    /// A known rate (for tests, or a rate measured earlier).
    public init(fuelPerSecond: Double) {
        precondition(fuelPerSecond > 0, "the rate must be positive")
        self.fuelPerSecond = fuelPerSecond
    }

    /// The budget for `limit` with `safetyFactor`, at least 1 and at most `UInt64.max - 1`.
    public func budget(for limit: Duration, safetyFactor: Double) -> UInt64 {
        let seconds = Double(limit.components.seconds) + Double(limit.components.attoseconds) / 1e18
        let fuel = seconds * fuelPerSecond * safetyFactor
        guard fuel.isFinite, fuel < 1.8e19 else { return UInt64.max - 1 }
        return UInt64(max(1, fuel))
    }

    /// E.g. `3.2e+08 fuel/s`.
    public var description: String { String(format: "%.2g fuel/s", fuelPerSecond) }

    /// The loop the rate is measured on: an add and a branch, forever.
    static let calibrationWAT = """
        (module
          (func (export "spin") (local $i i32)
            (loop $again
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br $again))))
        """

    /// Measures the rate on `engine` (which must meter fuel): runs the loop with growing budgets
    /// until a run takes at least `sample`, then takes the best of `rounds` such runs.
    /// Takes about `rounds × sample` plus the ramp-up.
    ///
    /// - Throws: ``ModuleError`` when the engine does not meter fuel or the loop does not trap.
    public static func measure(engine: Engine, sample: Duration = .milliseconds(20), rounds: Int = 3)
        throws(ModuleError)
        -> FuelRate
    {
        guard engine.configuration.fuelMetering else {
            throw ModuleError(message: "fuel calibration needs an engine with fuel metering")
        }
        let module: Module
        do {
            module = try parseWasm(bytes: try wat2wasm(calibrationWAT))
        } catch {
            throw ModuleError(message: "calibration module: \(error)")
        }
        func run(_ fuel: UInt64) throws(ModuleError) -> Duration {
            let store = Store(engine: engine)
            store.fuel = Fuel(remaining: fuel)
            let clock = ContinuousClock()
            let start = clock.now
            do {
                let instance = try module.instantiate(store: store)
                _ = try instance.exports[function: "spin"]?()
            } catch let trap as Trap where GuestRun.isOutOfFuel(trap) {
                return clock.now - start
            } catch {
                throw ModuleError(message: "calibration loop: \(error)")
            }
            throw ModuleError(message: "calibration loop returned without running out of fuel")
        }
        var fuel: UInt64 = 100_000
        var elapsed = try run(fuel)
        while elapsed < sample, fuel < UInt64.max / 4 {
            fuel *= 2
            elapsed = try run(fuel)
        }
        var best = Double(fuel) / seconds(elapsed)
        for _ in 1..<max(1, rounds) {
            best = max(best, Double(fuel) / seconds(try run(fuel)))
        }
        return FuelRate(fuelPerSecond: best)
    }

    private static func seconds(_ duration: Duration) -> Double {
        max(1e-9, Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18)
    }
}
