// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "CausalUCP",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Causal", targets: ["Causal"]),
        .library(name: "UCP", targets: ["UCP"]),
        .executable(name: "ucp", targets: ["ucp"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // Only `UCP`, `UCPTests` and `ucp` depend on these; `Causal` stays free of them.
        // One trait each, the one UCP needs: SwiftPM passes a package's traits to its modules as
        // -D flags in a new order whenever it plans a build (every release build does), and a
        // changed command line recompiles the module. With their default traits (WasmKit three,
        // Hummingbird two) every release build recompiled WasmKit's and Hummingbird's modules.
        // WasmKit: MultiThread, since the worker threads share one engine. Hummingbird:
        // FullFoundation; ConfigurationSupport (swift-configuration) is not used.
        // Exact: GuestRun uses WasmKit's `Fuzzing` SPI (a store's fuel), which a minor release may change.
        .package(url: "https://github.com/swiftwasm/WasmKit", exact: "0.4.2", traits: ["MultiThread"]),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: ["FullFoundation"]),
        .package(url: "https://github.com/vapor/multipart-kit", from: "4.7.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibUV",
            pkgConfig: "libuv",
            providers: [.apt(["libuv1-dev"])]
        ),
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        // Linked only by executables: Debian's jemalloc replaces malloc for the whole process.
        .systemLibrary(
            name: "CJemalloc",
            pkgConfig: "jemalloc",
            providers: [.apt(["libjemalloc-dev"])]
        ),
        .target(
            name: "CCausal",
            dependencies: ["CLibUV", "CSodium"],
            cSettings: [
                .define("NDEBUG", .when(configuration: .release)),
                .define("_GNU_SOURCE"),
            ]
        ),
        .target(
            name: "Causal",
            dependencies: ["CCausal", "CSodium"]
        ),
        .target(
            name: "UCP",
            dependencies: [
                "Causal",
                "CSodium",
                .product(name: "WasmKit", package: "WasmKit"),
                .product(name: "WasmKitWASI", package: "WasmKit"),
                .product(name: "WASI", package: "WasmKit"),
                .product(name: "WAT", package: "WasmKit"),
                .product(name: "ZIPFoundation", package: "ZIPFoundation"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "MultipartKit", package: "multipart-kit"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        .executableTarget(
            name: "ucp",
            dependencies: [
                "Causal",
                "UCP",
                "CJemalloc",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "NetworkFaults",
            path: "Tests/NetworkFaults"
        ),
        .testTarget(
            name: "CausalTests",
            dependencies: ["Causal", "NetworkFaults"]
        ),
        .testTarget(
            name: "NodeCommandTests",
            dependencies: [
                "ucp", "NetworkFaults",
                .product(name: "ZIPFoundation", package: "ZIPFoundation"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        .testTarget(
            name: "UCPTests",
            dependencies: [
                "UCP",
                "NetworkFaults",
                "Causal",
                .product(name: "ZIPFoundation", package: "ZIPFoundation"),
                .product(name: "WAT", package: "WasmKit"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ],
    cLanguageStandard: .gnu11
)
