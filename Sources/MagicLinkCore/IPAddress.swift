// Client IP → rate-limit key: Protocol/README.md section 6.3 ("IPv6 addresses count per /64").
// Parsing is the C library's inet_pton; formatting is done here so keys are the same everywhere.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The key a client IP is rate-limited under: IPv4 as dotted quad; IPv6 by its /64 prefix; nil when not an IP address.
public enum IPAddress {
    /// Longer strings are refused without parsing (the longest IPv6 text form is 45 bytes).
    public static let maxTextBytes = 64

    /// - IPv4 ("192.0.2.1", dotted quad, as inet_pton takes it: four decimal parts, no leading
    ///   zeros) → the dotted quad, e.g. "192.0.2.1".
    /// - IPv4-mapped IPv6 ("::ffff:192.0.2.1") → the IPv4 key.
    /// - Other IPv6 → its /64 prefix in RFC 5952 form plus "/64", e.g. "2001:db8:1:2::/64".
    /// - Anything else → nil: empty, longer than 64 bytes, zone ids ("fe80::1%eth0"), brackets,
    ///   ports, whitespace, NUL, hostnames.
    public static func rateLimitKey(_ text: String) -> String? {
        guard hasAddressShape(text) else { return nil }
        if let v4 = parse(text, family: AF_INET, byteCount: 4) {
            return ipv4Key(v4[...])
        }
        guard let v6 = parse(text, family: AF_INET6, byteCount: 16) else { return nil }

        // ::ffff:a.b.c.d (IPv4-mapped): the client is an IPv4 one.
        if v6[0..<10].allSatisfy({ $0 == 0 }), v6[10] == 0xFF, v6[11] == 0xFF {
            return ipv4Key(v6[12..<16])
        }
        return ipv6PrefixKey(v6)
    }

    /// Whether `rateLimitKey(text)` gives a key, without making one or allocating (the cached
    /// `session` path checks its `ip` on the event loop).
    public static func isAddress(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { isAddress(UnsafeRawBufferPointer($0)) }
    }

    /// The same for the text's UTF-8 bytes (the request line's own, on the cached `session` path).
    public static func isAddress(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard hasAddressShape(bytes) else { return false }
        // inet_pton wants a C string: the bytes plus a NUL, on the stack.
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: maxTextBytes + 1) { cString in
            let raw = UnsafeMutableRawBufferPointer(cString)
            raw.copyMemory(from: bytes)
            raw[bytes.count] = 0
            var buffer: (UInt64, UInt64) = (0, 0)
            return withUnsafeMutableBytes(of: &buffer) { address in
                inet_pton(AF_INET, cString.baseAddress, address.baseAddress) == 1
                    || inet_pton(AF_INET6, cString.baseAddress, address.baseAddress) == 1
            }
        }
    }

    /// Not empty, not too long, only the characters of IPv4/IPv6 text forms. This also refuses
    /// NUL, which would end the C string early ("1.2.3.4\0junk"), and "%", "[", "]", "/",
    /// whitespace.
    private static func hasAddressShape(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { hasAddressShape(UnsafeRawBufferPointer($0)) }
    }

    private static func hasAddressShape(_ utf8: UnsafeRawBufferPointer) -> Bool {
        guard !utf8.isEmpty, utf8.count <= maxTextBytes else { return false }
        return utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"),
                 UInt8(ascii: "A")...UInt8(ascii: "F"), UInt8(ascii: "."), UInt8(ascii: ":"):
                return true
            default:
                return false
            }
        }
    }

    private static func parse(_ text: String, family: Int32, byteCount: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: byteCount)
        let result = text.withCString { cString in
            bytes.withUnsafeMutableBytes { buffer in
                inet_pton(family, cString, buffer.baseAddress)
            }
        }
        return result == 1 ? bytes : nil
    }

    private static func ipv4Key(_ bytes: ArraySlice<UInt8>) -> String {
        bytes.map { String($0) }.joined(separator: ".")
    }

    /// The first 64 bits as RFC 5952 text with the zero host part compressed, plus "/64".
    /// With groups 4–7 zero, the longest run of zero groups is always the trailing one (it has at
    /// least 4 groups, any other run at most 3, and a run reaching group 3 joins it), so the
    /// canonical form is: the first four groups minus their trailing zero groups, then "::".
    private static func ipv6PrefixKey(_ bytes: [UInt8]) -> String {
        var groups: [UInt16] = (0..<4).map { UInt16(bytes[2 * $0]) << 8 | UInt16(bytes[2 * $0 + 1]) }
        while groups.last == 0 { groups.removeLast() }
        let head = groups.map { String($0, radix: 16) }.joined(separator: ":")
        return head + "::/64"
    }
}
