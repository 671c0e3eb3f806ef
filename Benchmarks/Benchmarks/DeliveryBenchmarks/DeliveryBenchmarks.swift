// Loop-backed causal delivery (width 16) beside a raw hand-off through the same queue and loop with
// the causal check switched off. One producer thread (the benchmark's) posts a causal history; the loop
// thread delivers it. `make bench` prints the ratios.
import Benchmark
import Causal
import Dispatch
import Synchronization

let width = 16
let window = 64

/// A random causal history among 15 peers (slots 1...15 of a width-16 group; slot 0 is the receiver),
/// laid out flat so that posting it allocates nothing. Repetition k adds k × the final clock, which
/// continues the history causally for as long as a benchmark runs.
struct History: Sendable {
    var senders: [Int] = []
    var clocks: [UInt64] = []
    var final: [UInt64]
    var count: Int { senders.count }

    init(messages: Int, seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var known = Array(repeating: Array(repeating: UInt64(0), count: width), count: width)
        for _ in 0..<messages {
            let sender = 1 + Int(random.next() % UInt64(width - 1))
            if !senders.isEmpty && random.next() % 2 == 0 {
                // Learn an earlier message (and so everything it depended on).
                let earlier = Int(random.next() % UInt64(senders.count))
                for k in 0..<width { known[sender][k] = max(known[sender][k], clocks[earlier * width + k]) }
            }
            known[sender][sender] += 1
            senders.append(sender)
            clocks.append(contentsOf: known[sender])
        }
        final = (0..<width).map { k in known.map { $0[k] }.max()! }
    }
}

/// Counts deliveries on the loop thread and wakes the benchmark thread when a batch is in.
final class Arrivals: Sendable {
    let delivered = Atomic<Int>(0)
    let expected = Atomic<Int>(Int.max)
    let batchDone = DispatchSemaphore(value: 0)

    func record() {
        let now = delivered.add(1, ordering: .acquiringAndReleasing).newValue
        if now == expected.load(ordering: .acquiring) { batchDone.signal() }
    }

    /// Waits until `total` messages have been delivered since the start.
    func wait(forTotal total: Int) {
        expected.store(total, ordering: .releasing)
        if delivered.load(ordering: .acquiring) >= total { return }
        batchDone.wait()
    }
}

/// Posts the history, in order or permuted within blocks of `window`, into an inbox, and waits for it.
final class Feeder: @unchecked Sendable {
    let history: History
    let inbox: CausalInbox
    let arrivals: Arrivals
    let order: [Int]  // position → history index within a block
    var next = 0  // messages posted so far
    var scratch = VectorClock(width: width)
    let payload = [UInt8](repeating: 0x5A, count: 64)

    init(loop: CausalLoop, raw: Bool, reordered: Bool, history: History) throws {
        let arrivals = Arrivals()
        self.arrivals = arrivals
        self.history = history
        self.inbox = try CausalInbox(
            loop: loop, width: width, slot: nil, capacity: 8192, maxPayload: 64, window: 1024, raw: raw,
            onDeliver: { _ in arrivals.record() })
        var random = SplitMix64(seed: 64)
        order = reordered ? (0..<window).shuffled(using: &random) : Array(0..<window)
    }

    /// Posts one message; the next in the (permuted) history.
    @inline(__always)
    func postOne() {
        let block = next / window * window
        let position = block + order[next % window]
        let repetition = UInt64(position / history.count)
        let index = position % history.count
        history.clocks.withUnsafeBufferPointer { clocks in
            scratch.withUnsafeMutableBufferPointer { c in
                for k in 0..<width { c[k] = clocks[index * width + k] &+ repetition &* history.final[k] }
            }
        }
        payload.withUnsafeBytes { bytes in
            do {
                try inbox.post(sender: history.senders[index], clock: scratch, payload: bytes)
            } catch {
                fatalError("post failed: \(error)")
            }
        }
        next += 1
    }

    /// Posts `count` messages (a multiple of the window) and waits until all are delivered.
    func run(_ count: Int) {
        for _ in 0..<count { postOne() }
        arrivals.wait(forTotal: next)
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 10_000
    )
    let history = History(messages: 4096, seed: 16)
    let loop = try! CausalLoop()

    func register(_ name: String, raw: Bool, reordered: Bool) {
        let feeder = try! Feeder(loop: loop, raw: raw, reordered: reordered, history: history)
        // Warm the pool and the engine so that a sample measures steady state.
        feeder.run(4 * 1024)
        Benchmark(name) { benchmark in
            // 1,024 messages a sample (the scaling factor), a multiple of the window.
            benchmark.startMeasurement()
            feeder.run(benchmark.scaledIterations.count / window * window)
            benchmark.stopMeasurement()
        }
    }
    register("delivery in order w16", raw: false, reordered: false)
    register("delivery in order w16 baseline raw hand-off", raw: true, reordered: false)
    register("delivery reordered64 w16", raw: false, reordered: true)
    register("delivery reordered64 w16 baseline raw hand-off", raw: true, reordered: true)
}

struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
