import ArgumentParser
import Dispatch
import Logging
import MagicLinkServer
#if canImport(Glibc)
import Glibc
#endif

/// `magiclinkd`: serve (the default), or check a configuration without serving.
@main
struct MagicLinkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "magiclinkd",
        abstract: "Passwordless login by emailed magic link, for any local web app, over a Unix socket.",
        discussion: """
            With no arguments, serves on its embedded defaults (socket ./magiclinkd.sock, database \
            ./magiclinkd.sqlite, mail into the Maildir ./outbox). Settings come from an optional YAML \
            file (--config or MAGICLINKD_CONFIG) and MAGICLINKD_* environment variables, which win.
            """,
        version: "magiclinkd \(MagicLinkVersion.string)",
        subcommands: [Serve.self, CheckConfig.self, Status.self, Sessions.self, Revoke.self, DeadLetters.self, Retry.self, Purge.self, AddUser.self],
        defaultSubcommand: Serve.self)

    /// A synchronous entry point that runs the command in a task and parks the main thread until
    /// it is done. An async `main` hands the main thread to `dispatch_main`, which ends it with
    /// `pthread_exit`: unwinding its stack reads about 1 MiB of the binary's unwind tables into
    /// memory that then stays resident for the daemon's life. Nothing here runs on the main actor.
    static func main() {
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            await Self.main(nil)  // exits the process itself on an error, with its status
            done.signal()
        }
        done.wait()
    }
}

struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("YAML configuration file (default: $MAGICLINKD_CONFIG, else none).", valueName: "file"))
    var config: String?

    /// Loads the configuration or exits with status 78 (EX_CONFIG) and a message naming the key.
    /// `quiet` (reload) throws the error instead of printing it.
    func load(quiet: Bool = false, crossChecks: Bool = true, fallbackFile: String? = nil) throws -> Configuration {
        var environment: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                environment[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            pointer += 1
        }
        if !quiet {
            for name in Configuration.unknownEnvironmentNames(environment) {
                printError("magiclinkd: warning: \(name) is not a known setting and is ignored")
            }
        }
        do {
            return try Configuration.load(file: config ?? environment["MAGICLINKD_CONFIG"] ?? fallbackFile, environment: environment,
                                          crossChecks: crossChecks)
        } catch where quiet {
            throw error
        } catch {
            printError("magiclinkd: \(error)")
            throw ExitCode(78)
        }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve requests on the socket (the default).")

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let configuration = try options.load()
        DaemonLogHandler.bootstrap(level: configuration.logLevel)
        let logger = Logger(label: "magiclinkd")
        describe(configuration)
        let application: Application
        do {
            let options = self.options
            application = try buildApplication(configuration: configuration, logger: logger,
                                               reloadConfiguration: { try options.load(quiet: true) })
        } catch {
            printError("magiclinkd: cannot start: \(error)")
            throw ExitCode(1)
        }
        do {
            try await application.run()
        } catch {
            printError("magiclinkd: stopped with an error: \(error)")
            throw ExitCode(1)
        }
    }

    /// Says on stderr where everything is, and which values are defaults.
    func describe(_ c: Configuration) {
        func line(_ what: String, _ key: String, _ value: String) {
            let origin = c.explicitKeys.contains(key) ? "" : " (default)"
            printError("magiclinkd: \(what): \(value)\(origin)")
        }
        printError("magiclinkd \(MagicLinkVersion.string) starting")
        line("socket", "socket", c.socket)
        line("database", "database", c.database)
        switch c.mailTransport {
        case .outbox: line("mail", "mail_transport", "Maildir outbox \(c.outboxDir) (read it with: mutt -f \(c.outboxDir))")
        case .log: line("mail", "mail_transport", "printed to stderr (log transport)")
        case .smtp:
            let port = c.smtpPort.map { ":\($0)" } ?? ""
            line("mail", "mail_transport", "SMTP to \(c.smtpHost ?? "?")\(port) (\(c.smtpTLS.rawValue))")
        case .sendmail: line("mail", "mail_transport", "piped to \(c.sendmailPath) -t -i")
        }
        line("callback url", "callback_url", c.callbackURL)
    }
}

struct CheckConfig: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Check the configuration and print the effective settings, without serving.")

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let c = try options.load()
        do {
            let templates = try c.templateCatalog()
            for (key, value) in c.effectiveSettings { print("\(key): \(value)") }
            print("template locales: \(templates.locales.joined(separator: ", "))")
        } catch {
            printError("magiclinkd: \(error)")
            throw ExitCode(78)
        }
        printError("magiclinkd: configuration OK")
    }
}

func printError(_ message: String) {
    let bytes = Array((message + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
