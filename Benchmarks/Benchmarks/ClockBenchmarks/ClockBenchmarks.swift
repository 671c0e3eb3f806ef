// Clock operations through the Swift API beside memcmp / memcpy called directly on raw copies of the
// same bytes (so the Swift layer's own overhead counts against us). `make bench` prints the ratios.
import Benchmark
import Causal

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal],
        scalingFactor: .kilo,
        maxDuration: .milliseconds(1500),
        maxIterations: 100_000
    )

    for width in [8, 16, 64, 512, 1024] {
        // a happened before b and they differ only in the last entry, so compare scans every entry,
        // as memcmp does over two equal buffers.
        let a = VectorClock((0..<width).map { UInt64($0) * 3 })
        var later = a.entries
        later[width - 1] += 1
        let b = VectorClock(later)
        let bytes = width * MemoryLayout<UInt64>.stride
        // The baselines' buffers are 64-byte aligned: glibc's memcpy (rep movsb on this CPU) takes some 25
        // times longer when destination and source sit 16 bytes apart modulo a page, as two malloc blocks
        // can, and a baseline should be the fast case.
        func aligned(_ entries: [UInt64]) -> UnsafeMutableBufferPointer<UInt64> {
            let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            let buffer = UnsafeMutableBufferPointer(start: raw.bindMemory(to: UInt64.self, capacity: width), count: width)
            _ = buffer.initialize(from: entries)
            return buffer
        }
        let rawA = aligned(a.entries)
        let rawACopy = aligned(a.entries)
        let rawB = aligned(later)
        let rawTarget = aligned(Array(repeating: 0, count: width))
        // The raw buffers live as long as the benchmark process.
        let (pa, pacopy, pb, ptarget) = (
            UnsafeRawPointer(rawA.baseAddress!), UnsafeRawPointer(rawACopy.baseAddress!),
            UnsafeRawPointer(rawB.baseAddress!), UnsafeMutableRawPointer(rawTarget.baseAddress!)
        )

        Benchmark("compare w\(width)") { benchmark in
            for _ in benchmark.scaledIterations {
                blackHole(a.compare(b))
            }
        }
        Benchmark("compare w\(width) baseline memcmp") { benchmark in
            for _ in benchmark.scaledIterations {
                blackHole(memcmp(pa, pacopy, bytes))
            }
        }
        Benchmark("merge w\(width)") { benchmark in
            var target = VectorClock(width: width)
            for _ in benchmark.scaledIterations {
                target.merge(b)
            }
            blackHole(target)
        }
        Benchmark("merge w\(width) baseline memcpy") { benchmark in
            for _ in benchmark.scaledIterations {
                blackHole(memcpy(ptarget, pb, bytes))
            }
        }
    }
}
