import Logging
import MagicLinkCore
import MagicLinkMail
import Yams

/// Every setting of the daemon, with its embedded default. A YAML file may set any key; the
/// environment variable `MAGICLINKD_<KEY>` overrides the file. See README.md for the reference.
public struct Configuration: Sendable {
    public enum MailTransportKind: String, Sendable, CaseIterable { case outbox, log, smtp, sendmail }
    public enum SMTPSecurity: String, Sendable, CaseIterable { case starttls, tls, none }

    public var socket = "./magiclinkd.sock"
    public var socketMode: UInt32 = 0o660
    public var database = "./magiclinkd.sqlite"
    /// Defaults to the database path + ".key".
    public var keyFile: String?
    public var callbackURL = "http://localhost:8080/auth/callback"
    public var allowedRedirectOrigins: [String] = []
    /// What `callback` does with a link opened without its flow.
    public var flowBinding = FlowBinding.confirm
    /// Who may get a login mail: open, domains (with `signupDomains`) or existing.
    public var signup = "open"
    /// Lower-case IDNA (ASCII) domains for `signup: domains`.
    public var signupDomains: [String] = []
    public var appName = "magiclinkd"
    public var mailFrom = "magiclinkd <no-reply@localhost>"
    public var mailTransport = MailTransportKind.outbox
    public var outboxDir = "./outbox"
    public var smtpHost: String?
    /// Defaults by `smtp_tls`: 587 (starttls), 465 (tls), 25 (none).
    public var smtpPort: Int?
    public var smtpTLS = SMTPSecurity.starttls
    public var smtpCAFile: String?
    public var smtpUsername: String?
    /// Defaults to `$CREDENTIALS_DIRECTORY/smtp_password` when that file exists.
    public var smtpPasswordFile: String?
    public var smtpEHLOName: String?
    public var smtpConnectTimeout: Int64 = 10
    public var smtpReplyTimeout: Int64 = 30
    public var sendmailPath = "/usr/sbin/sendmail"
    public var templatesDir: String?
    public var mailQueueMax = 10_000
    /// Besides root, the uids and gids whose processes may call the admin ops.
    public var adminUIDs: [UInt32] = []
    public var adminGIDs: [UInt32] = []
    /// Who may connect at all (both empty: whoever can open the socket file). Root and the
    /// admins always may.
    public var allowedUIDs: [UInt32] = []
    public var allowedGIDs: [UInt32] = []
    /// Open connections at most; at the limit a newcomer replaces the connection idle longest.
    public var maxConnections = 1_024
    /// Threads that serve connections (0: half the cores, at least one). See `servingThreads`.
    public var eventLoopThreads = 0
    /// Seconds from the first byte of a request line to its line feed (and for a reply to be read).
    public var requestTimeout: Int64 = 10
    /// Seconds without a request after which a connection is closed.
    public var idleTimeout: Int64 = 300
    public var mailRetryMinDelay: Int64 = 5
    public var mailRetryMaxDelay: Int64 = 300
    public var tokenTTL: Int64 = 600
    public var sessionTTL: Int64 = 30 * 86_400
    public var sessionIdleTTL: Int64 = 7 * 86_400
    public var sessionTouchInterval: Int64 = 60
    /// Live sessions kept in memory so `session` answers without the database (0: none).
    public var sessionCacheEntries = 1_000_000
    public var maxLineBytes = 65_536
    public var rateLimitIPMax = 50
    public var rateLimitIPWindow: Int64 = 3_600
    public var rateLimitEmailMax = 5
    public var rateLimitEmailWindow: Int64 = 3_600
    public var rateLimitEmailCooldown: Int64 = 60
    public var rateLimitGlobalMax = 5_000
    public var rateLimitGlobalWindow: Int64 = 3_600
    public var rateLimitFailuresMax = 30
    public var rateLimitFailuresWindow: Int64 = 900
    public var logLevel = Logger.Level.info

    /// Keys set explicitly (by file or environment), so start-up can say which values are defaults.
    public private(set) var explicitKeys: Set<String> = []

