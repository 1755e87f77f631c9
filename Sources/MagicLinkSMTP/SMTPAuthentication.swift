import ExtrasBase64
/// AUTH PLAIN (preferred: one round trip) or AUTH LOGIN, RFC 4954.
///
/// Credentials appear only in the bytes written to the server. Server replies to AUTH are
/// scrubbed of the password and of every base64 string we sent, since some servers echo
/// the undecodable input back ("501 cannot decode AGFsaWNl…").
enum SMTPAuthentication {
    static func authenticate(
        _ connection: SMTPConnection,
        username: String,
        password: String,
        mechanisms: Set<String>,
        timeout: Duration
    ) async throws(SMTPError) {
        let plain = Base64.encodeToString(bytes: Array(("\u{0}" + username + "\u{0}" + password).utf8))
        let user64 = Base64.encodeToString(bytes: Array(username.utf8))
        let pass64 = Base64.encodeToString(bytes: Array(password.utf8))
        let secrets = [password, plain, pass64].filter { !$0.isEmpty }

        func failure(_ detail: String, _ reply: SMTPReply) -> SMTPError {
            SMTPError(.authentication, detail, reply: redact(reply, removing: secrets))
        }

        if mechanisms.contains("PLAIN") {
            let reply = try await connection.command("AUTH PLAIN \(plain)", timeout: timeout)
            guard reply.code == 235 else { throw failure("AUTH PLAIN as \(username) failed", reply) }
        } else if mechanisms.contains("LOGIN") {
            var reply = try await connection.command("AUTH LOGIN", timeout: timeout)
            guard reply.code == 334 else { throw failure("AUTH LOGIN refused", reply) }
            reply = try await connection.command(user64, timeout: timeout)
            guard reply.code == 334 else { throw failure("AUTH LOGIN as \(username) failed at the user name", reply) }
            reply = try await connection.command(pass64, timeout: timeout)
            guard reply.code == 235 else { throw failure("AUTH LOGIN as \(username) failed", reply) }
        } else {
            let offered = mechanisms.isEmpty ? "none" : mechanisms.sorted().joined(separator: " ")
            throw SMTPError(
                .authentication,
                "a username is configured but the server offers neither AUTH PLAIN nor LOGIN (offered: \(offered))"
            )
        }
    }

    static func redact(_ reply: SMTPReply, removing secrets: [String]) -> SMTPReply {
        var reply = reply
        reply.lines = reply.lines.map { line in
            var line = line
            for secret in secrets { line = line.replacingAll(secret, with: "<redacted>") }
            return line
        }
        return reply
    }
}

extension String {
    /// `replacingOccurrences(of:with:)` without Foundation.
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        let source = Array(self.utf8), pattern = Array(target.utf8)
        var out: [UInt8] = []
        var i = 0
        while i < source.count {
            if i + pattern.count <= source.count, source[i..<(i + pattern.count)].elementsEqual(pattern) {
                out.append(contentsOf: replacement.utf8)
                i += pattern.count
            } else {
                out.append(source[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
