/// One mail transaction (MAIL, RCPT, DATA, message) on a ready session.
struct SMTPTransaction: Sendable {
    var from: String
    var to: String
    var message: [UInt8]

    /// Checks done before anything is sent. An address with CR, LF or NUL would let a caller
    /// inject commands; "<" and ">" would break out of the path brackets.
    static func validate(from: String, to: String) throws(SMTPError) {
        for (role, address) in [("sender", from), ("recipient", to)] {
            if address.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 || $0 == UInt8(ascii: "<") || $0 == UInt8(ascii: ">") }) {
                throw SMTPError(.protocolViolation, "\(role) address contains CR, LF, NUL, < or >", permanent: true)
            }
        }
        if to.isEmpty {
            throw SMTPError(.protocolViolation, "recipient address is empty", permanent: true)
        }
    }

    var needsSMTPUTF8: Bool { from.utf8.contains { $0 >= 0x80 } || to.utf8.contains { $0 >= 0x80 } }

    /// The MAIL command with the parameters this server and message call for.
    func mailCommand(capabilities: SMTPCapabilities) throws(SMTPError) -> String {
        var command = "MAIL FROM:<\(from)>"
        if capabilities.size != nil {
            command += " SIZE=\(message.count)"
        }
        if DotStuffing.hasEightBitBytes(message), capabilities.eightBitMIME {
            command += " BODY=8BITMIME"
        }
        if needsSMTPUTF8 {
            guard capabilities.smtpUTF8 else {
                throw SMTPError(
                    .smtputf8NotOffered,
                    "an envelope address is not ASCII and the server does not offer SMTPUTF8",
                    permanent: true
                )
            }
            command += " SMTPUTF8"
        }
        return command
    }

    /// Runs the transaction; returns the reply to the end of DATA. Reply failures are
    /// `.rejected` (5xx permanent, 4xx transient); anything else says what broke.
    func run(on session: SMTPSession, configuration: SMTPConfiguration) async throws(SMTPError) -> SMTPReply {
        let connection = session.connection
        let timeout = configuration.replyTimeout
        let mail = try mailCommand(capabilities: session.capabilities)
        let rcpt = "RCPT TO:<\(to)>"

        let dataReply: SMTPReply
        if session.capabilities.pipelining {
            // RFC 2920: one write, then every reply in order, even after a failure. The first
            // negative reply is what counts (a 421 followed by EOF reports the 421).
            try await connection.write(Array((mail + "\r\n" + rcpt + "\r\nDATA\r\n").utf8))
            var envelopeError: SMTPError?
            for step in ["MAIL FROM", "RCPT TO"] {
                do throws(SMTPError) {
                    let reply = try await connection.readReply(timeout: timeout)
                    envelopeError = envelopeError ?? Self.check(reply, step, expect: 2)
                } catch {
                    throw envelopeError ?? error
                }
            }
            do throws(SMTPError) {
                dataReply = try await connection.readReply(timeout: timeout)
            } catch {
                throw envelopeError ?? error
            }
            if let envelopeError {
                if dataReply.code == 354 {
                    // DATA was accepted although the envelope was not: end it with an empty body.
                    try await connection.write(Array(".\r\n".utf8))
                    _ = try await connection.readReply(timeout: timeout * 4)
                }
                throw envelopeError
            }
        } else {
            let mailReply = try await connection.command(mail, timeout: timeout)
            if let error = Self.check(mailReply, "MAIL FROM", expect: 2) { throw error }
            let rcptReply = try await connection.command(rcpt, timeout: timeout)
            if let error = Self.check(rcptReply, "RCPT TO", expect: 2) { throw error }
            dataReply = try await connection.command("DATA", timeout: timeout)
        }
        if let error = Self.check(dataReply, "DATA", expect: 3) { throw error }

        try await connection.write(DotStuffing.encode(message))
        let final = try await connection.readReply(timeout: timeout * 4)
        if let error = Self.check(final, "message data", expect: 2) { throw error }
        return final
    }

    /// nil when `reply` has the expected first digit; otherwise the error to report.
    static func check(_ reply: SMTPReply, _ step: String, expect digit: Int) -> SMTPError? {
        if reply.code / 100 == digit { return nil }
        if reply.code == 530 {
            // "Authentication required" / "Must issue a STARTTLS command first" (RFC 4954, 3207):
            // our configuration is wrong, not the message. Transient, like other AUTH/TLS problems.
            return SMTPError(.authentication, "server requires authentication or TLS before \(step)", reply: reply)
        }
        if reply.isPermanentFailure {
            return SMTPError(.rejected, "server rejected \(step)", reply: reply, permanent: true)
        }
        if reply.isTransientFailure {
            return SMTPError(.rejected, "server deferred \(step)", reply: reply)
        }
        return SMTPError(.protocolViolation, "unexpected reply to \(step)", reply: reply)
    }
}
