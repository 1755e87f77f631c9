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