    /// The id of the app when only one is configured (top-level keys, no `apps:`).
    public var appID = AuthPolicy.defaultAppID
    /// Several apps on one daemon (`apps:` in the file): each is this configuration with its own
    /// keys on top. Empty: one app, configured by the top-level keys and MAGICLINKD_* variables.
    public private(set) var apps: [AppConfiguration] = []
    /// `apps:` entries as read from the file, applied once the environment is in (top-level values
    /// are every app's defaults, whichever source set them).
    private var pendingApps: [(id: String, values: [(Setting, String)], source: String)] = []

    /// Keys an entry of `apps:` may set; the rest (socket, database, mail transport…) are the daemon's.
    static let perAppKeys: Set<String> = [
        "app_name", "callback_url", "allowed_redirect_origins", "mail_from", "templates_dir", "token_ttl", "session_ttl",
        "session_idle_ttl", "session_touch_interval", "flow_binding", "signup", "signup_domains", "rate_limit_ip_max",
        "rate_limit_ip_window", "rate_limit_email_max", "rate_limit_email_window", "rate_limit_email_cooldown",
        "rate_limit_global_max", "rate_limit_global_window", "rate_limit_failures_max", "rate_limit_failures_window",
    ]

    /// Every app the daemon serves, in configuration order (one when `apps:` is not used).
    public var appConfigurations: [AppConfiguration] {
        apps.isEmpty ? [AppConfiguration(id: appID, settings: self)] : apps
    }

    public init() {}

    public var effectiveKeyFile: String { keyFile ?? database + ".key" }

    /// The environment variable that overrides `key`.
    public static func environmentName(of key: String) -> String { "MAGICLINKD_" + key.uppercased() }

    /// Reads the optional YAML file, then the environment, then checks the whole.
    ///
    /// `crossChecks: false` skips the rules that tie keys together (the admin commands only need
    /// `socket`, and the host's shell may not have the daemon's SMTP credential).
    public static func load(file: String?, environment: [String: String], crossChecks: Bool = true) throws(ConfigurationError) -> Configuration {
        var configuration = Configuration()
        if let file {
            let text: String
            do {
                text = try readTextFile(file)
            } catch {
                throw ConfigurationError(key: nil, source: file, message: "cannot read the configuration file: \(error)")
            }
            try configuration.apply(yaml: text, file: file)
        }
        configuration.credentialsDirectory = environment["CREDENTIALS_DIRECTORY"]
        if let id = environment["MAGICLINKD_APP_ID"] {
            guard isValidAppID(id) else { throw ConfigurationError(key: "app_id", source: "MAGICLINKD_APP_ID", message: appIDRule) }
            configuration.appID = id
            configuration.explicitKeys.insert("app_id")
        }
        for setting in settings {
            if let value = environment[environmentName(of: setting.key)] {
                try configuration.set(setting, to: value, source: environmentName(of: setting.key))
            }
        }
        try configuration.resolveApps()
        if crossChecks {
            try configuration.validate()
            for app in configuration.apps {
                do {
                    try app.settings.validate()
                } catch {
                    throw ConfigurationError(key: error.key.map { "apps[\(app.id)].\($0)" }, source: error.source, message: error.message)
                }
            }
        }
        return configuration
    }

    /// Builds `apps` from the `apps:` entries, each on top of the top-level values.
    private mutating func resolveApps() throws(ConfigurationError) {
        var resolved: [AppConfiguration] = []
        for pending in pendingApps {
            var settings = self
            settings.pendingApps = []
            settings.apps = []
            settings.appID = pending.id
            for (setting, text) in pending.values {
                do {
                    try setting.apply(&settings, text.trimmingWhitespace())
                } catch {
                    throw ConfigurationError(key: "apps[\(pending.id)].\(setting.key)", source: pending.source, message: "\(error.reason) (got \"\(text)\")")
                }
            }
            resolved.append(AppConfiguration(id: pending.id, settings: settings))
        }
        apps = resolved
    }

    /// MAGICLINKD_* variables that name no setting (typos, most likely).
    public static func unknownEnvironmentNames(_ environment: [String: String]) -> [String] {
        let known = Set(settings.map { environmentName(of: $0.key) } + ["MAGICLINKD_CONFIG", "MAGICLINKD_BIN", "MAGICLINKD_APP_ID"])
        return environment.keys.filter { $0.hasPrefix("MAGICLINKD_") && !known.contains($0) }.sorted()
    }

