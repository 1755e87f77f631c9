import Logging
import MagicLinkCore
import MagicLinkMail
import MagicLinkStore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// The assembled daemon: store, mail worker, maintenance and socket server in one service group
/// that shuts down gracefully on SIGTERM and SIGINT.
public final class Application: Sendable {
    public let configuration: Configuration
    let store: SQLiteStore
    let server: SocketServer
    let serviceGroup: ServiceGroup
    /// Thread pools for blocking work, shut down after the services.
    let pools: [NIOThreadPool]
    /// The event loops that serve connections (and SMTP). Never shut down, as NIO's shared
    /// group never was: work that shutdown leaves behind after its time limits (an SMTP send
    /// or QUIT past its grace period, a login whose commit outlasted the drain) resumes on
    /// them, and on a stopped loop it would be dropped. The process ends right after `run`.
    let eventLoops: MultiThreadedEventLoopGroup
    let logger: Logger

    init(configuration: Configuration, store: SQLiteStore, server: SocketServer, serviceGroup: ServiceGroup,
         pools: [NIOThreadPool], eventLoops: MultiThreadedEventLoopGroup, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.server = server
        self.serviceGroup = serviceGroup
        self.pools = pools
        self.eventLoops = eventLoops
        self.logger = logger
    }

    /// Serves until SIGTERM/SIGINT (or `shutdown()`), then closes everything in order.
    public func run() async throws {
        do {
            try await serviceGroup.run()
        } catch {
            for pool in pools { try? await pool.shutdownGracefully() }
            throw error
        }
        for pool in pools { try? await pool.shutdownGracefully() }
        // Logins wait for their commit without a pool thread: let the last ones commit.
        store.waitForWrites()
        store.checkpoint()
        logger.info("stopped")
    }

    /// Returns true once the socket accepts connections, false if serving failed first.
    @discardableResult
    public func waitUntilReady() async -> Bool { await server.waitUntilReady() }

    public func shutdown() async { await serviceGroup.triggerGracefulShutdown() }
}

