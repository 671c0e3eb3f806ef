import Foundation
import Testing
import UCP

@Suite("Capabilities")
struct CapabilitiesTests {
    /// An executor with 8 GiB, 100 GiB of disk, 20 % load, 4 cores at 2400 MHz, on mains.
    static let mains = Capabilities(
        memory: 8 << 30, disk: 100 << 30, cpuLoad: 20, cpuCores: 4, cpuFreq: 2400, hasBattery: false, power: 100)
    /// The same executor on battery at 40 %.
    static let battery = Capabilities(
        memory: 8 << 30, disk: 100 << 30, cpuLoad: 20, cpuCores: 4, cpuFreq: 2400, hasBattery: true, power: 40)

    @Test(
        "UCP's rule: executor.canRun(job)",
        arguments: [
            // (executor, job, expected)
            (mains, Capabilities(), true),  // UCP's default job needs nothing and tolerates 100 % load
            (mains, Capabilities(memory: 8 << 30), true),  // equal memory is enough
            (mains, Capabilities(memory: (8 << 30) + 1), false),
            (mains, Capabilities(disk: (100 << 30) + 1), false),
            (mains, Capabilities(cpuLoad: 20), true),  // the job tolerates exactly the executor's load
            (mains, Capabilities(cpuLoad: 19.9), false),  // the executor is busier than the job tolerates
            (mains, Capabilities(cpuCores: 4), true),
            (mains, Capabilities(cpuCores: 5), false),
            (mains, Capabilities(cpuFreq: 2400), true),
            (mains, Capabilities(cpuFreq: 2400.1), false),
            (mains, Capabilities(hasBattery: false), true),  // "not on battery" is met by mains
            (mains, Capabilities(hasBattery: true, power: 100), true),  // power only matters on battery
            (battery, Capabilities(hasBattery: false), false),  // never on battery
            (battery, Capabilities(hasBattery: true, power: 40), true),
            (battery, Capabilities(hasBattery: true, power: 40.5), false),
            (battery, Capabilities(), true),  // default job: battery fine, power 0
            (battery, Capabilities(memory: 1 << 40, power: 0), false),  // the other rules still apply
        ])
    func rule(executor: Capabilities, job: Capabilities, expected: Bool) {
        #expect(executor.canRun(job) == expected)
    }

    @Test("a default executor (UCP's defaults) runs only the default job")
    func defaults() {
        let executor = Capabilities()
        #expect(executor.canRun(Capabilities()))
        #expect(!executor.canRun(Capabilities(memory: 1)))
        #expect(!executor.canRun(Capabilities(hasBattery: false)))  // the default executor is "on battery"
    }

    @Test("current() reads this machine")
    func currentMachine() throws {
        let caps = try Capabilities.current(diskPath: NSTemporaryDirectory())
        #expect(caps.memory > 0)
        #expect(caps.disk > 0)
        #expect(caps.cpuCores == ProcessInfo.processInfo.activeProcessorCount)
        #expect(caps.cpuLoad >= 0)
        #expect(caps.cpuFreq >= 0)
        #expect(caps.power > 0 && caps.power <= 100)
    }

    @Test("current() reads meminfo, loadavg, cpufreq and a discharging battery from the given tree")
    func fakeTree() throws {
        try withTemporaryFolder { root in
            try write(
                "MemTotal:       16000000 kB\nMemFree:  1000 kB\nMemAvailable:    2048 kB\n", to: "\(root)/proc/meminfo"
            )
            try write("0.50 3.00 1.00 2/345 6789\n", to: "\(root)/proc/loadavg")
            try write(
                "processor : 0\ncpu MHz\t\t: 1800.000\nprocessor : 1\ncpu MHz\t\t: 2200.500\n",
                to: "\(root)/proc/cpuinfo")
            try write("Battery\n", to: "\(root)/sys/class/power_supply/BAT0/type")
            try write("Discharging\n", to: "\(root)/sys/class/power_supply/BAT0/status")
            try write("37\n", to: "\(root)/sys/class/power_supply/BAT0/capacity")
            try write("Mains\n", to: "\(root)/sys/class/power_supply/AC/type")
            try write("0\n", to: "\(root)/sys/class/power_supply/AC/online")
            let system = SystemFiles(proc: "\(root)/proc", sys: "\(root)/sys", cores: 4)
            var caps = try Capabilities.current(diskPath: root, system: system)
            #expect(caps.memory == 2048 * 1024)
            #expect(caps.cpuLoad == 75)  // 5-minute load 3.0 over 4 cores
            #expect(caps.cpuCores == 4)
            #expect(caps.cpuFreq == 2200.5)  // no cpufreq: the highest "cpu MHz"
            #expect(caps.hasBattery && caps.power == 37)

            try write("1\n", to: "\(root)/sys/class/power_supply/AC/online")  // plugged in
            try write("2600000\n", to: "\(root)/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
            caps = try Capabilities.current(diskPath: root, system: system)
            #expect(!caps.hasBattery && caps.power == 37)
            #expect(caps.cpuFreq == 2600)

            try FileManager.default.removeItem(atPath: "\(root)/sys/class/power_supply")
            caps = try Capabilities.current(diskPath: root, system: system)
            #expect(!caps.hasBattery && caps.power == 100)  // no battery at all: UCP reports 100

            try FileManager.default.removeItem(atPath: "\(root)/proc/meminfo")
            #expect(throws: CapabilitiesError.self) { try Capabilities.current(diskPath: root, system: system) }
        }
    }
}
