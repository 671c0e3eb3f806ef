// Causal broadcast between two processes on loopback (two CausalNodes, width-16 clocks, 64-byte
// payloads) beside a raw libuv TCP pump moving frames of the same layout and size (32-byte header,
// 16 × 8-byte clock, 64-byte payload) with no causal layer, in the same run and the same process
// layout. This process sends: the benchmark thread hands each message to a sending loop thread
// (a copy into a bounded ring and a loop wake-up, for both). A receiver process, this executable
// started again with TRANSPORT_RECEIVER set (ReceiverProcess.swift), receives on a loop thread of
// its own and answers on a pipe once the messages it was told to wait for are in; asked after
// the measurement, it tells their one-way latencies: each payload carries its send time
// (CLOCK_MONOTONIC, one clock for both processes on one machine). `make bench` prints the ratios.
//
//   transport 64B w16          throughput: a sample sends a million messages and waits for the
//                              receiver's answer (a pipe round trip and a wake-up per sample, a few
//                              tens of µs: noise at this size, a fifth of the time per message at
//                              a thousand); custom metrics give the sample's payload MB/s, the p50/p99
//                              one-way latency (send call to delivery callback) and the receiver
//                              process's mallocs in the sample (the malloc metric counts this one's).
//   transport one-way 64B w16  one message in flight: an iteration sends one and waits for the
//                              receiver's answer, so its wall clock includes the answer's trip back
//                              over the pipe; the message's own one-way latency is a custom metric.
import Benchmark
import CRawPump
import Causal

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

/// What a benchmark drives: a sender in this process and a receiver process.
protocol Transport: AnyObject, Sendable {
    /// Hands over one message stamped now; spins (yielding the CPU) while the window is full.
    func send()
    /// Waits until the receiver has had `total` messages since the start.
    func wait(forTotal total: Int)
    /// What the receiver measured for the messages that arrived since the previous report.
    func report() -> ReceiverReport
}

/// Two nodes of a width-16 group: slot 0 here broadcasts, slot 1 in the receiver process delivers.
final class NodeTransport: Transport, @unchecked Sendable {
    let receiver: ReceiverProcess
    let sender: CausalNode
    let payload = UnsafeMutableRawBufferPointer.allocate(byteCount: payloadSize, alignment: 8)

    init() throws {
        payload.initializeMemory(as: UInt8.self, repeating: 0x5A)
        let key = ClusterKey.random()
        receiver = try ReceiverProcess(role: .node, key: key)
        var options = CausalNode.Options()
        options.sendWindow = window
        sender = try CausalNode(
            slot: 0, width: width, listen: ("127.0.0.1", 0),
            peers: [.init(slot: 1, host: "127.0.0.1", port: receiver.port)], key: key, options: options,
            onDeliver: { _ in })  // its own broadcasts come back; no copies wanted
        let deadline = ContinuousClock.now + .seconds(10)
        while sender.statistics.peersUp < 1 {
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

    func wait(forTotal total: Int) { receiver.wait(forTotal: total) }
    func report() -> ReceiverReport { receiver.report() }
}

/// The raw pump: the same frame bytes from a loop here to a loop in the receiver process.
final class PumpTransport: Transport, @unchecked Sendable {
    let receiver: ReceiverProcess
    var pump: OpaquePointer?
    let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: frameSize, alignment: 8)
    let payloadOffset = 32 + width * 8

    init() throws {
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
        receiver = try ReceiverProcess(role: .pump, key: nil)
        let rc = raw_pump_connect(UInt16(receiver.port), frameSize, window, &pump)
        precondition(rc == 0 && pump != nil, "raw pump did not connect: \(rc)")
    }

    @inline(__always)
    func send() {
        frame.storeBytes(of: monotonicNanoseconds(), toByteOffset: payloadOffset, as: UInt64.self)
        while raw_pump_send(pump, frame.baseAddress) != 0 { sched_yield() }
    }

    func wait(forTotal total: Int) { receiver.wait(forTotal: total) }
    func report() -> ReceiverReport { receiver.report() }
}

/// A transport made on first use (in a benchmark's setup, outside every measurement) and
/// warmed up: connections, buffers, the node's log and the engine reach steady state. The
/// benchmark closures and hooks of one process run one at a time.
final class Shared: @unchecked Sendable {
    private let make: () throws -> Transport
    private var made: Transport?
    /// Messages sent so far.
    var sent = 0

    init(_ make: @escaping () throws -> Transport) { self.make = make }

    var transport: Transport {
        if let made { return made }
        let transport = try! make()
        for _ in 0..<(4 * window) { transport.send() }
        sent += 4 * window
        transport.wait(forTotal: sent)
        _ = transport.report()
        made = transport
        return transport
    }
}

let benchmarks: @Sendable () -> Void = {
    if let role = ReceiverProcess.roleOfThisProcess { ReceiverProcess.run(role) }  // never returns

    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        scalingFactor: .mega,
        maxDuration: .seconds(4),
        maxIterations: 10_000
    )
    let latency50 = BenchmarkMetric.custom(
        "one-way latency p50 (ns)", polarity: .prefersSmaller, useScalingFactor: false)
    let latency99 = BenchmarkMetric.custom(
        "one-way latency p99 (ns)", polarity: .prefersSmaller, useScalingFactor: false)
    let megabytes = BenchmarkMetric.custom("payload MB/s", polarity: .prefersLarger, useScalingFactor: false)
    let receiverMallocs = BenchmarkMetric.custom(
        "receiver mallocs", polarity: .prefersSmaller, useScalingFactor: false)
    let latency = BenchmarkMetric.custom("one-way latency (ns)", polarity: .prefersSmaller, useScalingFactor: false)

    func register(_ name: String, _ shared: Shared) {
        Benchmark(
            name,
            configuration: .init(
                metrics: [.wallClock, .throughput, .mallocCountTotal, latency50, latency99, megabytes, receiverMallocs]
            ),
            closure: { benchmark in
                let transport = shared.transport
                let count = benchmark.scaledIterations.count
                let sent = shared.sent
                let start = monotonicNanoseconds()
                benchmark.startMeasurement()
                for _ in 0..<count { transport.send() }
                transport.wait(forTotal: sent + count)
                benchmark.stopMeasurement()
                let elapsed = monotonicNanoseconds() - start
                shared.sent += count
                let report = transport.report()
                benchmark.measurement(latency50, report.p50)
                benchmark.measurement(latency99, report.p99)
                benchmark.measurement(megabytes, Int(Double(count * payloadSize) / Double(elapsed) * 1e3))
                if report.mallocs >= 0 { benchmark.measurement(receiverMallocs, report.mallocs) }
            }, setup: { _ = shared.transport })

        // One message per sample: the percentiles of the table are those of single messages.
        Benchmark(
            name.replacingOccurrences(of: "transport ", with: "transport one-way "),
            configuration: .init(
                metrics: [.wallClock, .mallocCountTotal, latency], scalingFactor: .one, maxDuration: .seconds(3)),
            closure: { benchmark in
                let transport = shared.transport
                benchmark.startMeasurement()
                transport.send()
                shared.sent += 1
                transport.wait(forTotal: shared.sent)
                benchmark.stopMeasurement()
                benchmark.measurement(latency, transport.report().p50)
            }, setup: { _ = shared.transport })
    }

    register("transport 64B w16", Shared { try NodeTransport() })
    register("transport 64B w16 baseline raw pump", Shared { try PumpTransport() })
}