    mutating func apply(yaml: String, file: String) throws(ConfigurationError) {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigurationError(key: nil, source: file, message: "not valid YAML: \(error)")
        }
        guard let root else { return }  // an empty file sets nothing
        guard let mapping = root.mapping else {
            throw ConfigurationError(key: nil, source: file, message: "the top level must be a mapping of keys to values")
        }
        for (keyNode, valueNode) in mapping {
            guard let key = keyNode.string else {
                throw ConfigurationError(key: nil, source: file, message: "keys must be strings")
            }
            if key == "app_id" {
                guard let id = valueNode.scalar?.string, Self.isValidAppID(id) else {
                    throw ConfigurationError(key: key, source: file, message: Self.appIDRule)
                }
                appID = id
                explicitKeys.insert(key)
                continue
            }
            if key == "apps" {
                try readApps(valueNode, file: file)
                continue
            }
            guard let setting = Self.settings.first(where: { $0.key == key }) else {
                throw ConfigurationError(key: key, source: file, message: "unknown key \"\(key)\" (known keys: \(Self.settings.map(\.key).joined(separator: ", ")))")
            }
            let text: String
            if let scalar = valueNode.scalar {
                text = scalar.string
            } else if let sequence = valueNode.sequence, setting.acceptsList {
                var items: [String] = []
                for item in sequence {
                    guard let value = item.scalar?.string else {
                        throw ConfigurationError(key: key, source: file, message: "list items must be strings")
                    }
                    items.append(value)
                }
                text = items.joined(separator: ",")
            } else {
                throw ConfigurationError(key: key, source: file, message: "must be a single value")
            }
            try set(setting, to: text, source: file)
        }
    }

    static let appIDRule = "an app id is 1 to 32 characters: lower-case letters, digits and hyphens"

    static func isValidAppID(_ id: String) -> Bool {
        (1...32).contains(id.utf8.count) && id.utf8.allSatisfy { (97...122).contains($0) || (48...57).contains($0) || $0 == 45 }
    }

    /// `apps:` is a list of mappings, each with an `id` and per-app keys.
    private mutating func readApps(_ node: Node, file: String) throws(ConfigurationError) {
        guard let sequence = node.sequence, !sequence.isEmpty else {
            throw ConfigurationError(key: "apps", source: file, message: "must be a list of apps, each a mapping with an id")
        }
        var seen: Set<String> = []
        for item in sequence {
            guard let mapping = item.mapping else {
                throw ConfigurationError(key: "apps", source: file, message: "each app must be a mapping (id: …, callback_url: …)")
            }
            var id: String?
            var values: [(Setting, String)] = []
            for (keyNode, valueNode) in mapping {
                guard var key = keyNode.string else { throw ConfigurationError(key: "apps", source: file, message: "keys must be strings") }
                if key == "id" {
                    guard let text = valueNode.scalar?.string, Self.isValidAppID(text) else {
                        throw ConfigurationError(key: "apps", source: file, message: Self.appIDRule)
                    }
                    id = text
                    continue
                }
                if key == "name" { key = "app_name" }
                guard Self.perAppKeys.contains(key), let setting = Self.settings.first(where: { $0.key == key }) else {
                    throw ConfigurationError(key: "apps", source: file,
                                             message: "\"\(key)\" cannot be set per app (per-app keys: id, name, \(Self.perAppKeys.sorted().joined(separator: ", ")))")
                }
                if let scalar = valueNode.scalar {
                    values.append((setting, scalar.string))
                } else if let list = valueNode.sequence, setting.acceptsList {
                    var items: [String] = []
                    for element in list {
                        guard let text = element.scalar?.string else { throw ConfigurationError(key: "apps", source: file, message: "list items must be strings") }
                        items.append(text)
                    }
                    values.append((setting, items.joined(separator: ",")))
                } else {
                    throw ConfigurationError(key: "apps", source: file, message: "\(key) must be a single value")
                }
            }
            guard let id else { throw ConfigurationError(key: "apps", source: file, message: "every app needs an id") }
            guard seen.insert(id).inserted else { throw ConfigurationError(key: "apps", source: file, message: "the app id \"\(id)\" is used twice") }
            pendingApps.append((id, values, file))
        }
    }

    mutating func set(_ setting: Setting, to text: String, source: String) throws(ConfigurationError) {
        do {
            try setting.apply(&self, text.trimmingWhitespace())
            explicitKeys.insert(setting.key)
        } catch {
            throw ConfigurationError(key: setting.key, source: source, message: "\(error.reason) (got \"\(text)\")")
        }
    }

    /// Cross-checks that no single key can do alone.
    func validate() throws(ConfigurationError) {
        func fail(_ key: String, _ message: String) -> ConfigurationError {
            ConfigurationError(key: key, source: explicitKeys.contains(key) ? Self.environmentName(of: key) + " / file" : "default", message: message)
        }
        do {
            _ = try RedirectPolicy(allowedOrigins: allowedRedirectOrigins)
        } catch {
            throw fail("allowed_redirect_origins", error.reason)
        }
        do {
            _ = try Mailbox(parsing: mailFrom)
        } catch {
            throw fail("mail_from", error.reason)
        }
        if signup == "domains" && signupDomains.isEmpty {
            throw fail("signup_domains", "must list at least one domain when signup is domains")
        }
        if mailRetryMaxDelay < mailRetryMinDelay {
            throw fail("mail_retry_max_delay", "must not be shorter than mail_retry_min_delay")
        }
        if mailTransport == .smtp && smtpHost == nil {
            throw fail("smtp_host", "is required when mail_transport is smtp")
        }
        if smtpUsername != nil && mailTransport == .smtp && effectiveSMTPPasswordFile == nil {
            throw fail("smtp_password_file", "is required with smtp_username (or provide the credential smtp_password through systemd's LoadCredential=)")
        }
    }

    /// `smtp_password_file`, else `$CREDENTIALS_DIRECTORY/smtp_password` when it exists.
    public var effectiveSMTPPasswordFile: String? {
        if let smtpPasswordFile { return smtpPasswordFile }
        guard let directory = credentialsDirectory else { return nil }
        let candidate = directory + "/smtp_password"
        return fileExists(candidate) ? candidate : nil
    }

    /// Set from `$CREDENTIALS_DIRECTORY` by `load` (systemd's LoadCredential=).
    public private(set) var credentialsDirectory: String?

    /// Every setting with its effective value, in reference order (no secrets: only the
    /// password file's path).
    public var effectiveSettings: [(key: String, value: String)] {
        [("app_id", apps.isEmpty ? appID : "(apps: " + apps.map(\.id).joined(separator: ", ") + ")"),
         ("apps", "[" + apps.map(\.id).joined(separator: ", ") + "]"),
            ("socket", socket), ("socket_mode", "0" + String(socketMode, radix: 8)), ("database", database),
            ("key_file", effectiveKeyFile), ("callback_url", callbackURL),
            ("allowed_redirect_origins", "[" + allowedRedirectOrigins.joined(separator: ", ") + "]"),
            ("flow_binding", flowBinding.rawValue), ("signup", signup),
            ("signup_domains", "[" + signupDomains.joined(separator: ", ") + "]"),
            ("app_name", appName), ("mail_from", mailFrom), ("mail_transport", mailTransport.rawValue),
            ("outbox_dir", outboxDir), ("smtp_host", smtpHost ?? ""),
            ("smtp_port", smtpPort.map(String.init) ?? "(by smtp_tls)"), ("smtp_tls", smtpTLS.rawValue),
            ("smtp_ca_file", smtpCAFile ?? "(system roots)"), ("smtp_username", smtpUsername ?? ""),
            ("smtp_password_file", effectiveSMTPPasswordFile ?? ""), ("smtp_ehlo_name", smtpEHLOName ?? "(host name)"),
            ("smtp_connect_timeout", "\(smtpConnectTimeout)"), ("smtp_reply_timeout", "\(smtpReplyTimeout)"),
            ("sendmail_path", sendmailPath), ("templates_dir", templatesDir ?? "(built-in templates)"),
            ("admin_uids", adminUIDs.map(String.init).joined(separator: ",")),
            ("admin_gids", adminGIDs.map(String.init).joined(separator: ",")),
            ("allowed_uids", allowedUIDs.map(String.init).joined(separator: ",")),
            ("allowed_gids", allowedGIDs.map(String.init).joined(separator: ",")),
            ("max_connections", "\(maxConnections)"), ("event_loop_threads", "\(eventLoopThreads)"),
            ("request_timeout", "\(requestTimeout)"),
            ("idle_timeout", "\(idleTimeout)"),
            ("mail_queue_max", "\(mailQueueMax)"), ("mail_retry_min_delay", "\(mailRetryMinDelay)"),
            ("mail_retry_max_delay", "\(mailRetryMaxDelay)"), ("token_ttl", "\(tokenTTL)"), ("session_ttl", "\(sessionTTL)"),
            ("session_idle_ttl", "\(sessionIdleTTL)"), ("session_touch_interval", "\(sessionTouchInterval)"),
            ("session_cache_entries", "\(sessionCacheEntries)"), ("max_line_bytes", "\(maxLineBytes)"), ("rate_limit_ip_max", "\(rateLimitIPMax)"),
            ("rate_limit_ip_window", "\(rateLimitIPWindow)"), ("rate_limit_email_max", "\(rateLimitEmailMax)"),
            ("rate_limit_email_window", "\(rateLimitEmailWindow)"), ("rate_limit_email_cooldown", "\(rateLimitEmailCooldown)"),
            ("rate_limit_global_max", "\(rateLimitGlobalMax)"), ("rate_limit_global_window", "\(rateLimitGlobalWindow)"),
            ("rate_limit_failures_max", "\(rateLimitFailuresMax)"), ("rate_limit_failures_window", "\(rateLimitFailuresWindow)"),
            ("log_level", logLevel.rawValue),
        ]
    }

    /// The mail templates: built-in, overridden from `templates_dir`. Parsing errors name the file.
    public func templateCatalog() throws(ConfigurationError) -> TemplateCatalog {
        do {
            return try TemplateCatalog(directory: templatesDir)
        } catch {
            throw ConfigurationError(key: "templates_dir", source: templatesDir ?? "built-in templates", message: error.description)
        }
    }

    /// The Mailbox of `mail_from` (validated at load).
    public var fromMailbox: Mailbox { (try? Mailbox(parsing: mailFrom)) ?? Mailbox(address: "no-reply@localhost") }

    /// Core policy derived from this configuration.
    public func authPolicy() throws -> AuthPolicy {
        var policy = AuthPolicy(callbackURL: callbackURL, redirects: try RedirectPolicy(allowedOrigins: allowedRedirectOrigins))
        policy.tokenTTL = tokenTTL
        policy.sessionTTL = sessionTTL
        policy.sessionIdleTTL = sessionIdleTTL
        policy.sessionTouchInterval = sessionTouchInterval
        policy.startPerIP = RateLimit(maximum: rateLimitIPMax, window: rateLimitIPWindow)
        policy.startPerAddress = RateLimit(maximum: rateLimitEmailMax, window: rateLimitEmailWindow)
        policy.addressCooldown = rateLimitEmailCooldown
        policy.globalSendBudget = RateLimit(maximum: rateLimitGlobalMax, window: rateLimitGlobalWindow)
        policy.failuresPerIP = RateLimit(maximum: rateLimitFailuresMax, window: rateLimitFailuresWindow)
        policy.messageIDDomain = fromMailbox.domain
        policy.mailQueueLimit = mailQueueMax
        policy.flowBinding = flowBinding
        policy.appID = appID
        switch signup {
        case "domains": policy.signup = .domains(signupDomains)
        case "existing": policy.signup = .existing
        default: policy.signup = .open
        }
        return policy
    }
}

