import XCTest
@testable import MagicLinkCore

final class EmailAddressTests: XCTestCase {
    // MARK: - Helpers

    private func parse(_ input: String, file: StaticString = #filePath, line: UInt = #line) -> EmailAddress? {
        do {
            return try EmailAddress(parsing: input)
        } catch {
            XCTFail("\(input.debugDescription) refused: \(error.reason)", file: file, line: line)
            return nil
        }
    }

    private func assertRefused(
        _ input: String, _ why: String, reasonContains: String? = nil,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        do {
            let email = try EmailAddress(parsing: input)
            XCTFail("\(input.debugDescription) accepted as \(email.address.debugDescription) (\(why))",
                    file: file, line: line)
        } catch {
            if let reasonContains {
                XCTAssertTrue(error.reason.contains(reasonContains),
                              "\(input.debugDescription): reason \(error.reason.debugDescription) lacks \(reasonContains.debugDescription)",
                              file: file, line: line)
            }
        }
    }

    // MARK: - Accepted, with their canonical form

    /// (input, localPart, domain)
    static let accepted: [(String, String, String)] = [
        ("Alice@Example.COM", "Alice", "example.com"),
        ("alice@example.com", "alice", "example.com"),
        ("first.last+tag@sub.example.co.uk", "first.last+tag", "sub.example.co.uk"),
        ("!#$%&'*+-/=?^_`{|}~@example.com", "!#$%&'*+-/=?^_`{|}~", "example.com"),
        ("a@b.co", "a", "b.co"),
        ("a@123.example", "a", "123.example"),
        ("a@b.c0m", "a", "b.c0m"),
        ("a@ex-am--ple.com", "a", "ex-am--ple.com"),
        ("1@2.xn--p1ai", "1", "2.xn--p1ai"),
        // Internationalized domains: lower-cased, then punycoded.
        ("user@bücher.de", "user", "xn--bcher-kva.de"),
        ("user@BÜCHER.DE", "user", "xn--bcher-kva.de"),
        ("a@münchen.de", "a", "xn--mnchen-3ya.de"),
        ("a@例え.jp", "a", "xn--r8jz45g.jp"),
        ("用户@例子.广告", "用户", "xn--fsqu00a.xn--4rr70v"),
        ("пример@пример.рф", "пример", "xn--e1afmkfd.xn--p1ai"),
        ("a@ПРИМЕР.РФ", "a", "xn--e1afmkfd.xn--p1ai"),
        ("a@испытание.test", "a", "xn--80akhbyknj4f.test"),
        // The other dots IDNA separates labels on.
        ("a@例子\u{3002}广告", "a", "xn--fsqu00a.xn--4rr70v"),
        ("a@例子\u{FF0E}广告", "a", "xn--fsqu00a.xn--4rr70v"),
        ("a@例子\u{FF61}广告", "a", "xn--fsqu00a.xn--4rr70v"),
        ("a@example\u{3002}com", "a", "example.com"),
        // Labels already in A-label form: kept (lower-cased).
        ("a@xn--bcher-kva.de", "a", "xn--bcher-kva.de"),
        ("a@XN--BCHER-KVA.DE", "a", "xn--bcher-kva.de"),
        // Non-ASCII local parts (RFC 6531): letters, marks and digits, kept as typed.
        ("José.García@example.com", "José.García", "example.com"),
        ("Ünïcödé@example.com", "Ünïcödé", "example.com"),
        ("e\u{301}@example.com", "e\u{301}", "example.com"),
        ("user\u{0663}@example.com", "user\u{0663}", "example.com"),
        ("δοκιμή@παράδειγμα.δοκιμή", "δοκιμή", "xn--hxajbheg2az3al.xn--jxalpdlp"),
    ]

    /// The ASCII shortcuts answer as the Unicode properties do, for every ASCII code point.
    func testASCIIFastPathsAgreeWithUnicodeProperties() {
        for value in UInt32(0)...0x7F {
            let scalar = Unicode.Scalar(value)!
            XCTAssertEqual(EmailAddress.isWhitespace(scalar), EmailAddress.isWhitespaceByProperties(scalar), "U+\(String(value, radix: 16))")
            XCTAssertEqual(EmailAddress.isInvisibleOrUnassigned(scalar), EmailAddress.isInvisibleOrUnassignedByProperties(scalar),
                           "U+\(String(value, radix: 16))")
        }
    }

