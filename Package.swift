// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "CausalUCP",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Causal", targets: ["Causal"]),
        .executable(name: "ucp", targets: ["ucp"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2")
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
            dependencies: ["CCausal"]
        ),
        .executableTarget(
            name: "ucp",
            dependencies: [
                "Causal",
                "CJemalloc",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "CausalTests",
            dependencies: ["Causal"]
        ),
        .testTarget(
            name: "NodeCommandTests",
            dependencies: ["ucp"]
        ),
    ],
    cLanguageStandard: .gnu11
)
