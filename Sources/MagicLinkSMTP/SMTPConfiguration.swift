/// Where and how to submit mail. Plain data: nothing here opens a connection or reads a file.
public struct SMTPConfiguration: Sendable {
    /// How the connection is protected.
    public enum Security: String, Sendable {
        /// Plaintext connect, then STARTTLS is required (fail closed if the server does not offer it). Port 587.
        case starttls
        /// TLS from the first byte ("implicit TLS", RFC 8314). Port 465.
        case tls
        /// No TLS at all: only for a trusted relay on the same host or network. Port 25.
        case none
    }

    public var host: String
    public var port: Int
    public var security: Security
    /// PEM bundle to trust instead of the system roots (a private CA, or a test CA).
    public var caFile: String?
    public var username: String?
    /// Already read from a file by the caller. Never logged, never put into an error.
    public var password: String?
    /// The name announced in EHLO/HELO.
    public var ehloName: String
    public var connectTimeout: Duration
    /// Longest wait for any one reply; the reply to the end of DATA gets four times this.
    public var replyTimeout: Duration
    /// A pooled connection unused this long is closed (QUIT) rather than kept open.
    public var idleTimeout: Duration

    public init(
        host: String,
        port: Int? = nil,
        security: Security = .starttls,
        caFile: String? = nil,
        username: String? = nil,
        password: String? = nil,
        ehloName: String = "localhost",
        connectTimeout: Duration = .seconds(10),
        replyTimeout: Duration = .seconds(30),
        idleTimeout: Duration = .seconds(30)
    ) {
        self.host = host
        self.port = port ?? Self.defaultPort(for: security)
        self.security = security
        self.caFile = caFile
        self.username = username
        self.password = password
        self.ehloName = ehloName
        self.connectTimeout = connectTimeout
        self.replyTimeout = replyTimeout
        self.idleTimeout = idleTimeout
    }

    /// 587 (submission) for STARTTLS, 465 (submissions) for implicit TLS, 25 for plaintext.
    public static func defaultPort(for security: Security) -> Int {
        switch security {
        case .starttls: return 587
        case .tls: return 465
        case .none: return 25
        }
    }
}

extension SMTPConfiguration: CustomStringConvertible {
    /// For logs: says whether a password is set, never what it is.
    public var description: String {
        var parts = ["\(security.rawValue)://\(host):\(port)"]
        if let username { parts.append("user=\(username)") }
        if password != nil { parts.append("password=<set>") }
        if let caFile { parts.append("ca=\(caFile)") }
        return "SMTPConfiguration(" + parts.joined(separator: " ") + ")"
    }
}