/// A bad setting, named so the admin can find it.
public struct ConfigurationError: Error, CustomStringConvertible {
    public var key: String?
    public var source: String
    public var message: String

    public var description: String {
        guard let key else { return "configuration error in \(source): \(message)" }
        return "configuration error: \(key) (\(Configuration.environmentName(of: key))) from \(source): \(message)"
    }
}

struct SettingError: Error { var reason: String }

/// One configuration key: its name, how to parse it, and its documentation line.
struct Setting: Sendable {
    let key: String
    let acceptsList: Bool
    let apply: @Sendable (inout Configuration, String) throws(SettingError) -> Void

    init(_ key: String, list: Bool = false, _ apply: @escaping @Sendable (inout Configuration, String) throws(SettingError) -> Void) {
        self.key = key
        self.acceptsList = list
        self.apply = apply
    }
}

extension Configuration {
    static let settings: [Setting] = [
        Setting("socket") { c, v throws(SettingError) in c.socket = try path(v) },
        Setting("socket_mode") { c, v throws(SettingError) in c.socketMode = try mode(v) },
        Setting("database") { c, v throws(SettingError) in c.database = try path(v) },
        Setting("key_file") { c, v throws(SettingError) in c.keyFile = try path(v) },
        Setting("callback_url") { c, v throws(SettingError) in c.callbackURL = try callback(v) },
        Setting("allowed_redirect_origins", list: true) { c, v in
            c.allowedRedirectOrigins = v.split(separator: ",").map { String($0).trimmingWhitespace() }.filter { !$0.isEmpty }
        },
        Setting("flow_binding") { c, v throws(SettingError) in
            guard let binding = FlowBinding(rawValue: v) else {
                throw SettingError(reason: "must be one of \(FlowBinding.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            c.flowBinding = binding
        },
        Setting("signup") { c, v throws(SettingError) in
            guard ["open", "domains", "existing"].contains(v) else { throw SettingError(reason: "must be one of open, domains, existing") }
            c.signup = v
        },
        Setting("signup_domains", list: true) { c, v throws(SettingError) in
            var domains: [String] = []
            for item in v.split(separator: ",").map({ String($0).trimmingWhitespace() }) where !item.isEmpty {
                // The same normalization as addresses get (lower case, IDNA).
                guard let parsed = try? EmailAddress(parsing: "x@" + item) else {
                    throw SettingError(reason: "\"\(item)\" is not a domain mail can be sent to")
                }
                domains.append(parsed.domain)
            }
            c.signupDomains = domains
        },
        Setting("app_name") { c, v throws(SettingError) in c.appName = try nonEmpty(v, max: 100) },
        Setting("mail_from") { c, v throws(SettingError) in c.mailFrom = try nonEmpty(v, max: 320) },
        Setting("mail_transport") { c, v throws(SettingError) in
            guard let kind = MailTransportKind(rawValue: v) else {
                throw SettingError(reason: "must be one of \(MailTransportKind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            c.mailTransport = kind
        },
        Setting("outbox_dir") { c, v throws(SettingError) in c.outboxDir = try path(v) },
        Setting("smtp_host") { c, v throws(SettingError) in c.smtpHost = try host(v) },
        Setting("smtp_port") { c, v throws(SettingError) in c.smtpPort = Int(try integer(v, in: 1...65_535)) },
        Setting("smtp_tls") { c, v throws(SettingError) in
            guard let security = SMTPSecurity(rawValue: v) else {
                throw SettingError(reason: "must be one of starttls (port 587), tls (implicit TLS, port 465), none (plaintext, for a trusted local relay only)")
            }
            c.smtpTLS = security
        },
        Setting("smtp_ca_file") { c, v throws(SettingError) in c.smtpCAFile = try path(v) },
        Setting("smtp_username") { c, v throws(SettingError) in c.smtpUsername = try nonEmpty(v, max: 256) },
        Setting("smtp_password_file") { c, v throws(SettingError) in c.smtpPasswordFile = try path(v) },
        Setting("smtp_ehlo_name") { c, v throws(SettingError) in c.smtpEHLOName = try host(v) },
        Setting("smtp_connect_timeout") { c, v throws(SettingError) in c.smtpConnectTimeout = try seconds(v) },
        Setting("smtp_reply_timeout") { c, v throws(SettingError) in c.smtpReplyTimeout = try seconds(v) },
        Setting("sendmail_path") { c, v throws(SettingError) in c.sendmailPath = try path(v) },
        Setting("templates_dir") { c, v throws(SettingError) in c.templatesDir = try path(v) },
        Setting("mail_queue_max") { c, v throws(SettingError) in c.mailQueueMax = Int(try integer(v, in: 1...10_000_000)) },
        Setting("admin_uids", list: true) { c, v throws(SettingError) in c.adminUIDs = try ids(v) },
        Setting("admin_gids", list: true) { c, v throws(SettingError) in c.adminGIDs = try ids(v) },
        Setting("allowed_uids", list: true) { c, v throws(SettingError) in c.allowedUIDs = try peerIDs(v) },
        Setting("allowed_gids", list: true) { c, v throws(SettingError) in c.allowedGIDs = try peerIDs(v) },
        Setting("max_connections") { c, v throws(SettingError) in c.maxConnections = Int(try integer(v, in: 1...100_000)) },
        Setting("event_loop_threads") { c, v throws(SettingError) in c.eventLoopThreads = Int(try integer(v, in: 0...256)) },
        Setting("request_timeout") { c, v throws(SettingError) in c.requestTimeout = try seconds(v) },
        Setting("idle_timeout") { c, v throws(SettingError) in c.idleTimeout = try seconds(v) },
        Setting("mail_retry_min_delay") { c, v throws(SettingError) in c.mailRetryMinDelay = try seconds(v) },
        Setting("mail_retry_max_delay") { c, v throws(SettingError) in c.mailRetryMaxDelay = try seconds(v) },
        Setting("token_ttl") { c, v throws(SettingError) in c.tokenTTL = try seconds(v) },
        Setting("session_ttl") { c, v throws(SettingError) in c.sessionTTL = try seconds(v) },
        Setting("session_idle_ttl") { c, v throws(SettingError) in c.sessionIdleTTL = try seconds(v) },
        Setting("session_touch_interval") { c, v throws(SettingError) in c.sessionTouchInterval = try seconds(v, allowZero: true) },
        Setting("session_cache_entries") { c, v throws(SettingError) in c.sessionCacheEntries = Int(try integer(v, in: 0...10_000_000)) },
        Setting("max_line_bytes") { c, v throws(SettingError) in c.maxLineBytes = Int(try integer(v, in: 1_024...16_777_216)) },
        Setting("rate_limit_ip_max") { c, v throws(SettingError) in c.rateLimitIPMax = Int(try integer(v, in: 1...1_000_000)) },
        Setting("rate_limit_ip_window") { c, v throws(SettingError) in c.rateLimitIPWindow = try seconds(v) },
        Setting("rate_limit_email_max") { c, v throws(SettingError) in c.rateLimitEmailMax = Int(try integer(v, in: 1...1_000_000)) },
        Setting("rate_limit_email_window") { c, v throws(SettingError) in c.rateLimitEmailWindow = try seconds(v) },
        Setting("rate_limit_email_cooldown") { c, v throws(SettingError) in c.rateLimitEmailCooldown = try seconds(v, allowZero: true) },
        Setting("rate_limit_global_max") { c, v throws(SettingError) in c.rateLimitGlobalMax = Int(try integer(v, in: 1...100_000_000)) },
        Setting("rate_limit_global_window") { c, v throws(SettingError) in c.rateLimitGlobalWindow = try seconds(v) },
        Setting("rate_limit_failures_max") { c, v throws(SettingError) in c.rateLimitFailuresMax = Int(try integer(v, in: 1...1_000_000)) },
        Setting("rate_limit_failures_window") { c, v throws(SettingError) in c.rateLimitFailuresWindow = try seconds(v) },
        Setting("log_level") { c, v throws(SettingError) in
            guard let level = Logger.Level(rawValue: v.lowercased()) else {
                throw SettingError(reason: "must be one of trace, debug, info, notice, warning, error, critical")
            }
            c.logLevel = level
        },
    ]

    static func path(_ v: String) throws(SettingError) -> String {
        guard !v.isEmpty else { throw SettingError(reason: "must be a path") }
        guard !v.utf8.contains(0) else { throw SettingError(reason: "must not contain NUL") }
        return v
    }

    static func nonEmpty(_ v: String, max: Int) throws(SettingError) -> String {
        guard !v.isEmpty, v.utf8.count <= max else { throw SettingError(reason: "must be 1 to \(max) bytes") }
        guard !v.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw SettingError(reason: "must not contain control characters")
        }
        return v
    }

    static func integer(_ v: String, in range: ClosedRange<Int64>) throws(SettingError) -> Int64 {
        guard let n = Int64(v), range.contains(n) else {
            throw SettingError(reason: "must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return n
    }

    /// Whole seconds, or a number with a unit: 90, 90s, 10m, 12h, 30d.
    static func seconds(_ v: String, allowZero: Bool = false) throws(SettingError) -> Int64 {
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3_600, "d": 86_400]
        var digits = Substring(v)
        var unit: Int64 = 1
        if let last = digits.last, let factor = units[last] {
            unit = factor
            digits = digits.dropLast()
        }
        guard let n = Int64(digits), n >= (allowZero ? 0 : 1), n <= 10 * 365 * 86_400 / unit else {
            throw SettingError(reason: "must be a \(allowZero ? "non-negative" : "positive") number of seconds (or with a unit: 90s, 10m, 12h, 30d)")
        }
        return n * unit
    }

    /// Numeric uids or gids, comma-separated.
    static func ids(_ v: String) throws(SettingError) -> [UInt32] {
        var result: [UInt32] = []
        for part in v.split(separator: ",") {
            let text = String(part).trimmingWhitespace()
            guard let id = UInt32(text), id != UInt32.max else { throw SettingError(reason: "must be numeric ids separated by commas") }
            result.append(id)
        }
        return result
    }

    /// `ids`, without the overflow id: under a user namespace (systemd's PrivateUsers=) every
    /// unmapped peer shows up as 65534, so listing it would let everyone in.
    static func peerIDs(_ v: String) throws(SettingError) -> [UInt32] {
        let result = try ids(v)
        guard !result.contains(PeerCredentials.overflowID) else {
            throw SettingError(reason: "must not hold 65534, the overflow id every unmapped peer shows up as under PrivateUsers=yes")
        }
        return result
    }

    /// A host name or IP literal for SMTP: letters, digits, dots, hyphens, colons (IPv6), no spaces.
    static func host(_ v: String) throws(SettingError) -> String {
        let allowed = v.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2E || b == 0x2D || b == 0x3A
        }
        guard !v.isEmpty, v.utf8.count <= 253, allowed else {
            throw SettingError(reason: "must be a host name or IP address")
        }
        return v
    }

    static func mode(_ v: String) throws(SettingError) -> UInt32 {
        guard (3...4).contains(v.count), let n = UInt32(v, radix: 8), n <= 0o777, n & 0o600 == 0o600 else {
            throw SettingError(reason: "must be an octal file mode such as 0660 that lets the owner read and write")
        }
        return n
    }

    /// An absolute http(s) URL without fragment: the base of every mailed link.
    static func callback(_ v: String) throws(SettingError) -> String {
        let lower = v.lowercased()
        guard lower.hasPrefix("https://") || lower.hasPrefix("http://") else {
            throw SettingError(reason: "must be an absolute http:// or https:// URL")
        }
        guard !v.contains("#"), !v.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value >= 0x7F }) else {
            throw SettingError(reason: "must be an ASCII URL without spaces or a fragment")
        }
        let afterScheme = v.drop(while: { $0 != "/" }).dropFirst(2)
        guard let host = afterScheme.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).first,
              !host.isEmpty, !host.contains("@") else {
            throw SettingError(reason: "must name a host (and no user info)")
        }
        return v
    }
}

extension String {
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let start = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let end = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        return String(scalars[start...end])
    }
}

/// One app of a daemon that serves several: its id (what requests name in `params.app`) and its
/// settings (the top-level ones with the app's own on top).
public struct AppConfiguration: Sendable {
    public let id: String
    public let settings: Configuration
}
