import XCTest
@testable import MagicLinkCore

final class IPAddressTests: XCTestCase {
    func testIPv4() {
        let cases: [(String, String)] = [
            ("192.0.2.1", "192.0.2.1"),
            ("0.0.0.0", "0.0.0.0"),
            ("127.0.0.1", "127.0.0.1"),
            ("255.255.255.255", "255.255.255.255"),
            ("10.20.30.40", "10.20.30.40"),
        ]
        for (input, key) in cases {
            XCTAssertEqual(IPAddress.rateLimitKey(input), key, input)
        }
    }

    func testIPv4MappedIPv6CountsAsIPv4() {
        let cases: [(String, String)] = [
            ("::ffff:192.0.2.1", "192.0.2.1"),
            ("::FFFF:192.0.2.1", "192.0.2.1"),
            ("::ffff:c000:201", "192.0.2.1"),
            ("0:0:0:0:0:ffff:192.0.2.1", "192.0.2.1"),
            ("0000:0000:0000:0000:0000:FFFF:C000:0201", "192.0.2.1"),
            ("::ffff:0.0.0.0", "0.0.0.0"),
        ]
        for (input, key) in cases {
            XCTAssertEqual(IPAddress.rateLimitKey(input), key, input)
        }
    }

    func testIPv6ByPrefix() {
        let cases: [(String, String)] = [
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
            ("2001:db8:1:2::", "2001:db8:1:2::/64"),
            ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
            ("2001:0DB8:0001:0002:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
            ("2001:DB8:1:2:A:B:C:D", "2001:db8:1:2::/64"),
            ("2001:db8::1", "2001:db8::/64"),
            ("2001:db8:0:0:1::", "2001:db8::/64"),
            ("2001:0:0:1::5", "2001:0:0:1::/64"),
            ("0:0:0:1::", "0:0:0:1::/64"),
            ("0:0:1:0::", "0:0:1::/64"),
            ("1::", "1::/64"),
            ("::1", "::/64"),
            ("::", "::/64"),
            ("fe80::1", "fe80::/64"),
            ("fe80::1:2:3:4", "fe80::/64"),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff::/64"),
            ("2001:db8:abcd:12::1.2.3.4", "2001:db8:abcd:12::/64"),
            ("::1.2.3.4", "::/64"),  // IPv4-compatible (deprecated): not mapped, so by prefix
            ("64:ff9b::192.0.2.1", "64:ff9b::/64"),
        ]
        for (input, key) in cases {
            XCTAssertEqual(IPAddress.rateLimitKey(input), key, input)
        }
    }

    func testSameSlash64SharesAKey() {
        let a = IPAddress.rateLimitKey("2001:db8:aaaa:bbbb:1:2:3:4")
        let b = IPAddress.rateLimitKey("2001:0db8:AAAA:BBBB:ffff::")
        let c = IPAddress.rateLimitKey("2001:db8:aaaa:bbbc::1")
        XCTAssertNotNil(a)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
    }

    func testRefused() {
        let refused: [(String, String)] = [
            ("", "empty"),
            ("1.2.3", "three parts"),
            ("1.2.3.4.5", "five parts"),
            ("256.1.1.1", "octet too large"),
            ("1.2.3.-4", "negative"),
            ("01.2.3.4", "leading zero"),
            ("0x7f.0.0.1", "hex"),
            ("127.1", "short form"),
            ("2130706433", "integer form"),
            ("1.2.3.4:80", "port"),
            ("1.2.3.4/24", "prefix length"),
            ("[::1]", "brackets"),
            ("[::1]:80", "brackets and port"),
            ("[2001:db8::1]", "brackets"),
            ("fe80::1%eth0", "zone id"),
            ("fe80::1%1", "numeric zone id"),
            ("fe80::1%25eth0", "URL-encoded zone id"),
            ("2001:db8::/64", "prefix"),
            ("2001:db8::1::2", "two ::"),
            ("1:2:3:4:5:6:7:8:9", "nine groups"),
            ("1:2:3:4:5:6:7", "seven groups"),
            ("12345::1", "group too long"),
            ("::g", "not hex"),
            (":::", "triple colon"),
            (" 1.2.3.4", "leading space"),
            ("1.2.3.4 ", "trailing space"),
            ("1.2.3.4\n", "newline"),
            ("1.2.3.4\u{0}", "NUL"),
            ("1.2.3.4\u{0}junk", "NUL then junk (C string would stop at NUL)"),
            ("::1\u{0}", "NUL"),
            ("localhost", "hostname"),
            ("example.com", "hostname"),
            ("１.２.３.４", "fullwidth digits"),
            ("1\u{FF0E}2.3.4", "fullwidth dot"),
            ("::ffff:1.2.3", "mapped with three parts"),
            ("::ffff:256.1.1.1", "mapped with a bad octet"),
            (String(repeating: "0", count: 65), "longer than 64 bytes"),
            ("0000:0000:0000:0000:0000:0000:0000:0001" + String(repeating: "0", count: 30), "longer than 64"),
        ]
        for (input, why) in refused {
            XCTAssertNil(IPAddress.rateLimitKey(input), "\(input.debugDescription): \(why)")
            XCTAssertFalse(IPAddress.isAddress(input), "\(input.debugDescription): \(why)")
        }
    }

    /// `isAddress` (the cached session path) agrees with `rateLimitKey` (the database path).
    func testIsAddressAgreesWithRateLimitKey() {
        let accepted = ["192.0.2.1", "0.0.0.0", "255.255.255.255", "::1", "::", "::ffff:192.0.2.1", "2001:db8::1",
                        "2001:0DB8:AAAA:BBBB:1:2:3:4", "0000:0000:0000:0000:0000:ffff:255.255.255.255", "fe80::1"]
        for input in accepted {
            XCTAssertNotNil(IPAddress.rateLimitKey(input), input)
            XCTAssertTrue(IPAddress.isAddress(input), input)
        }
    }

    func testLengthGuard() {
        // 64 bytes is the limit; the longest real text forms are far shorter.
        let longest = "0000:0000:0000:0000:0000:ffff:255.255.255.255"
        XCTAssertEqual(IPAddress.rateLimitKey(longest), "255.255.255.255")
        XCTAssertLessThanOrEqual(longest.utf8.count, IPAddress.maxTextBytes)
    }
}
