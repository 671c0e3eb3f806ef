// Causal broadcast over TCP (two CausalNodes on loopback, width-16 clocks, 64-byte payloads) beside a
// raw libuv TCP pump moving frames of the same layout and size (32-byte header, 16 × 8-byte clock,
// 64-byte payload) with no causal layer. Both run in this process: each node (and each end of the
// pump) has a loop thread of its own, and the benchmark thread hands messages to the sender the same
// way for both (a copy into a bounded queue and a loop wake-up). `make bench` prints the ratios.
//
//   transport 64B w16        throughput: a sample sends 1,024 × k messages and waits for all
//                            deliveries; custom metrics give the sample's payload MB/s and the p50/p99
//                            one-way latency (send call to delivery callback, same monotonic clock).
//   transport one-way 64B w16  one message in flight: an iteration sends one and waits for its delivery.
import Benchmark
import CRawPump
import Causal
import Dispatch
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

let width = 16
let payloadSize = 64
let frameSize = 32 + width * 8 + payloadSize
/// Send window of the node and ring of the pump: the same bound on messages in flight.
let window = 4096

/// CLOCK_MONOTONIC in nanoseconds: the clock libuv's `uv_hrtime` reads too.
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}

/// Counts arrivals on a receiving loop thread, keeps each one's one-way latency in a preallocated
/// ring, and wakes the benchmark thread when the awaited total is in. Allocates nothing per message.
final class Arrivals: @unchecked Sendable {
    let count = Atomic<Int>(0)
    let expected = Atomic<Int>(Int.max)
    let done = DispatchSemaphore(value: 0)
    /// One-way latencies in ns, by arrival number modulo `capacity`; receiving thread only
    /// (read by the benchmark thread after `wait`, which orders it).
    let latencies: UnsafeMutableBufferPointer<UInt64>
    private let scratch: UnsafeMutableBufferPointer<UInt64>

    init(capacity: Int = 1 << 20) {
        latencies = .allocate(capacity: capacity)
        latencies.initialize(repeating: 0)
        scratch = .allocate(capacity: capacity)
        scratch.initialize(repeating: 0)
    }

    /// A message stamped at `sentAt` arrived. Receiving thread.
    @inline(__always)
    func record(sentAt: UInt64) {
        let index = count.load(ordering: .relaxed)
        latencies[index & (latencies.count - 1)] = monotonicNanoseconds() &- sentAt
        let now = count.add(1, ordering: .acquiringAndReleasing).newValue
        if now == expected.load(ordering: .acquiring) { done.signal() }
    }

    /// Waits until `total` messages have arrived since the start.
    func wait(forTotal total: Int) {
        expected.store(total, ordering: .releasing)
        if count.load(ordering: .acquiring) >= total { return }
        done.wait()
    }

    /// The 50th and 99th percentile of the latencies of arrivals `range` (at most `capacity` of
    /// them). Sorts in a preallocated buffer; call outside the measurement.
    func percentiles(_ range: Range<Int>) -> (p50: Int, p99: Int) {
        let n = min(range.count, latencies.count)
        guard n > 0 else { return (0, 0) }
        for i in 0..<n { scratch[i] = latencies[(range.upperBound - n + i) & (latencies.count - 1)] }
        var sample = UnsafeMutableBufferPointer(rebasing: scratch[0..<n])
        sample.sort()
        return (Int(sample[n / 2]), Int(sample[min(n - 1, n * 99 / 100)]))
    }
}

/// What a benchmark drives: something that takes a stamped 64-byte payload and delivers it to
/// `arrivals` on another thread.
protocol Transport: AnyObject, Sendable {
    var arrivals: Arrivals { get }
    /// Hands over one message stamped now; spins (yielding the CPU) while the window is full.
    func send()
}

/// Two nodes of a width-16 group on loopback: slot 0 broadcasts, slot 1 records what it delivers.
final class NodeTransport: Transport, @unchecked Sendable {
    let arrivals = Arrivals()
    let sender: CausalNode
    let receiver: CausalNode
    let payload = UnsafeMutableRawBufferPointer.allocate(byteCount: payloadSize, alignment: 8)

    init() throws {
        payload.initializeMemory(as: UInt8.self, repeating: 0x5A)
        let key = ClusterKey.random()
        var options = CausalNode.Options()
        options.sendWindow = window
        let arrivals = self.arrivals
        receiver = try CausalNode(
            slot: 1, width: width, listen: ("127.0.0.1", 0), peers: [.init(slot: 0, host: "127.0.0.1", port: 9)],
            key: key, options: options,
            onDeliver: { message in
                if message.sender == 0 { arrivals.record(sentAt: message.payload.load(as: UInt64.self)) }
            })
        sender = try CausalNode(
            slot: 0, width: width, listen: ("127.0.0.1", 0),
            peers: [.init(slot: 1, host: "127.0.0.1", port: receiver.port)], key: key, options: options,
            onDeliver: { _ in })  // its own broadcasts come back; no copies wanted
        let deadline = ContinuousClock.now + .seconds(10)
        while sender.statistics.peersUp < 1 || receiver.statistics.peersUp < 1 {
            precondition(ContinuousClock.now < deadline, "the nodes did not connect")
            usleep(1000)
        }
    }

