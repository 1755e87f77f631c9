import Logging
import MagicLinkMail
import NIOConcurrencyHelpers
import ServiceLifecycle
import UnixSignals

/// SIGHUP: reads the configuration again and applies what can change without a restart — the
/// mail templates (`templates_dir` and its files) and `log_level` — without dropping connections.
/// Every other setting needs a restart; a reload that finds one changed says so in the log. A
/// configuration or template that does not load leaves everything as it was.
final class ReloadService: Service, Sendable {
    let reloadConfiguration: (@Sendable () throws -> Configuration)?
    /// Each app's templates, by app id.
    let templates: [String: NIOLockedValueBox<TemplateCatalog>]
    let notifier: SystemdNotifier
    let logger: Logger

    init(reloadConfiguration: (@Sendable () throws -> Configuration)?, templates: [String: NIOLockedValueBox<TemplateCatalog>],
         notifier: SystemdNotifier, logger: Logger) {
        self.reloadConfiguration = reloadConfiguration
        self.templates = templates
        self.notifier = notifier
        self.logger = logger
    }

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            reload()
        }
    }

    func reload() {
        guard let reloadConfiguration else { return }
        guard !notifier.isStopping else {
            // Shutdown has begun (the services stop one by one): a reload now would tell
            // systemd READY=1 after STOPPING=1.
            logger.notice("reload ignored: shutting down", metadata: ["event": "reload_ignored"])
            return
        }
        notifier.notify("RELOADING=1\nSTATUS=Reloading")
        defer { notifier.notify("READY=1\nSTATUS=Serving") }
        do {
            let configuration = try reloadConfiguration()
            // Load every app's templates first: one that does not load changes nothing anywhere.
            var catalogs: [(NIOLockedValueBox<TemplateCatalog>, TemplateCatalog)] = []
            for app in configuration.appConfigurations {
                guard let box = templates[app.id] else { continue }  // a new app needs a restart
                catalogs.append((box, try app.settings.templateCatalog()))
            }
            for (box, catalog) in catalogs { box.withLockedValue { $0 = catalog } }
            DaemonLogHandler.setLevel(configuration.logLevel)
            let locales = Set(catalogs.flatMap { $0.1.locales }).sorted()
            logger.notice("configuration reloaded: templates and log level applied; other settings need a restart",
                          metadata: ["event": "reload", "template_locales": "\(locales.joined(separator: ","))"])
        } catch {
            logger.error("reload failed; keeping the running configuration", metadata: ["event": "reload_failed", "error": "\(error)"])
        }
    }
}