    func testAcceptedAddressesAndTheirCanonicalForm() {
        for (input, local, domain) in Self.accepted {
            guard let email = parse(input) else { continue }
            XCTAssertEqual(email.localPart, local, input)
            XCTAssertEqual(email.domain, domain, input)
            XCTAssertEqual(email.address, local + "@" + domain, input)
            XCTAssertTrue(email.domain.utf8.allSatisfy { $0 < 0x80 }, "domain is ASCII: \(input)")
            // The canonical form is a fixed point: parsing it again gives it back.
            XCTAssertEqual((try? EmailAddress(parsing: email.address))?.address, email.address, input)
        }
    }

    func testAliceExample() throws {
        let email = try EmailAddress(parsing: "Alice@Example.COM")
        XCTAssertEqual(email.localPart, "Alice")
        XCTAssertEqual(email.domain, "example.com")
        XCTAssertEqual(email.address, "Alice@example.com")
        XCTAssertEqual(email.matchKey, "alice@example.com")
    }

    func testIDNAddresses() throws {
        XCTAssertEqual(try EmailAddress(parsing: "user@bücher.de").address, "user@xn--bcher-kva.de")
        let chinese = try EmailAddress(parsing: "用户@例子.广告")
        XCTAssertEqual(chinese.localPart, "用户")
        XCTAssertEqual(chinese.domain, "xn--fsqu00a.xn--4rr70v")
        XCTAssertEqual(chinese.address, "用户@xn--fsqu00a.xn--4rr70v")
    }

    func testMatchKeyIsCaseInsensitive() throws {
        let keys = try ["Alice@Example.com", "alice@example.com", "ALICE@EXAMPLE.COM", "aLiCe@ExAmPlE.cOm"]
            .map { try EmailAddress(parsing: $0).matchKey }
        XCTAssertEqual(Set(keys), ["alice@example.com"])
        // Only ASCII folds: non-ASCII local parts match exactly as typed.
        XCTAssertEqual(try EmailAddress(parsing: "Ünïcödé@BÜCHER.de").matchKey, "Ünïcödé@xn--bcher-kva.de")
        XCTAssertEqual(try EmailAddress(parsing: "ÜnÏcödé@BÜCHER.de").matchKey, "ÜnÏcödé@xn--bcher-kva.de")
        // Case in the local part is kept in the canonical address, so these differ as values.
        XCTAssertNotEqual(try EmailAddress(parsing: "Alice@example.com"), try EmailAddress(parsing: "alice@example.com"))
        XCTAssertEqual(try EmailAddress(parsing: "Alice@EXAMPLE.com"), try EmailAddress(parsing: "Alice@example.COM"))
    }

    /// U+212A KELVIN SIGN lower-cases to ASCII "k": full case mapping would hand the account of
    /// kim@example.com to whoever receives mail at "\u{212A}im@example.com".
    func testLookalikesDoNotShareAnAccount() throws {
        let kelvin = try EmailAddress(parsing: "\u{212A}im@example.com")
        XCTAssertNotEqual(kelvin.matchKey, try EmailAddress(parsing: "kim@example.com").matchKey)
        let angstrom = try EmailAddress(parsing: "\u{212B}sa@example.com")
        XCTAssertNotEqual(angstrom.matchKey, try EmailAddress(parsing: "\u{E5}sa@example.com").matchKey)
        XCTAssertThrowsError(try EmailAddress(parsing: "kim@\u{212A}example.com"), "compatibility form in the domain is refused")
    }

