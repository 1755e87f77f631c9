import ExtrasBase64
import Crypto

/// A bearer secret (login token or session id): 32 CSPRNG bytes written as unpadded base64url.
/// Only `hash` is ever stored; the text goes to the user and nowhere else.
public struct Secret: Sendable {
    public static let byteCount = 32
    public static let textLength = 43

    public let text: String

    public static func generate(using random: some RandomSource) -> Secret {
        Secret(text: Base64URL.encode(random.bytes(byteCount)))
    }

    /// SHA-256 of the secret's text. This is the only form the database sees.
    public var hash: [UInt8] { Secret.hash(of: text) }

    /// Every `session` call hashes its secret: the text's own bytes go to SHA-256, with no copy
    /// into an array first, and the digest comes out through its bytes, not as a sequence.
    public static func hash(of text: String) -> [UInt8] {
        var text = text
        var hasher = SHA256()
        text.withUTF8 { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }
        return hasher.finalize().withUnsafeBytes { Array($0) }
    }

    /// Whether `text` has the shape of a secret we issue, so obviously mangled input never reaches the database.
    public static func isWellFormed(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { isWellFormed(UnsafeRawBufferPointer($0)) }
    }

    /// The same for a secret's UTF-8 bytes (the request line's own, on the cached `session` path).
    public static func isWellFormed(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count == textLength else { return false }
        // Without a branch per byte: the text is random, so which range each byte falls in was
        // a mispredicted branch per byte or so (a few percent of a cached `session`).
        return Base64URL.outsideAlphabet.withUnsafeBufferPointer { outsideAlphabet in
            var outside: UInt8 = 0
            for byte in bytes { outside |= outsideAlphabet[Int(byte)] }
            return outside == 0
        }
    }

    /// A short, non-reversible correlation handle for logs (first 8 hex digits of the hash).
    public static func logHandle(of text: String) -> String {
        hex(hash(of: text).prefix(4))
    }
}

/// A secret's SHA-256 as four words: what the session cache looks sessions up by, made from the
/// text's bytes with no array on the way (the cached `session` path runs once per page view).
public struct SecretHash: Sendable, Equatable {
    public let words: (UInt64, UInt64, UInt64, UInt64)

    /// SHA-256 of a secret's text, as `Secret.hash(of:)` gives it in bytes.
    public init(ofText bytes: UnsafeRawBufferPointer) {
        var hasher = SHA256()
        hasher.update(bufferPointer: bytes)
        words = hasher.finalize().withUnsafeBytes(Self.words(of:))
    }

    /// A hash in bytes (32 of them, else nil).
    public init?(_ hash: [UInt8]) {
        guard hash.count == 32 else { return nil }
        words = hash.withUnsafeBytes(Self.words(of:))
    }

    public var bytes: [UInt8] { withUnsafeBytes(of: words) { Array($0) } }

    private static func words(of raw: UnsafeRawBufferPointer) -> (UInt64, UInt64, UInt64, UInt64) {
        (raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self), raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
         raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self), raw.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
    }

    public static func == (a: SecretHash, b: SecretHash) -> Bool { a.words == b.words }
}

/// Lower-case hexadecimal of bytes.
public func hex(_ bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 0x0F)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// Unpadded base64url (RFC 4648 section 5): the form of every secret we hand out.
public enum Base64URL {
    public static func encode(_ bytes: [UInt8]) -> String {
        Base64.encodeToString(bytes: bytes, options: [.base64UrlAlphabet, .omitPaddingCharacter])
    }

    /// 1 for each byte value outside the alphabet, 0 for those in it.
    static let outsideAlphabet: [UInt8] = (0...255).map { isAlphabetByte(UInt8($0)) ? 0 : 1 }

    static func isAlphabetByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
            return true
        default:
            return false
        }
    }
}