/// Builds the daemon from a configuration: opens (and migrates) the database, loads the
/// sealing key, picks the mail transport. Fails early with a clear error; binds nothing yet.
///
/// `reloadConfiguration` reads the configuration again on SIGHUP (nil: SIGHUP is ignored).
public func buildApplication(configuration: Configuration, logger: Logger,
                             reloadConfiguration: (@Sendable () throws -> Configuration)? = nil,
                             time: any TimeSource = SystemTime(), random: any RandomSource = SystemRandom()) throws -> Application {
    // Files we create (database, key, WAL) are private; the socket is widened explicitly.
    umask(0o077)
    let systemd = SystemdEnvironment.take()
    let listener: SocketServer.Listener
    if let inherited = systemd.serviceSocket {
        try checkInheritedListeningSocket(inherited)
        let path = boundPath(ofSocket: inherited) ?? configuration.socket
        if path != configuration.socket {
            // The admin CLI and the clients look for the configured path.
            logger.warning("the socket from systemd is not at the configured path; clients using the configured path will not find it",
                           metadata: ["socket": "\(path)", "configured": "\(configuration.socket)"])
        }
        listener = .inherited(descriptor: inherited, path: path)
    } else {
        if !systemd.listeningSockets.isEmpty {
            logger.warning("systemd passed several sockets and none is named magiclinkd; binding the configured path")
        }
        // Refuse early (before touching the database) when the socket path is taken.
        try prepareSocketPath(configuration.socket)
        listener = .path(configuration.socket, mode: configuration.socketMode)
    }

    let store = try SQLiteStore(path: configuration.database, sessionCacheCapacity: configuration.sessionCacheEntries, now: time.now())
    if configuration.sessionCacheEntries > 0, store.sessionCacheStatistics.capacity == 0 {
        logger.warning("session cache off: the database has no WAL index to watch; every session is read from SQLite",
                       metadata: ["database": "\(configuration.database)"])
    }
    let keyBytes = try loadOrCreateKey(at: configuration.effectiveKeyFile, random: random)
    guard let sealer = TokenSealer(keyBytes: keyBytes) else {
        throw KeyFileError(path: configuration.effectiveKeyFile, problem: "is not a valid key")
    }
    let appConfigurations = configuration.appConfigurations
    let policies = try appConfigurations.map { (id: $0.id, policy: try $0.settings.authPolicy()) }

    // Blocking database work: peeks, logouts, admin ops, the mail worker's claims and outcomes.
    // Logins (start, callback, verify_code) wait for their commit without holding a thread.
    let blockingPool = NIOThreadPool(numberOfThreads: 8)
    blockingPool.start()
    let sessionPool = NIOThreadPool(numberOfThreads: max(1, System.coreCount))
    sessionPool.start()

    // Own loops rather than NIO's shared group, whose size is fixed at its first use: how many
    // is a setting.
    let loopCount = servingThreads(configured: configuration.eventLoopThreads, cores: System.coreCount)
    let eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: loopCount)
    var built = false
    defer { if !built { eventLoops.shutdownGracefully { _ in } } }
    let transport: any MailTransport
    switch configuration.mailTransport {
    case .outbox: transport = try OutboxTransport(directory: configuration.outboxDir, executor: blockingPool)
    case .log: transport = LogTransport()
    case .sendmail: transport = SendmailTransport(path: configuration.sendmailPath, executor: blockingPool)
    case .smtp: transport = try makeSMTPTransport(configuration, group: eventLoops)
    }

    let wakeup = MailWakeup()
    let apps = AppDirectory(policies.map { (id: $0.id, authenticator: Authenticator(policy: $0.policy, store: store, sealer: sealer, time: time, random: random)) })
    let rateWindow = appConfigurations.map { max($0.settings.rateLimitIPWindow, $0.settings.rateLimitEmailWindow, $0.settings.rateLimitGlobalWindow) }.max() ?? 3_600
    let admin = AdminOps(store: store, apps: apps, blockingPool: blockingPool,
                         adminUIDs: configuration.adminUIDs, adminGIDs: configuration.adminGIDs,
                         startedAt: time.now(), rateWindow: rateWindow, mailWakeup: wakeup, time: time, logger: logger)
    let dispatcher = Dispatcher(apps: apps, blockingPool: blockingPool, sessionPool: sessionPool,
                                maxLineBytes: configuration.maxLineBytes, logger: logger, mailWakeup: wakeup, admin: admin)
    var connectionPolicy = ConnectionPolicy(configuration)
    connectionPolicy.maxConnections = ensureDescriptorLimit(forConnections: configuration.maxConnections, eventLoops: loopCount,
                                                                logger: logger)
    let server = SocketServer(listener: listener, dispatcher: dispatcher,
                              group: eventLoops, logger: logger, policy: connectionPolicy)
    var appMail: [String: MailComposer.AppMail] = [:]
    for (app, policy) in zip(appConfigurations, policies) {
        appMail[app.id] = MailComposer.AppMail(policy: policy.policy, from: app.settings.fromMailbox, appName: app.settings.appName,
                                               templates: NIOLockedValueBox(try app.settings.templateCatalog()))
    }
    let templates = appMail.mapValues(\.templates)
    let composer = MailComposer(sealer: sealer, apps: appMail)
    let mail = MailDeliveryService(store: store, transport: transport, composer: composer,
                                   blockingPool: blockingPool, wakeup: wakeup, logger: logger, time: time,
                                   retryDelays: configuration.mailRetryMinDelay...configuration.mailRetryMaxDelay)
    let maintenance = MaintenanceService(store: store, blockingPool: blockingPool,
                                         rateWindow: rateWindow,
                                         logger: logger, time: time)
    let notifier = SystemdNotifier(path: systemd.notifySocket)
    let reload = ReloadService(reloadConfiguration: reloadConfiguration, templates: templates, notifier: notifier, logger: logger)
    let systemdService = SystemdService(notifier: notifier,
                                        watchdogInterval: systemd.watchdogInterval, server: server, store: store,
                                        blockingPool: blockingPool, logger: logger)
    // Services shut down in reverse order: systemd hears STOPPING=1 first, then the socket
    // closes, the mail worker goes last.
    let group = ServiceGroup(configuration: ServiceGroupConfiguration(
        services: [
            .init(service: mail),
            .init(service: maintenance),
            .init(service: reload),
            .init(service: server),
            .init(service: systemdService),
        ],
        gracefulShutdownSignals: [.sigterm, .sigint],
        logger: logger))
    built = true
    return Application(configuration: configuration, store: store, server: server, serviceGroup: group,
                       pools: [blockingPool, sessionPool], eventLoops: eventLoops, logger: logger)
}

/// How many event loops serve connections: `event_loop_threads`, else half the cores, at least
/// one. The daemon shares its machine with the app that calls it, and one loop answers over
/// 100,000 cached `session` calls a second. On 2 cores, with the clients on the same cores, a
/// second loop gave the same throughput with five times the involuntary context switches
/// and about twice the p99 (issue 7; README, Performance, change 18).
func servingThreads(configured: Int, cores: Int) -> Int {
    configured > 0 ? configured : max(1, cores / 2)
}

/// Raises the soft limit on open descriptors (up to the hard limit) so that `max_connections`
/// connections fit beside the daemon's own descriptors (database, event loops, mail). Returns the
/// number of connections that really fit: `max_connections`, or fewer (with a warning) when the
/// hard limit is too low or the limit cannot be changed (systemd's LimitNOFILE= sets both; the
/// shipped unit gives 65536).
func ensureDescriptorLimit(forConnections wanted: Int, eventLoops: Int, logger: Logger) -> Int {
    let reserve = 64 + 3 * eventLoops  // each loop: epoll, eventfd, timerfd
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return wanted }
    let needed = rlim_t(wanted + reserve)
    if limit.rlim_cur != rlim_t.max && limit.rlim_cur < needed {
        var raised = limit
        raised.rlim_cur = limit.rlim_max == rlim_t.max ? needed : min(needed, limit.rlim_max)
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
    }
    guard limit.rlim_cur != rlim_t.max, limit.rlim_cur < needed else { return wanted }
    let fitting = max(1, Int(limit.rlim_cur) - reserve)
    logger.warning("max_connections is more than the open-file limit allows; serving fewer connections (raise LimitNOFILE= or ulimit -n)",
                   metadata: ["max_connections": "\(wanted)", "effective": "\(fitting)", "nofile": "\(limit.rlim_cur)"])
    return fitting
}