    func testMaskedAndDescription() throws {
        let cases: [(String, String)] = [
            ("Alice@Example.COM", "A***@example.com"),
            ("a@example.com", "a***@example.com"),
            ("用户@例子.广告", "用***@xn--fsqu00a.xn--4rr70v"),
            ("e\u{301}x@example.com", "e\u{301}***@example.com"),
        ]
        for (input, masked) in cases {
            let email = try EmailAddress(parsing: input)
            XCTAssertEqual(email.masked, masked, input)
            XCTAssertEqual(email.description, masked, input)
            XCTAssertEqual("\(email)", masked, input)
            XCTAssertEqual(String(describing: email), masked, input)
        }
    }

    // MARK: - Length limits

    func testLocalPartLength() throws {
        let local64 = String(repeating: "a", count: 64)
        XCTAssertEqual(try EmailAddress(parsing: local64 + "@example.com").localPart, local64)
        assertRefused(String(repeating: "a", count: 65) + "@example.com", "local part 65 bytes",
                      reasonContains: "64 bytes")
        // Bytes, not characters: "é" is 2 bytes in UTF-8.
        let accents32 = String(repeating: "é", count: 32)
        XCTAssertNoThrow(try EmailAddress(parsing: accents32 + "@example.com"))
        assertRefused(accents32 + "a@example.com", "local part 65 bytes (UTF-8)")
        assertRefused(String(repeating: "é", count: 33) + "@example.com", "local part 66 bytes (UTF-8)")
    }

    func testTotalLength() throws {
        let local = String(repeating: "a", count: 64)
        let label63 = String(repeating: "b", count: 63)
        // 64 + 1 + (63 + 1 + 63 + 1 + 61) = 254
        let address254 = local + "@" + label63 + "." + label63 + "." + String(repeating: "c", count: 61)
        XCTAssertEqual(address254.utf8.count, 254)
        XCTAssertEqual(try EmailAddress(parsing: address254).address, address254)
        let address255 = local + "@" + label63 + "." + label63 + "." + String(repeating: "c", count: 62)
        XCTAssertEqual(address255.utf8.count, 255)
        assertRefused(address255, "255 bytes", reasonContains: "254 bytes")

        // After encoding: "例" is 3 bytes of UTF-8 but 7 once encoded ("xn--fsq").
        let cjk = { (n: Int) in local + "@" + label63 + "." + label63 + "." + Array(repeating: "例", count: n).joined(separator: ".") + ".com" }
        XCTAssertEqual(cjk(8).utf8.count, 228)
        assertRefused(cjk(8), "228 bytes as typed, 260 once punycoded", reasonContains: "254 bytes")
        let seven = try EmailAddress(parsing: cjk(7))
        XCTAssertEqual(seven.address.utf8.count, 252)
        XCTAssertTrue(seven.domain.hasSuffix(".xn--fsq.com"))

        // Oversized input is refused up front.
        assertRefused(String(repeating: "a", count: 5000) + "@example.com", "huge input")
    }

    func testLabelLength() throws {
        let label63 = String(repeating: "a", count: 63)
        XCTAssertEqual(try EmailAddress(parsing: "x@" + label63 + ".com").domain, label63 + ".com")
        assertRefused("x@" + label63 + "a.com", "64-byte label", reasonContains: "63 bytes")
        // Punycoded labels count after encoding: 57 × "ü" → 63 bytes, 58 → 64 bytes.
        let ok = String(repeating: "ü", count: 57)
        let encoded = try EmailAddress(parsing: "x@" + ok + ".de").domain
        XCTAssertEqual(encoded.split(separator: ".").first?.utf8.count, 63)
        assertRefused("x@" + String(repeating: "ü", count: 58) + ".de", "64 bytes once punycoded",
                      reasonContains: "63 bytes")
        assertRefused("x@" + String(repeating: "ü", count: 300) + ".de", "far too long")
    }

    // MARK: - Refused

