import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Where ``Capabilities/current(diskPath:system:)`` reads the machine's state; tests point it at
/// a fake tree.
public struct SystemFiles: Sendable, Hashable {
    /// The procfs mount, normally `/proc`.
    public var proc: String
    /// The sysfs mount, normally `/sys`.
    public var sys: String
    /// Logical cores, or nil to ask the operating system.
    public var cores: Int?

    /// Files under `proc` and `sys`; `cores` nil asks the operating system.
    public init(proc: String = "/proc", sys: String = "/sys", cores: Int? = nil) {
        self.proc = proc
        self.sys = sys
        self.cores = cores
    }

    /// The real machine.
    public static let live = SystemFiles()
}

/// The machine's state could not be read.
public struct CapabilitiesError: Error, Hashable, CustomStringConvertible {
    /// The file or folder that failed.
    public var path: String
    /// What went wrong.
    public var problem: String

    /// One line naming the path.
    public var description: String { "cannot read capabilities from \(path): \(problem)" }
}

extension Capabilities {
    /// This machine's capabilities now, as a UCP executor reports them.
    ///
    /// - `memory`: `MemAvailable` from `/proc/meminfo`, in bytes.
    /// - `disk`: bytes available to an unprivileged user on the file system of `diskPath`
    ///   (`statvfs`: `f_bavail × f_frsize`), as psutil's `disk_usage().free`.
    /// - `cpu_load`: the 5-minute load average from `/proc/loadavg` over the core count, in percent,
    ///   at most 100 as UCP's `psutil.cpu_percent()` is (a job's default `cpu_load` of 100 then
    ///   still fits an overloaded executor).
    /// - `cpu_cores`: logical cores.
    /// - `cpu_freq`: `cpuinfo_max_freq` of cpu0 from sysfs in MHz when present, else the highest
    ///   `cpu MHz` in `/proc/cpuinfo` (virtual machines often have no cpufreq; UCP reported 0 there).
    /// - `has_battery`: a `Battery` in `/sys/class/power_supply` whose status is `Discharging` and no
    ///   mains supply online, i.e. running on battery now; `power`: its `capacity` (100 without one).
    ///
    /// Reads a handful of small files; call it per heartbeat, not per request.
    ///
    /// - Throws: ``CapabilitiesError`` naming the file when memory, load or disk cannot be read.
    public static func current(diskPath: String, system: SystemFiles = .live) throws -> Capabilities {
        let cores = max(1, system.cores ?? ProcessInfo.processInfo.activeProcessorCount)
        let memory = try availableMemory(meminfo: system.proc + "/meminfo")
        let load5 = try loadAverage(path: system.proc + "/loadavg")
        let disk = try availableDisk(path: diskPath)
        let freq = cpuFrequency(system: system)
        let battery = batteryState(powerSupplies: system.sys + "/class/power_supply")
        return Capabilities(
            memory: memory, disk: disk, cpuLoad: min(100, load5 / Double(cores) * 100), cpuCores: cores, cpuFreq: freq,
            hasBattery: battery.onBattery, power: battery.percent)
    }

    static func availableMemory(meminfo: String) throws -> Int {
        let text = try readText(meminfo)
        for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.count >= 2, let kib = Int(fields[1]) {
                return kib * 1024
            }
        }
        throw CapabilitiesError(path: meminfo, problem: "no MemAvailable line")
    }

    static func loadAverage(path: String) throws -> Double {
        let fields = try readText(path).split(separator: " ")
        guard fields.count >= 2, let load = Double(fields[1]) else {
            throw CapabilitiesError(path: path, problem: "no 5-minute load average")
        }
        return load
    }

    static func availableDisk(path: String) throws -> Int {
        var stats = statvfs()
        guard statvfs(path, &stats) == 0 else {
            throw CapabilitiesError(path: path, problem: String(cString: strerror(errno)))
        }
        return Int(stats.f_bavail) * Int(stats.f_frsize)
    }

    static func cpuFrequency(system: SystemFiles) -> Double {
        let maxFreq = system.sys + "/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"
        if let text = try? readText(maxFreq), let khz = Double(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
            return khz / 1000
        }
        guard let cpuinfo = try? readText(system.proc + "/cpuinfo") else { return 0 }
        var highest = 0.0
        for line in cpuinfo.split(separator: "\n") where line.hasPrefix("cpu MHz") {
            if let colon = line.firstIndex(of: ":"),
                let mhz = Double(line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
            {
                highest = max(highest, mhz)
            }
        }
        return highest
    }

    static func batteryState(powerSupplies: String) -> (onBattery: Bool, percent: Double) {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: powerSupplies) else {
            return (false, 100)
        }
        func field(_ supply: String, _ name: String) -> String? {
            (try? readText("\(powerSupplies)/\(supply)/\(name)"))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        var mainsOnline = false
        var battery: (status: String, percent: Double)?
        for supply in entries.sorted() {
            switch field(supply, "type") {
            case "Mains", "USB":
                if field(supply, "online") == "1" { mainsOnline = true }
            case "Battery" where battery == nil:
                let percent = field(supply, "capacity").flatMap(Double.init) ?? 100
                battery = (field(supply, "status") ?? "Unknown", percent)
            default:
                break
            }
        }
        guard let battery else { return (false, 100) }
        return (battery.status == "Discharging" && !mainsOnline, battery.percent)
    }

    private static func readText(_ path: String) throws -> String {
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw CapabilitiesError(path: path, problem: "\(error.localizedDescription)")
        }
    }
}
