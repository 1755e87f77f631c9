import Logging
import MagicLinkStore
import NIOConcurrencyHelpers
import NIOPosix
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// What systemd handed this process: listening sockets (socket activation) and the notification
/// socket. Read once at start and removed from the environment, so that child processes (the
/// sendmail transport) do not inherit them.
struct SystemdEnvironment: Sendable {
    /// Descriptors passed with `LISTEN_FDS` (starting at 3), with their `LISTEN_FDNAMES`.
    let listeningSockets: [(descriptor: Int32, name: String)]
    let notifySocket: String?
    /// Half of `WATCHDOG_USEC`, when the watchdog is on for this process.
    let watchdogInterval: Duration?

    static func take() -> SystemdEnvironment {
        let pid = getpid()
        func value(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }

        var sockets: [(Int32, String)] = []
        if let listenPID = value("LISTEN_PID").flatMap(Int32.init), listenPID == pid,
           let count = value("LISTEN_FDS").flatMap(Int32.init), count > 0 {
            let names = value("LISTEN_FDNAMES")?.split(separator: ":", omittingEmptySubsequences: false).map(String.init) ?? []
            for index in 0..<count {
                let fd = 3 + index
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                sockets.append((fd, index < names.count ? names[Int(index)] : "unknown"))
            }
        }
        var watchdog: Duration?
        if let usec = value("WATCHDOG_USEC").flatMap(Int64.init), usec > 0,
           value("WATCHDOG_PID").flatMap(Int32.init).map({ $0 == pid }) ?? true {
            watchdog = .microseconds(usec / 2)
        }
        let notify = value("NOTIFY_SOCKET")
        for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            unsetenv(name)
        }
        return SystemdEnvironment(listeningSockets: sockets, notifySocket: notify, watchdogInterval: watchdog)
    }

    /// The inherited socket to serve on: the one named "magiclinkd", else the only one.
    var serviceSocket: Int32? {
        if let named = listeningSockets.first(where: { $0.name == "magiclinkd" }) { return named.descriptor }
        return listeningSockets.count == 1 ? listeningSockets[0].descriptor : nil
    }
}

/// sd_notify(3) without libsystemd: one datagram per message to `$NOTIFY_SOCKET`.
struct SystemdNotifier: Sendable {
    let path: String?
    /// Set once STOPPING=1 went out: nothing may claim READY=1 after it (a late SIGHUP).
    private let stopping = NIOLockedValueBox(false)

    init(path: String?) { self.path = path }

    var isEnabled: Bool { path != nil }

    var isStopping: Bool { stopping.withLockedValue { $0 } }

    /// STOPPING=1, once; from then on the daemon only goes down.
    func notifyStopping() {
        let first = stopping.withLockedValue { wasStopping -> Bool in
            defer { wasStopping = true }
            return !wasStopping
        }
        if first { notify("STOPPING=1\nSTATUS=Shutting down") }
    }

    func notify(_ state: String) {
        guard let path, !path.isEmpty else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        // A leading "@" names the abstract namespace: a NUL first byte, no trailing NUL.
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let length = MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1)
        let message = Array(state.utf8)
        _ = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                message.withUnsafeBytes { buffer in
                    sendto(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL), sa, socklen_t(length))
                }
            }
        }
    }
}

/// Tells systemd how the daemon is doing: READY=1 once the socket is served (migrations ran
/// before), STATUS= lines, WATCHDOG=1 at half the watchdog interval while the database answers,
/// STOPPING=1 when shutdown begins. Last in the service group, so it hears of shutdown first.
final class SystemdService: Service, Sendable {
    let notifier: SystemdNotifier
    let watchdogInterval: Duration?
    let server: SocketServer
    let store: SQLiteStore
    let blockingPool: NIOThreadPool
    let logger: Logger

    init(notifier: SystemdNotifier, watchdogInterval: Duration?, server: SocketServer, store: SQLiteStore,
         blockingPool: NIOThreadPool, logger: Logger) {
        self.notifier = notifier
        self.watchdogInterval = watchdogInterval
        self.server = server
        self.store = store
        self.blockingPool = blockingPool
        self.logger = logger
    }

    func run() async throws {
        await withGracefulShutdownHandler {
            let serving = await cancelWhenGracefulShutdown { await self.server.waitUntilReady() }
            // The server failed before it served (its error ends the group) or we are stopping.
            guard serving, !Task.isShuttingDownGracefully else { return }
            notifier.notify("READY=1\nSTATUS=Serving on \(server.description)")
            logger.info("ready", metadata: ["event": "ready", "socket": "\(server.description)"])
            guard let interval = watchdogInterval else {
                await waitForShutdown()
                return
            }
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                // Only a daemon whose database still answers is alive.
                if (try? await blockingPool.runIfActive({ try self.store.ping() })) != nil {
                    notifier.notify("WATCHDOG=1")
                } else {
                    logger.error("database does not answer; withholding the watchdog ping")
                }
                _ = try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            }
        } onGracefulShutdown: {
            self.notifier.notifyStopping()
        }
    }

    private func waitForShutdown() async {
        _ = try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(365 * 86_400)) }
    }
}