    /// (input, why)
    static let refused: [(String, String)] = [
        ("", "empty"),
        ("a", "no @"),
        ("@", "empty local part and domain"),
        ("a@", "empty domain"),
        ("@example.com", "empty local part"),
        ("a@@example.com", "two @"),
        ("a@b@example.com", "two @"),
        ("a@example.com@", "two @"),
        // Header injection, control characters, NUL.
        ("a@b.com\r\nBcc: x@y.com", "CRLF injection"),
        ("a@b.com\nBcc: x@y.com", "LF injection"),
        ("a@b.com\r", "CR"),
        ("a\u{0}@b.com", "NUL"),
        ("a@b.com\u{0}", "trailing NUL"),
        ("a\u{1}@b.com", "C0"),
        ("a\u{1B}@b.com", "ESC"),
        ("a\u{7F}@b.com", "DEL"),
        ("a\u{80}@b.com", "C1"),
        ("a\u{85}@b.com", "NEL (C1)"),
        ("a\u{9F}@b.com", "C1"),
        // Whitespace of any kind.
        (" a@b.com", "leading space"),
        ("a@b.com ", "trailing space"),
        ("a b@c.com", "space in local part"),
        ("a@b .com", "space in domain"),
        ("a\tb@c.com", "tab"),
        ("a\u{A0}b@c.com", "no-break space"),
        ("a\u{2003}b@c.com", "em space"),
        ("a\u{3000}b@c.com", "ideographic space"),
        ("a\u{2028}b@c.com", "line separator"),
        ("a\u{2029}b@c.com", "paragraph separator"),
        ("a@例子\u{3000}.广告", "ideographic space in domain"),
        // Format and invisible characters.
        ("a\u{202E}b@c.com", "right-to-left override"),
        ("ab@c\u{202E}moc.com", "right-to-left override in domain"),
        ("a\u{200B}b@c.com", "zero-width space"),
        ("a\u{200D}b@c.com", "zero-width joiner"),
        ("a\u{FEFF}b@c.com", "byte order mark"),
        ("a\u{AD}b@c.com", "soft hyphen"),
        ("a\u{E000}b@c.com", "private use"),
        ("a@ex\u{200B}ample.com", "zero-width space in domain"),
        // RFC 5322 syntax we do not take: display names, angle brackets, comments, quotes, lists, groups.
        ("<a@b.com>", "angle brackets"),
        ("Bob <bob@x.com>", "display name"),
        ("Bob<bob@x.com>", "display name without space"),
        ("\"Bob\" <bob@x.com>", "quoted display name"),
        ("a(comment)@b.com", "comment"),
        ("a@b.com(comment)", "comment after domain"),
        ("a@b.com (Bob)", "comment"),
        ("\"a\"@b.com", "quoted local part"),
        ("\"a b\"@b.com", "quoted local part with space"),
        ("\"a@b\"@c.com", "quoted local part with @"),
        ("a\\@b@c.com", "quoted-pair"),
        ("a@b.com, c@d.com", "list"),
        ("a@b.com,c@d.com", "list"),
        ("a@b.com;c@d.com", "list with semicolon"),
        ("a@b.com;", "trailing semicolon"),
        ("friends: a@b.com;", "group"),
        ("undisclosed-recipients:;", "empty group"),
        ("mailto:a@b.com", "mailto URI"),
        // Local part.
        ("a..b@c.com", "doubled dot"),
        (".a@b.com", "leading dot"),
        ("a.@b.com", "trailing dot"),
        (".@b.com", "only a dot"),
        ("a€@b.com", "currency symbol"),
        ("a😀@b.com", "emoji"),
        ("a·b@c.com", "middle dot (punctuation)"),
        ("a«b@c.com", "guillemet"),
        ("a＠b.com", "fullwidth at sign: no @"),
        // Domain structure.
        ("a@b", "one label"),
        ("a@localhost", "one label"),
        ("a@b.123", "all-digit top-level label"),
        ("a@1.2.3.4", "dotted quad (all-digit top-level label)"),
        ("a@[127.0.0.1]", "IP literal"),
        ("a@[IPv6:2001:db8::1]", "IPv6 literal"),
        ("a@b.com.", "trailing dot (FQDN)"),
        ("a@.b.com", "leading dot"),
        ("a@b..com", "doubled dot"),
        ("a@.", "only a dot"),
        ("a@例子\u{3002}", "trailing ideographic full stop"),
        ("a@-b.com", "label starts with hyphen"),
        ("a@b-.com", "label ends with hyphen"),
        ("a@b.-com", "TLD starts with hyphen"),
        ("a@b.com-", "TLD ends with hyphen"),
        ("a@b_c.com", "underscore"),
        ("a@b!c.com", "atext in domain"),
        ("a@b.com:25", "port"),
        ("a@b/c.com", "slash"),
        ("a@b%c.com", "percent"),
        ("a@b😀.com", "emoji in domain"),
        ("a@b€.com", "symbol in domain"),
        ("a@ｅｘａｍｐｌｅ.com", "fullwidth letters"),
        ("a@\u{301}b.com", "label starts with a combining mark"),
        ("a@ab--ü.com", "hyphens in positions 3 and 4 of a Unicode label"),
        ("a@-ü.com", "Unicode label starts with hyphen"),
        ("a@ü-.com", "Unicode label ends with hyphen"),
        ("a@ü①.com", "circled digit (not a decimal digit)"),
        // A-labels that are not valid punycode of a valid label.
        ("a@xn--.com", "empty punycode"),
        ("a@xn--b.com", "truncated punycode"),
        ("a@xn--999999999999.com", "overflowing punycode"),
        ("a@xn--abc-.com", "decodes to ASCII only"),
        ("a@xn--a.com", "decodes to a control character"),
        ("a@xn--0000h.com", "decodes beyond U+10FFFF"),
        ("a@xn--e28h.com", "decodes to an emoji"),
        ("a@xn--bcher-kva.xn--e28h", "top-level decodes to an emoji"),
        ("a@xn--BCHER-KVA-.com", "trailing hyphen"),
    ]

