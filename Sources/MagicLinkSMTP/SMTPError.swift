/// Why a send failed, sorted so the mail queue can decide between "retry later" and "dead letter".
public struct SMTPError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable {
        case connect, tls, startTLSNotOffered, authentication, rejected, protocolViolation, timeout,
            smtputf8NotOffered, closed
    }

    public var kind: Kind
    /// The server's reply code, when the failure was a reply.
    public var replyCode: Int?
    /// The server's reply (code and text, one line, at most 512 bytes, control characters replaced).
    public var serverReply: String?
    /// True only when retrying the same message cannot help: 5xx to MAIL/RCPT/DATA, a bad
    /// address, or SMTPUTF8 needed and not offered. Configuration problems (TLS, AUTH) stay
    /// transient on purpose: once the admin fixes them, queued mail goes out.
    public var isPermanent: Bool
    /// What we were doing, in our words. Never holds a password or message content.
    var detail: String

    init(_ kind: Kind, _ detail: String, reply: SMTPReply? = nil, permanent: Bool = false) {
        self.kind = kind
        self.detail = Sanitize.oneLine(detail, limit: 512)
        self.replyCode = reply?.code
        self.serverReply = reply?.summary
        self.isPermanent = permanent
    }

    public var description: String {
        var text = "SMTP \(kind.label) error"
        text += isPermanent ? " (permanent): " : " (transient): "
        text += detail
        if let serverReply { text += "; server said: " + serverReply }
        return text
    }
}

extension SMTPError.Kind {
    var label: String {
        switch self {
        case .connect: return "connect"
        case .tls: return "TLS"
        case .startTLSNotOffered: return "STARTTLS-not-offered"
        case .authentication: return "authentication"
        case .rejected: return "rejected"
        case .protocolViolation: return "protocol"
        case .timeout: return "timeout"
        case .smtputf8NotOffered: return "SMTPUTF8-not-offered"
        case .closed: return "connection-closed"
        }
    }
}

/// Text from the network or from other errors goes through here before it reaches a log line.
enum Sanitize {
    /// Control characters become "?", the result is cut to `limit` UTF-8 bytes on a character boundary.
    static func oneLine(_ text: String, limit: Int) -> String {
        var out = ""
        var used = 0
        for scalar in text.unicodeScalars {
            let clean: Unicode.Scalar = (scalar.value < 0x20 || scalar.value == 0x7F) ? "?" : scalar
            let size = UTF8.width(clean)
            if used + size > limit { break }
            out.unicodeScalars.append(clean)
            used += size
        }
        return out
    }
}
