// swift-tools-version:5.9
// The floor under the daemon's connection path: the least a SwiftNIO server does per request
// line. Not part of the root package: `swift build -c release --package-path Benchmarks/NIOFloor`.
import PackageDescription

let package = Package(
    name: "NIOFloor",
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "niofloor",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
    ]
)
