// swift-tools-version:6.0
import PackageDescription
#if canImport(Glibc)
import Glibc
#endif

/// Release builds of the daemon, on Linux, link with lld (shipped with the Swift toolchain):
/// - The functions that start-up and requests run go first, next to each other, in the order of
///   scripts/symbol-order.txt (made by scripts/symbol-order): start-up faults in 7 MiB of code
///   instead of pieces of all 23 MiB (4 MiB less resident).
/// - The executable stops exporting its 27,000 symbols (SwiftPM exports them so that tests can
///   link an executable; ours link the libraries): every symbol the shared libraries look up at
///   load time was searched in that table first (1-2 MiB resident).
/// - Where the build's own glibc is 2.36 or newer, its 110,000 relative relocations are packed
///   (DT_RELR): the loader reads 40 KB of them instead of 2.6 MB (2 MiB resident). Such a binary
///   does not load with an older glibc: build elsewhere, or set MAGICLINKD_PLAIN_LINK=1.
/// Without lld on the PATH, or with MAGICLINKD_PLAIN_LINK set, the link is SwiftPM's default.
let releaseLinkerFlags: [String] = {
    #if canImport(Glibc)
    guard Context.environment["MAGICLINKD_PLAIN_LINK"] == nil else { return [] }
    let path = Context.environment["PATH"] ?? ""
    guard path.split(separator: ":").contains(where: { access("\($0)/ld.lld", X_OK) == 0 }) else { return [] }
    var flags = ["-use-ld=lld", "-Xlinker", "--no-export-dynamic"]
    let order = Context.packageDirectory + "/scripts/symbol-order.txt"
    if access(order, R_OK) == 0 {
        flags += ["-Xlinker", "--symbol-ordering-file=" + order, "-Xlinker", "--no-warn-symbol-ordering"]
    }
    // "glibc 2.36"
    var buffer = [CChar](repeating: 0, count: 64)
    if confstr(Int32(_CS_GNU_LIBC_VERSION), &buffer, buffer.count) > 0 {
        let parts = (String(cString: buffer).split(separator: " ").last ?? "").split(separator: ".").compactMap { Int($0) }
        if parts.count >= 2, parts[0] > 2 || (parts[0] == 2 && parts[1] >= 36) {
            flags += ["-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"]
        }
    }
    return flags
    #else
    return []
    #endif
}()

let package = Package(
    name: "magiclinkd",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "magiclinkd", targets: ["magiclinkd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/swift-extras/swift-extras-base64.git", from: "1.2.0"),
    ],
    targets: [
        // The system libsqlite3, seen through a module map and a small shim header.
        .systemLibrary(
            name: "CSQLite",
            path: "Sources/CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),

        // Wire protocol: strict JSON, request/response envelopes, error codes. No NIO, no I/O.
        .target(name: "MagicLinkProtocol"),

        // Tokens, sessions, email/redirect policy, rate limits; clock and randomness injected.
        .target(
            name: "MagicLinkCore",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ExtrasBase64", package: "swift-extras-base64"),
            ]
        ),

        // The only module that touches SQLite.
        .target(name: "MagicLinkStore", dependencies: ["CSQLite", "MagicLinkCore"]),

        // Message building (RFC 5322 / MIME), Maildir, transports, the login mail's words.
        .target(
            name: "MagicLinkMail",
            dependencies: [
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "ExtrasBase64", package: "swift-extras-base64"),
            ]
        ),

        // SMTP submission client (STARTTLS / implicit TLS, AUTH, pipelining): no package does it.
        .target(
            name: "MagicLinkSMTP",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "ExtrasBase64", package: "swift-extras-base64"),
            ]
        ),

        // Socket server, dispatch, configuration, services.
        .target(
            name: "MagicLinkServer",
            dependencies: [
                "MagicLinkProtocol", "MagicLinkCore", "MagicLinkStore", "MagicLinkMail", "MagicLinkSMTP",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),

        // Thin entry point: parses arguments, calls into MagicLinkServer.
        .executableTarget(
            name: "magiclinkd",
            dependencies: [
                "MagicLinkServer",
                "MagicLinkProtocol",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            linkerSettings: [.unsafeFlags(releaseLinkerFlags, .when(configuration: .release))]
        ),

        .testTarget(name: "MagicLinkProtocolTests", dependencies: ["MagicLinkProtocol"]),
        .testTarget(name: "MagicLinkCoreTests", dependencies: ["MagicLinkCore"]),
        .testTarget(name: "MagicLinkStoreTests", dependencies: ["MagicLinkStore", "MagicLinkCore"]),
        .testTarget(name: "MagicLinkMailTests", dependencies: ["MagicLinkMail"]),
        .testTarget(
            name: "MagicLinkSMTPTests",
            dependencies: [
                "MagicLinkSMTP",
                .product(name: "ExtrasBase64", package: "swift-extras-base64"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .testTarget(
            name: "MagicLinkServerTests",
            dependencies: [
                "MagicLinkServer", "MagicLinkProtocol", "MagicLinkCore", "MagicLinkStore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
    ]
)