    func testRefusedAddresses() {
        for (input, why) in Self.refused {
            assertRefused(input, why)
        }
    }

    func testSpecificReasons() {
        assertRefused("", "empty", reasonContains: "empty")
        assertRefused("a@b", "one label", reasonContains: "two labels")
        assertRefused("a@b.123", "numeric TLD", reasonContains: "all digits")
        assertRefused("a@b.com\r\nBcc: x@y.com", "CRLF", reasonContains: "control character")
        assertRefused("a\u{0}@b.com", "NUL", reasonContains: "control character")
        assertRefused("<a@b.com>", "angle brackets", reasonContains: "angle brackets")
        assertRefused("a@b.com, c@d.com", "list", reasonContains: "lists")
        assertRefused("\"a\"@b.com", "quoted", reasonContains: "quoted")
        assertRefused("a..b@c.com", "doubled dot", reasonContains: "two dots")
        assertRefused(".a@b.com", "leading dot", reasonContains: "starts or ends with a dot")
        assertRefused("a@-b.com", "hyphen", reasonContains: "hyphen")
        assertRefused("a@b-.com", "hyphen", reasonContains: "hyphen")
        assertRefused("a@[127.0.0.1]", "IP literal", reasonContains: "IP address literals")
        assertRefused("a@b.com.", "trailing dot", reasonContains: "empty label")
        assertRefused("a\u{202E}b@c.com", "RLO", reasonContains: "format")
        assertRefused("a b@c.com", "space", reasonContains: "whitespace")
        assertRefused("a@b@c.com", "two @", reasonContains: "more than one @")
        assertRefused("a@xn--b.com", "bad A-label", reasonContains: "xn--")
    }

    func testErrorsNeverRepeatTheAddress() {
        for input in ["secret.person@b", "secret.person@b.123", "secret.person@@b.com", "secret..person@b.com"] {
            do {
                _ = try EmailAddress(parsing: input)
                XCTFail("accepted \(input)")
            } catch {
                XCTAssertFalse(error.reason.contains("secret"), error.reason)
                XCTAssertFalse(error.description.contains("secret"), error.description)
                XCTAssertTrue(error.description.contains(error.reason))
            }
        }
    }

    func testHashableAndSendable() throws {
        let a = try EmailAddress(parsing: "user@bücher.de")
        let b = try EmailAddress(parsing: "user@xn--bcher-kva.de")
        XCTAssertEqual(a, b)
        XCTAssertEqual(Set([a, b]).count, 1)
        let sendable: any Sendable = a
        XCTAssertNotNil(sendable)
    }
}
