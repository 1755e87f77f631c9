import MagicLinkMail
import MagicLinkSMTP
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// The `smtp` transport: renders each message and submits it with `SMTPClient`, which keeps one
/// connection open across messages. SMTP errors become retry-or-dead-letter decisions here.
struct SMTPMailTransport: MailTransport {
    let client: SMTPClient
    let description: String

    func deliver(_ delivery: Delivery) async throws(MailTransportError) -> String {
        do {
            let reply = try await client.send(from: delivery.message.from.address, to: delivery.message.to.address,
                                              message: delivery.message.render())
            return "\(description): \(reply)"
        } catch {
            throw MailTransportError(permanent: error.isPermanent, reason: error.description)
        }
    }

    func shutdown() async {
        await client.shutdown()
    }
}

/// Builds the SMTP transport from configuration, reading the password file now so that a
/// missing or unreadable file stops the start with a clear message.
func makeSMTPTransport(_ configuration: Configuration, group: any EventLoopGroup) throws -> any MailTransport {
    guard let host = configuration.smtpHost else {
        throw ConfigurationError(key: "smtp_host", source: "configuration", message: "is required when mail_transport is smtp")
    }
    var password: String?
    if let file = configuration.effectiveSMTPPasswordFile {
        do {
            password = String(decoding: try readFile(file, limit: 4_096), as: UTF8.self).trimmingTrailingNewlines()
        } catch {
            throw ConfigurationError(key: "smtp_password_file", source: file, message: "cannot read the password: \(error)")
        }
    }
    if let caFile = configuration.smtpCAFile, !fileExists(caFile) {
        throw ConfigurationError(key: "smtp_ca_file", source: caFile, message: "no such file")
    }
    let security: SMTPConfiguration.Security
    switch configuration.smtpTLS {
    case .starttls: security = .starttls
    case .tls: security = .tls
    case .none: security = .none
    }
    let smtp = SMTPConfiguration(
        host: host, port: configuration.smtpPort, security: security, caFile: configuration.smtpCAFile,
        username: configuration.smtpUsername, password: password,
        ehloName: configuration.smtpEHLOName ?? localHostName(),
        connectTimeout: .seconds(configuration.smtpConnectTimeout),
        replyTimeout: .seconds(configuration.smtpReplyTimeout))
    let port = configuration.smtpPort ?? SMTPConfiguration.defaultPort(for: security)
    return SMTPMailTransport(client: SMTPClient(configuration: smtp, eventLoopGroup: group),
                             description: "smtp \(host):\(port)")
}

/// This machine's host name, for EHLO.
func localHostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count) == 0 else { return "localhost" }
    let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return name.isEmpty ? "localhost" : name
}

extension String {
    func trimmingTrailingNewlines() -> String {
        var result = Substring(self)
        while let last = result.last, last == "\n" || last == "\r" { result = result.dropLast() }
        return String(result)
    }
}