    @inline(__always)
    func send() {
        payload.storeBytes(of: monotonicNanoseconds(), as: UInt64.self)
        while true {
            do {
                try sender.broadcast(UnsafeRawBufferPointer(payload))
                return
            } catch  where error.reason == .full {
                sched_yield()
            } catch {
                fatalError("broadcast failed: \(error)")
            }
        }
    }
}

/// The raw pump: the same frame bytes from one loop to another, no causal layer.
final class PumpTransport: Transport, @unchecked Sendable {
    let arrivals = Arrivals()
    var pump: OpaquePointer?
    let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: frameSize, alignment: 8)
    let payloadOffset = 32 + width * 8

    init() {
        // The causal frame's layout: length, version 1, MESSAGE, LOW, no flags, sender 0,
        // width 16, 16 dense entries, kind 0, seq; then the clock and the payload.
        frame.initializeMemory(as: UInt8.self, repeating: 0x5A)
        frame.storeBytes(of: UInt32(frameSize - 4).littleEndian, toByteOffset: 0, as: UInt32.self)
        frame.storeBytes(of: 1, toByteOffset: 4, as: UInt8.self)
        frame.storeBytes(of: 3, toByteOffset: 5, as: UInt8.self)
        frame.storeBytes(of: 1, toByteOffset: 6, as: UInt8.self)
        frame.storeBytes(of: 0, toByteOffset: 7, as: UInt8.self)
        frame.storeBytes(of: UInt32(0), toByteOffset: 8, as: UInt32.self)
        frame.storeBytes(of: UInt32(width).littleEndian, toByteOffset: 12, as: UInt32.self)
        frame.storeBytes(of: UInt32(width).littleEndian, toByteOffset: 16, as: UInt32.self)
        frame.storeBytes(of: UInt32(0), toByteOffset: 20, as: UInt32.self)
        for k in 0..<(1 + width) { frame.storeBytes(of: UInt64(k), toByteOffset: 24 + 8 * k, as: UInt64.self) }
        let ctx = Unmanaged.passUnretained(arrivals).toOpaque()
        let rc = raw_pump_start(
            frameSize, window,
            { ctx, frame, _ in
                let arrivals = Unmanaged<Arrivals>.fromOpaque(ctx!).takeUnretainedValue()
                let sentAt = UnsafeRawPointer(frame! + 32 + width * 8).loadUnaligned(as: UInt64.self)
                arrivals.record(sentAt: sentAt)
            }, ctx, &pump)
        precondition(rc == 0 && pump != nil, "raw pump did not start: \(rc)")
    }

    @inline(__always)
    func send() {
        frame.storeBytes(of: monotonicNanoseconds(), toByteOffset: payloadOffset, as: UInt64.self)
        while raw_pump_send(pump, frame.baseAddress) != 0 { sched_yield() }
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        scalingFactor: .kilo,
        maxDuration: .seconds(3),
        maxIterations: 10_000
    )
    let latency50 = BenchmarkMetric.custom(
        "one-way latency p50 (ns)", polarity: .prefersSmaller, useScalingFactor: false)
    let latency99 = BenchmarkMetric.custom(
        "one-way latency p99 (ns)", polarity: .prefersSmaller, useScalingFactor: false)
    let megabytes = BenchmarkMetric.custom("payload MB/s", polarity: .prefersLarger, useScalingFactor: false)

    /// Messages sent so far on one transport (the benchmark closures run one at a time).
    final class Progress: @unchecked Sendable {
        var sent = 0
    }

    func register(_ name: String, _ transport: Transport) {
        let progress = Progress()
        // Warm up: connections, buffers, the node's log and the engine reach steady state.
        for _ in 0..<(4 * window) { transport.send() }
        progress.sent += 4 * window
        transport.arrivals.wait(forTotal: progress.sent)

        Benchmark(
            name,
            configuration: .init(
                metrics: [.wallClock, .throughput, .mallocCountTotal, latency50, latency99, megabytes])
        ) { benchmark in
            let count = benchmark.scaledIterations.count
            let sent = progress.sent
            let start = monotonicNanoseconds()
            benchmark.startMeasurement()
            for _ in 0..<count { transport.send() }
            transport.arrivals.wait(forTotal: sent + count)
            benchmark.stopMeasurement()
            let elapsed = monotonicNanoseconds() - start
            let (p50, p99) = transport.arrivals.percentiles(sent..<(sent + count))
            progress.sent += count
            benchmark.measurement(latency50, p50)
            benchmark.measurement(latency99, p99)
            benchmark.measurement(megabytes, Int(Double(count * payloadSize) / Double(elapsed) * 1e3))
        }

        Benchmark(
            name.replacingOccurrences(of: "transport ", with: "transport one-way "),
            configuration: .init(metrics: [.wallClock, .mallocCountTotal], scalingFactor: .one)
        ) { benchmark in
            for _ in benchmark.scaledIterations {
                transport.send()
                progress.sent += 1
                transport.arrivals.wait(forTotal: progress.sent)
            }
        }
    }

    register("transport 64B w16", try! NodeTransport())
    register("transport 64B w16 baseline raw pump", PumpTransport())
}
