import NIOCore

/// An SMTP session that is ready for transactions: greeted, EHLO'd, TLS'd and authenticated
/// as the configuration requires. Opening one is all-or-nothing: on any failure the
/// connection is closed (after a QUIT when the server is still talking to us).
struct SMTPSession: Sendable {
    let connection: SMTPConnection
    /// From the last EHLO: after STARTTLS only the post-TLS announcement counts.
    let capabilities: SMTPCapabilities

    static func open(
        configuration: SMTPConfiguration,
        tls: SMTPTLSParameters?,
        group: any EventLoopGroup
    ) async throws(SMTPError) -> SMTPSession {
        try Self.checkEHLOName(configuration.ehloName)
        let implicitTLS = configuration.security == .tls ? tls : nil
        let connection = try await SMTPConnection.connect(
            host: configuration.host,
            port: configuration.port,
            implicitTLS: implicitTLS,
            timeout: configuration.connectTimeout,
            group: group
        )
        do throws(SMTPError) {
            let capabilities = try await greetAndNegotiate(connection, configuration: configuration, tls: tls)
            return SMTPSession(connection: connection, capabilities: capabilities)
        } catch {
            // Say goodbye when the server is still in step with us (it answered, or we chose
            // to stop); a timeout, a TLS failure or garbage has already closed the connection.
            if error.replyCode != nil || error.kind == .startTLSNotOffered || error.kind == .authentication {
                await connection.quit(timeout: min(configuration.replyTimeout, .seconds(5)))
            } else {
                connection.close()
            }
            throw error
        }
    }

    private static func greetAndNegotiate(
        _ connection: SMTPConnection,
        configuration: SMTPConfiguration,
        tls: SMTPTLSParameters?
    ) async throws(SMTPError) -> SMTPCapabilities {
        let timeout = configuration.replyTimeout
        let greeting = try await connection.readReply(timeout: timeout)
        guard greeting.isPositiveCompletion else {
            // Even a 554 greeting says "not now" about this server, not "never" about the message.
            throw SMTPError(.rejected, "server refused the session in its greeting", reply: greeting)
        }

        var capabilities = try await hello(connection, configuration: configuration)

        if configuration.security == .starttls {
            guard capabilities.startTLS, let tls else {
                throw SMTPError(
                    .startTLSNotOffered,
                    "STARTTLS is required but \(configuration.host) did not offer it; refusing to continue in plaintext"
                )
            }
            let reply = try await connection.startTLS(tls, timeout: timeout)
            guard reply.code == 220 else {
                throw SMTPError(.tls, "server refused STARTTLS", reply: reply)
            }
            capabilities = try await hello(connection, configuration: configuration, afterTLS: true)
        }

        if let username = configuration.username {
            try await SMTPAuthentication.authenticate(
                connection,
                username: username,
                password: configuration.password ?? "",
                mechanisms: capabilities.authMechanisms,
                timeout: timeout
            )
        }
        return capabilities
    }

    /// EHLO; HELO only for plaintext relays that do not speak ESMTP (a TLS session needs EHLO).
    private static func hello(
        _ connection: SMTPConnection,
        configuration: SMTPConfiguration,
        afterTLS: Bool = false
    ) async throws(SMTPError) -> SMTPCapabilities {
        let timeout = configuration.replyTimeout
        let ehlo = try await connection.command("EHLO \(configuration.ehloName)", timeout: timeout)
        if ehlo.isPositiveCompletion {
            return SMTPCapabilities(ehloReply: ehlo)
        }
        if ehlo.isPermanentFailure, configuration.security == .none {
            let helo = try await connection.command("HELO \(configuration.ehloName)", timeout: timeout)
            if helo.isPositiveCompletion { return SMTPCapabilities() }
            throw SMTPError(.rejected, "server refused HELO", reply: helo)
        }
        throw SMTPError(.rejected, afterTLS ? "server refused EHLO after STARTTLS" : "server refused EHLO", reply: ehlo)
    }

    /// The EHLO name goes on the wire verbatim: keep it to one printable ASCII word.
    private static func checkEHLOName(_ name: String) throws(SMTPError) {
        let valid = !name.isEmpty && name.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
        if !valid {
            throw SMTPError(.protocolViolation, "ehloName must be one printable ASCII word without spaces")
        }
    }
}

