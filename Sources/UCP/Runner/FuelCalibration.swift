import Foundation
import WAT
import WasmKit

/// How fast this machine burns WasmKit fuel, measured at start-up: the basis of job time limits.
///
/// WasmKit cannot interrupt a running guest, so a time limit becomes a fuel budget:
/// `limit × fuelPerSecond × safetyFactor`. Fuel counts instructions, not time, and how many a
/// second depends on the code: so the rate is measured on several loops (a bare branch,
/// arithmetic, memory loads and stores, calls), each the best of a few short runs, and the budget
/// uses the fastest of them. A job is therefore never stopped before its limit (the safety factor
/// absorbs measurement noise), and a runaway job of the slowest measured kind stops after about
/// `limit × safetyFactor × fuelPerSecond / slowestFuelPerSecond` (``overrun``, reported at
/// start). A guest that calls WASI is also stopped at its first call after the deadline.
public struct FuelRate: Sendable, Hashable, CustomStringConvertible {
    /// Fuel units per second on the fastest-burning calibration loop; budgets use this.
    public let fuelPerSecond: Double
    /// Fuel units per second on the slowest-burning calibration loop.
    public let slowestFuelPerSecond: Double

    /// A known rate (for tests, or a rate measured earlier); `slowest` defaults to `fuelPerSecond`.
    public init(fuelPerSecond: Double, slowest: Double? = nil) {
        precondition(fuelPerSecond > 0, "the rate must be positive")
        self.fuelPerSecond = fuelPerSecond
        self.slowestFuelPerSecond = min(fuelPerSecond, max(slowest ?? fuelPerSecond, 1))
    }

    /// How many times its limit a runaway job of the slowest measured kind may run, before the
    /// safety factor: `fuelPerSecond / slowestFuelPerSecond`.
    public var overrun: Double { fuelPerSecond / slowestFuelPerSecond }

    /// The budget for `limit` with `safetyFactor`, at least 1 and at most `UInt64.max - 1`.
    public func budget(for limit: Duration, safetyFactor: Double) -> UInt64 {
        let seconds = Double(limit.components.seconds) + Double(limit.components.attoseconds) / 1e18
        let fuel = seconds * fuelPerSecond * safetyFactor
        guard fuel.isFinite, fuel < 1.8e19 else { return UInt64.max - 1 }
        return UInt64(max(1, fuel))
    }

    /// E.g. `3.2e+08 fuel/s (slowest loop 9.1e+07, overrun ×3.5)`.
    public var description: String {
        String(format: "%.2g fuel/s (slowest loop %.2g, overrun ×%.1f)", fuelPerSecond, slowestFuelPerSecond, overrun)
    }

    /// The loops the rate is measured on, each exported by its name; each runs forever.
    static let calibrationWAT = """
        (module
          (memory 1)
          (func (export "branch")
            (loop $again (br $again)))
          (func (export "arithmetic") (local $i i32) (local $j i32)
            (loop $again
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (local.set $j (i32.xor (local.get $j) (i32.mul (local.get $i) (i32.const 31))))
              (br $again)))
          (func (export "memory") (local $i i32)
            (loop $again
              (i32.store (i32.and (local.get $i) (i32.const 4092))
                (i32.add (i32.load (i32.and (local.get $i) (i32.const 4092))) (i32.const 1)))
              (local.set $i (i32.add (local.get $i) (i32.const 4)))
              (br $again)))
          (func $leaf (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
          (func (export "calls") (local $i i32)
            (loop $again
              (local.set $i (call $leaf (local.get $i)))
              (br $again))))
        """
    static let calibrationLoops = ["branch", "arithmetic", "memory", "calls"]

    /// Measures the rates on `engine` (which must meter fuel): runs each loop with growing budgets
    /// until a run takes at least `sample`, then takes the best of `rounds` such runs.
    /// Takes about `4 × rounds × sample` plus the ramp-ups.
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
        func run(_ loop: String, _ fuel: UInt64) throws(ModuleError) -> Duration {
            let store = Store(engine: engine)
            store.fuel = Fuel(remaining: fuel)
            let clock = ContinuousClock()
            let start = clock.now
            do {
                let instance = try module.instantiate(store: store)
                _ = try instance.exports[function: loop]?()
            } catch let trap as Trap where GuestRun.isOutOfFuel(trap) {
                return clock.now - start
            } catch {
                throw ModuleError(message: "calibration loop: \(error)")
            }
            throw ModuleError(message: "calibration loop returned without running out of fuel")
        }
        var rates: [Double] = []
        for loop in calibrationLoops {
            var fuel: UInt64 = 50_000
            var elapsed = try run(loop, fuel)
            while elapsed < sample, fuel < UInt64.max / 4 {
                fuel *= 2
                elapsed = try run(loop, fuel)
            }
            var best = Double(fuel) / seconds(elapsed)
            for _ in 1..<max(1, rounds) {
                best = max(best, Double(fuel) / seconds(try run(loop, fuel)))
            }
            rates.append(best)
        }
        return FuelRate(fuelPerSecond: rates.max()!, slowest: rates.min()!)
    }

    private static func seconds(_ duration: Duration) -> Double {
        max(1e-9, Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18)
    }
}
