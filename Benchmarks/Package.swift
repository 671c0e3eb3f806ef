// swift-tools-version:6.1
// The benchmarks live in a package of their own (as swift-nio's do) so that a
// plain `swift build` of CausalUCP never builds the benchmark tooling.
import PackageDescription

import struct Foundation.URL

// SwiftPM names a path dependency after its folder, and a clone may sit in a folder of any name.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let rootPackage = root.lastPathComponent

let package = Package(
    name: "CausalUCPBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "ClockBenchmarks",
            dependencies: [
                .product(name: "Causal", package: rootPackage),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/ClockBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "DeliveryBenchmarks",
            dependencies: [
                .product(name: "Causal", package: rootPackage),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/DeliveryBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "TransportBenchmarks",
            dependencies: [
                .product(name: "Causal", package: rootPackage),
                .product(name: "Benchmark", package: "benchmark"),
                "CRawPump",
            ],
            path: "Benchmarks/TransportBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // The transport benchmark's baseline: the same frames over libuv TCP, no causal layer.
        .target(
            name: "CRawPump",
            dependencies: ["CLibUVBench"],
            path: "Sources/CRawPump"
        ),
        .systemLibrary(
            name: "CLibUVBench",
            path: "Sources/CLibUVBench",
            pkgConfig: "libuv",
            providers: [.apt(["libuv1-dev"])]
        ),
    ]
)
