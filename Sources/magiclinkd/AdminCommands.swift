import ArgumentParser
import MagicLinkProtocol
import MagicLinkServer
#if canImport(Glibc)
import Glibc
#endif

/// Options every admin command shares: where the daemon is, and the output form.
struct AdminOptions: ParsableArguments {
    @OptionGroup var config: ConfigOptions

    @Option(name: .long, help: ArgumentHelp("The daemon's socket (default: from the configuration, else the systemd unit's \(AdminOptions.systemdSocket) when it exists, else ./magiclinkd.sock).", valueName: "path"))
    var socket: String?

    /// Where the shipped units put the configuration and the socket.
    static let systemdConfig = "/etc/magiclinkd/magiclinkd.yaml"
    static let systemdSocket = "/run/magiclinkd/magiclinkd.sock"

    /// The admin's shell has neither the unit's environment nor its --config: without other
    /// directions, look where the shipped units put things before the development default.
    func socketPath() throws -> String {
        if let socket { return socket }
        let fallback = access(Self.systemdConfig, R_OK) == 0 ? Self.systemdConfig : nil
        let configuration = try config.load(crossChecks: false, fallbackFile: fallback)
        if configuration.explicitKeys.contains("socket") { return configuration.socket }
        var info = stat()
        if stat(Self.systemdSocket, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK { return Self.systemdSocket }
        return configuration.socket
    }

    @Flag(name: .long, help: "Print the daemon's JSON result instead of text.")
    var json = false

    /// Sends one admin op and returns its result, or exits with the daemon's error.
    func call(_ op: String, _ params: JSONObject = [:]) throws -> JSONObject {
        let path = try socketPath()
        let request = JSONValue.object(["id": 1, "op": .string(op), "params": .object(params)])
        let reply: JSONObject
        do {
            reply = try AdminConnection.exchange(path: path, line: request.serialized())
        } catch {
            printError("magiclinkd: cannot reach the daemon at \(path): \(error)")
            throw ExitCode(69)  // EX_UNAVAILABLE
        }
        if reply["ok"] == .bool(true), let result = reply["result"]?.objectValue {
            if json { print(JSONValue.object(result).jsonString) }  // JSON escapes control characters itself
            return result
        }
        let error = reply["error"]?.objectValue ?? [:]
        printError(escapingControlCharacters("magiclinkd: \(error["code"]?.stringValue ?? "error"): \(error["message"]?.stringValue ?? "\(reply)")"))
        throw ExitCode(error["code"]?.stringValue == "permission_denied" ? 77 : 1)  // 77: EX_NOPERM
    }
}

/// One request over the Unix socket, blocking: the admin commands need nothing more.
enum AdminConnection {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static func exchange(path: String, line: [UInt8]) throws -> JSONObject {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: String(cString: strerror(errno))) }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw Failure(description: "path too long") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw Failure(description: String(cString: strerror(errno))) }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let out = line + [UInt8(ascii: "\n")]
        var sent = 0
        while sent < out.count {
            let n = out.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Failure(description: String(cString: strerror(errno))) }
            sent += n
        }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while !received.contains(UInt8(ascii: "\n")) {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw Failure(description: n == 0 ? "the daemon closed the connection" : String(cString: strerror(errno))) }
            received += chunk[0..<n]
        }
        let replyLine = Array(received.prefix { $0 != UInt8(ascii: "\n") })
        guard case .object(let reply) = try JSONParser.parse(replyLine) else { throw Failure(description: "malformed reply") }
        return reply
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the running daemon's version, uptime, users, sessions and mail queue.")
    @OptionGroup var admin: AdminOptions

    func run() throws {
        let result = try admin.call("admin_status")
        guard !admin.json else { return }
        let mail = result["mail"]?.objectValue ?? [:]
        say("version        \(result["version"]?.stringValue ?? "?")")
        say("uptime         \(formatDuration(result["uptime_s"]?.int64Value ?? 0))")
        say("users          \(result["users"]?.int64Value ?? 0)")
        say("live sessions  \(result["live_sessions"]?.int64Value ?? 0)")
        say("mail           " + ["queued", "sending", "sent", "failed", "expired"]
            .map { "\($0) \(mail[$0]?.int64Value ?? 0)" }.joined(separator: ", "))
        let links = result["links"]?.objectValue ?? [:]
        say("peeked links   \(links["peeked_never_used"]?.int64Value ?? 0) never used (mail scanners?), "
            + "\(links["peeked_then_used"]?.int64Value ?? 0) used")
        if let cache = result["session_cache"]?.objectValue {
            let capacity = cache["capacity"]?.int64Value ?? 0
            say("session cache  " + (capacity == 0 ? "off" : "\(cache["entries"]?.int64Value ?? 0) of \(capacity) held, "
                + "\(cache["hits"]?.int64Value ?? 0) answered from memory, \(cache["misses"]?.int64Value ?? 0) from the database"))
        }
    }
}

