/// What a node offers, or what a job needs: UCP's `Capabilities` model.
///
/// JSON fields (snake_case, all optional with UCP's defaults): `memory` (bytes, 0), `disk`
/// (bytes, 0), `cpu_load` (percent, 100), `cpu_cores` (1), `cpu_freq` (MHz, 0), `has_battery`
/// (true), `power` (battery percent, 0).
///
/// The same type describes both sides of a match: an executor's current state and a job's
/// requirement; ``canRun(_:)`` applies UCP's rule between them.
public struct Capabilities: Sendable, Hashable, Codable {
    /// Available memory in bytes (executor) or memory needed (job).
    public var memory: Int
    /// Free disk in bytes (executor) or disk needed (job).
    public var disk: Int
    /// Load in percent of all cores (executor), or the highest load the job tolerates (job).
    public var cpuLoad: Double
    /// Number of cores (executor) or cores needed (job).
    public var cpuCores: Int
    /// Core frequency in MHz (executor) or frequency needed (job). UCP calls this "not reliable".
    public var cpuFreq: Double
    /// Executor: runs on battery now. Job: `false` means "never run me on a battery".
    public var hasBattery: Bool
    /// Executor: battery charge in percent. Job: the charge it needs when the executor is on battery.
    public var power: Double

    /// Capabilities with UCP's defaults for every field left out.
    public init(
        memory: Int = 0, disk: Int = 0, cpuLoad: Double = 100, cpuCores: Int = 1, cpuFreq: Double = 0,
        hasBattery: Bool = true, power: Double = 0
    ) {
        self.memory = memory
        self.disk = disk
        self.cpuLoad = cpuLoad
        self.cpuCores = cpuCores
        self.cpuFreq = cpuFreq
        self.hasBattery = hasBattery
        self.power = power
    }

    /// UCP's capability rule, with `self` the executor and `job` what the job needs.
    ///
    /// True when `job.memory <= memory`, `job.disk <= disk`, `job.cpuLoad >= cpuLoad`,
    /// `job.cpuCores <= cpuCores` and `job.cpuFreq <= cpuFreq`; a job with `hasBattery == false`
    /// never runs on an executor that is on battery; and on an executor that is on battery,
    /// `job.power <= power` as well. Exactly `Capabilities.is_capable` of UCP (July 2025).
    public func canRun(_ job: Capabilities) -> Bool {
        guard
            job.memory <= memory, job.disk <= disk, job.cpuLoad >= cpuLoad, job.cpuCores <= cpuCores,
            job.cpuFreq <= cpuFreq
        else { return false }
        if hasBattery {
            return job.hasBattery && job.power <= power
        }
        return true
    }

    private enum CodingKeys: String, CodingKey {
        case memory, disk
        case cpuLoad = "cpu_load"
        case cpuCores = "cpu_cores"
        case cpuFreq = "cpu_freq"
        case hasBattery = "has_battery"
        case power
    }

    /// Decodes UCP's JSON; missing fields take their defaults, wrong types are a `DecodingError`.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        memory = try container.decodeIfPresent(Int.self, forKey: .memory) ?? 0
        disk = try container.decodeIfPresent(Int.self, forKey: .disk) ?? 0
        cpuLoad = try container.decodeIfPresent(Double.self, forKey: .cpuLoad) ?? 100
        cpuCores = try container.decodeIfPresent(Int.self, forKey: .cpuCores) ?? 1
        cpuFreq = try container.decodeIfPresent(Double.self, forKey: .cpuFreq) ?? 0
        hasBattery = try container.decodeIfPresent(Bool.self, forKey: .hasBattery) ?? true
        power = try container.decodeIfPresent(Double.self, forKey: .power) ?? 0
    }
}
