import Crypto

/// Seals a login token for the mail queue, so the token can be mailed after a crash without the
/// database ever holding it in the clear. The key lives in a separate 0600 file; a stolen
/// database alone reveals no usable link.
public struct TokenSealer: Sendable {
    public static let keyByteCount = 32
    private let key: SymmetricKey

    /// `keyBytes` must be 32 bytes.
    public init?(keyBytes: [UInt8]) {
        guard keyBytes.count == Self.keyByteCount else { return nil }
        key = SymmetricKey(data: keyBytes)
    }

    /// ChaCha20-Poly1305 over the token, bound to the message it belongs to.
    public func seal(_ token: String, messageID: String) throws -> [UInt8] {
        let box = try ChaChaPoly.seal(Array(token.utf8), using: key, authenticating: Array(messageID.utf8))
        return Array(box.combined)
    }

    /// Nil when the sealed bytes were not made with this key for this message.
    public func open(_ sealed: [UInt8], messageID: String) -> String? {
        guard let box = try? ChaChaPoly.SealedBox(combined: sealed),
              let plain = try? ChaChaPoly.open(box, using: key, authenticating: Array(messageID.utf8))
        else { return nil }
        return String(decoding: Array(plain), as: UTF8.self)
    }
}

/// The secrets one queued mail carries, as one sealed payload: the login token (for the link)
/// and, when asked for, the code, with what the mail shows. A payload of a bare token (queued
/// before codes existed) reads as a link-only mail.
public struct MailSecrets: Sendable, Equatable {
    public var token: String
    public var code: String?
    public var send: SendMode

    public init(token: String, code: String?, send: SendMode) {
        self.token = token
        self.code = code
        self.send = send
    }

    /// "v2\n<send>\n<token>\n<code or nothing>"
    public var payload: String { ["v2", send.rawValue, token, code ?? ""].joined(separator: "\n") }

    public init?(payload: String) {
        let parts = payload.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if parts.count == 1 {
            self.init(token: payload, code: nil, send: .link)
            return
        }
        guard parts.count == 4, parts[0] == "v2", let send = SendMode(rawValue: parts[1]) else { return nil }
        self.init(token: parts[2], code: parts[3].isEmpty ? nil : parts[3], send: send)
        if send.sendsCode != (code != nil) { return nil }
    }
}