struct Sessions: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List a user's live sessions (by user id or email address).")
    @OptionGroup var admin: AdminOptions
    @Option(name: .long, help: "The user's id.") var user: String?
    @Option(name: .long, help: "The user's email address.") var email: String?

    func validate() throws {
        guard (user == nil) != (email == nil) else { throw ValidationError("Give exactly one of --user and --email.") }
    }

    func run() throws {
        var params: JSONObject = [:]
        params["user_id"] = user.map(JSONValue.string)
        params["email"] = email.map(JSONValue.string)
        let result = try admin.call("admin_sessions", params)
        guard !admin.json else { return }
        let sessions = result["sessions"]?.arrayValue ?? []
        if sessions.isEmpty { say("no live sessions") }
        for entry in sessions.compactMap(\.objectValue) {
            let ip = entry["ip"]?.stringValue ?? "-"
            say("\(entry["handle"]?.stringValue ?? "?")  created \(formatTime(entry["created_at"]?.int64Value))  "
                  + "idle until \(formatTime(entry["idle_expires_at"]?.int64Value))  ip \(ip)  \(entry["user_agent"]?.stringValue ?? "")")
        }
    }
}

struct Revoke: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "End one session (by the handle `sessions` shows) or all of a user's.")
    @OptionGroup var admin: AdminOptions
    @Option(name: .long, help: "A session handle from `magiclinkd sessions` (at least 8 hex digits).") var handle: String?
    @Option(name: .long, help: "End every session of this user id.") var user: String?

    func validate() throws {
        guard (handle == nil) != (user == nil) else { throw ValidationError("Give exactly one of --handle and --user.") }
    }

    func run() throws {
        var params: JSONObject = [:]
        params["handle"] = handle.map(JSONValue.string)
        params["user_id"] = user.map(JSONValue.string)
        let result = try admin.call("admin_revoke", params)
        if !admin.json { say("revoked \(result["revoked"]?.int64Value ?? 0) session(s)") }
    }
}

struct DeadLetters: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dead-letters", abstract: "Show mail that failed permanently or expired unsent, with the server's reply.")
    @OptionGroup var admin: AdminOptions
    @Option(name: .long, help: "At most this many, newest first.") var limit: Int = 100

    func run() throws {
        let result = try admin.call("admin_dead_letters", ["limit": .integer(Int64(limit))])
        guard !admin.json else { return }
        let messages = result["messages"]?.arrayValue ?? []
        if messages.isEmpty { say("no dead letters") }
        for entry in messages.compactMap(\.objectValue) {
            say("\(entry["message_id"]?.stringValue ?? "?")  \(entry["state"]?.stringValue ?? "?")  to \(entry["recipient"]?.stringValue ?? "?")  "
                  + "attempts \(entry["attempts"]?.int64Value ?? 0)  \(formatTime(entry["finished_at"]?.int64Value))")
            if let error = entry["last_error"]?.stringValue { say("    \(error)") }
        }
    }
}

struct Retry: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Queue a dead letter again (only while its link is still valid).")
    @OptionGroup var admin: AdminOptions
    @Argument(help: "The message id `dead-letters` shows.") var messageID: String

    func run() throws {
        let result = try admin.call("admin_retry", ["message_id": .string(messageID)])
        let retried = result["retried"] == .bool(true)
        if !admin.json {
            say(retried ? "queued again" : "not queued: \(result["reason"]?.stringValue ?? "?")")
        }
        // Scripts check the exit status, with or without --json.
        if !retried { throw ExitCode(1) }
    }
}

struct AddUser: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "add-user", abstract: "Create the user of an address before its first login (for signup: existing).")
    @OptionGroup var admin: AdminOptions
    @Argument(help: "The email address.") var email: String

    func run() throws {
        let result = try admin.call("admin_create_user", ["email": .string(email)])
        guard !admin.json else { return }
        let user = result["user"]?.objectValue ?? [:]
        let created = result["created"] == .bool(true)
        say("\(created ? "created" : "exists already"): \(user["email"]?.stringValue ?? "?") \(user["id"]?.stringValue ?? "?")")
    }
}

struct Purge: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete expired sessions, tokens, rate-limit events and old mail now.")
    @OptionGroup var admin: AdminOptions

    func run() throws {
        let result = try admin.call("admin_purge")
        if !admin.json { say("removed \(result["removed"]?.int64Value ?? 0) row(s)") }
    }
}

/// Prints a line of text output with control characters escaped: user agents and SMTP replies
/// come from outside and must not drive the admin's terminal.
func say(_ line: String) {
    print(escapingControlCharacters(line))
}

func formatTime(_ seconds: Int64?) -> String {
    guard var value = seconds.map({ time_t($0) }) else { return "-" }
    var parts = tm()
    gmtime_r(&value, &parts)
    var buffer = [CChar](repeating: 0, count: 32)
    let count = strftime(&buffer, buffer.count, "%Y-%m-%d %H:%M:%SZ", &parts)
    return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func formatDuration(_ seconds: Int64) -> String {
    let days = seconds / 86_400, hours = seconds % 86_400 / 3_600, minutes = seconds % 3_600 / 60
    return days > 0 ? "\(days)d \(hours)h \(minutes)m" : hours > 0 ? "\(hours)h \(minutes)m" : "\(minutes)m \(seconds % 60)s"
}
