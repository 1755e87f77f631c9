// swift-tools-version:5.9
// A standalone closed-loop load generator for magiclinkd and redis-server (Unix sockets).
// Not part of the root package: build it with `swift build -c release --package-path Benchmarks/LoadGen`.
import PackageDescription

let package = Package(
    name: "LoadGen",
    targets: [
        .executableTarget(
            name: "loadgen"
        ),
    ]
)
