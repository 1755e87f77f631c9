import XCTest
@testable import MagicLinkCore

final class RedirectPolicyTests: XCTestCase {
    private func policy(_ origins: [String], file: StaticString = #filePath, line: UInt = #line) -> RedirectPolicy {
        do {
            return try RedirectPolicy(allowedOrigins: origins)
        } catch {
            XCTFail("origins \(origins) refused: \(error.reason)", file: file, line: line)
            return try! RedirectPolicy(allowedOrigins: [])
        }
    }

    private func assertAllowed(
        _ policy: RedirectPolicy, _ redirect: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        do {
            let result = try policy.check(redirect)
            XCTAssertEqual(result, redirect, "returned unchanged", file: file, line: line)
        } catch {
            XCTFail("\(redirect.debugDescription) refused: \(error.reason)", file: file, line: line)
        }
    }

    private func assertRefused(
        _ policy: RedirectPolicy, _ redirect: String, _ why: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        do {
            _ = try policy.check(redirect)
            XCTFail("\(redirect.debugDescription) allowed (\(why))", file: file, line: line)
        } catch {
            XCTAssertFalse(error.reason.isEmpty, file: file, line: line)
        }
    }

    // MARK: - Configuration

    func testOriginsAreNormalized() throws {
        let cases: [(String, String)] = [
            ("https://app.example.com", "https://app.example.com"),
            ("https://app.example.com/", "https://app.example.com"),
            ("HTTPS://App.Example.COM", "https://app.example.com"),
            ("https://app.example.com:443", "https://app.example.com"),
            ("https://app.example.com:443/", "https://app.example.com"),
            ("http://app.example.com:80", "http://app.example.com"),
            ("http://localhost:8080", "http://localhost:8080"),
            ("http://LOCALHOST:8080/", "http://localhost:8080"),
            ("https://app.example.com:80", "https://app.example.com:80"),
            ("http://app.example.com:443", "http://app.example.com:443"),
            ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("https://xn--bcher-kva.de", "https://xn--bcher-kva.de"),
        ]
        for (input, normalized) in cases {
            XCTAssertEqual(try RedirectPolicy(allowedOrigins: [input]).allowedOrigins, [normalized], input)
        }
    }

    func testOriginListKeepsOrderAndDropsDuplicates() throws {
        let p = try RedirectPolicy(allowedOrigins: [
            "https://b.example.com", "https://a.example.com/", "HTTPS://B.EXAMPLE.COM:443", "http://localhost:8080",
        ])
        XCTAssertEqual(p.allowedOrigins, ["https://b.example.com", "https://a.example.com", "http://localhost:8080"])
        XCTAssertEqual(try RedirectPolicy(allowedOrigins: []).allowedOrigins, [])
    }

    func testBadOriginsAreRefusedNamingTheEntry() {
        let bad = [
            "",
            "app.example.com",
            "//app.example.com",
            "ftp://app.example.com",
            "javascript://app.example.com",
            "https://",
            "https:///",
            "https://app.example.com/path",
            "https://app.example.com//",
            "https://app.example.com?",
            "https://app.example.com?x=1",
            "https://app.example.com#",
            "https://app.example.com/#x",
            "https://user@app.example.com",
            "https://user:pw@app.example.com",
            "https://app.example.com:",
            "https://app.example.com:0",
            "https://app.example.com:65536",
            "https://app.example.com:99999",
            "https://app.example.com:-1",
            "https://app.example.com:8o",
            "https://app.example.com:+80",
            "https://bücher.de",
            "https://аpp.example.com",
            "https://app.exa mple.com",
            " https://app.example.com",
            "https://app.example.com ",
            "https://app.example.com\n",
            "https:\\\\app.example.com",
            "https://app%2eexample.com",
            "https://app_example.com",
            "http://[::1",
            "http://[]:80",
            "http://[::1]x",
            "http://[v1.fe80::a+en1]",
        ]
        for entry in bad {
            do {
                let p = try RedirectPolicy(allowedOrigins: ["https://ok.example.com", entry])
                XCTFail("\(entry.debugDescription) accepted as \(p.allowedOrigins)")
            } catch {
                XCTAssertTrue(error.reason.contains("allowed origin"), error.reason)
                let shown = RedirectPolicy.printable(entry)
                XCTAssertTrue(error.reason.contains("\"\(shown)\""), "\(error.reason) names \(shown)")
            }
        }
    }

    // MARK: - Paths

    func testPaths() {
        let p = policy(["https://app.example.com"])
        for allowed in [
            "/", "/account", "/ok?x=1#y", "/a/b/c?d=e&f=g#h", "/%2F%2Fevil.com", "/%5Cevil.com",
            "/a//b", "/a:b", "/a@b", "/.well-known/x", "/..//evil.com", "/ünïcode", "/?next=//evil.com",
            "/#//evil.com", "/" + String(repeating: "a", count: 2047),
        ] {
            assertAllowed(p, allowed)
        }
        let refused: [(String, String)] = [
            ("", "empty"),
            ("//evil.com", "protocol-relative"),
            ("//", "protocol-relative"),
            ("///evil.com", "protocol-relative"),
            ("/\\evil.com", "slash backslash"),
            ("\\\\evil.com", "double backslash"),
            ("\\/evil.com", "backslash slash"),
            ("/a\\b", "backslash anywhere"),
            ("/path with space", "space"),
            ("/a\tb", "tab"),
            ("/a\nb", "LF"),
            ("/a\rb", "CR"),
            ("/\t/evil.com", "tab that browsers strip, giving //evil.com"),
            ("/\n/evil.com", "LF that browsers strip"),
            ("/a\u{0}b", "NUL"),
            ("/a\u{7F}", "DEL"),
            ("/a\u{85}", "NEL"),
            ("/a\u{A0}b", "no-break space"),
            ("/a\u{2028}b", "line separator"),
            ("/a\u{2029}b", "paragraph separator"),
            ("/a\u{3000}b", "ideographic space"),
            ("/a\u{202E}b", "RTL override"),
            ("/a\u{200B}b", "zero-width space"),
            ("/a\u{FEFF}b", "BOM"),
            (" /a", "leading space"),
            ("/a ", "trailing space"),
            ("account", "relative path"),
            ("./account", "relative path"),
            ("../account", "relative path"),
            ("?x=1", "query only"),
            ("#x", "fragment only"),
            ("/" + String(repeating: "a", count: 2048), "2049 bytes"),
            ("/" + String(repeating: "é", count: 1024), "2049 bytes of UTF-8"),
        ]
        for (redirect, why) in refused {
            assertRefused(p, redirect, why)
        }
    }

    func testLengthLimitIsInBytes() {
        let p = policy(["https://app.example.com"])
        let max = "/" + String(repeating: "a", count: 2047)
        XCTAssertEqual(max.utf8.count, 2048)
        assertAllowed(p, max)
        XCTAssertEqual((max + "a").utf8.count, 2049)
        assertRefused(p, max + "a", "2049 bytes")
        let url = "https://app.example.com/" + String(repeating: "a", count: 2048 - 24)
        XCTAssertEqual(url.utf8.count, 2048)
        assertAllowed(p, url)
        assertRefused(p, url + "a", "2049 bytes")
    }

    // MARK: - Absolute URLs

    func testAbsoluteURLsOnAnAllowedOrigin() {
        let p = policy(["https://app.example.com"])
        for allowed in [
            "https://app.example.com",
            "https://app.example.com/",
            "https://app.example.com/x",
            "https://app.example.com/a?b=c#d",
            "https://app.example.com?x=1",
            "https://app.example.com#frag",
            "https://app.example.com#@evil.com",
            "https://app.example.com/?next=https://evil.com",
            "https://app.example.com:443/x",
            "https://app.example.com:0443/x",  // the number is 443: the same origin, as browsers read it
            "HTTPS://APP.EXAMPLE.COM/x",
            "HtTpS://App.Example.Com/x",
            "https://app.example.com/%2F%2Fevil.com",
            "https://app.example.com/ünïcode",
        ] {
            assertAllowed(p, allowed)
        }
    }

    func testAbsoluteURLsRefused() {
        let p = policy(["https://app.example.com"])
        let refused: [(String, String)] = [
            ("javascript:alert(1)", "javascript"),
            ("JavaScript:alert(1)", "javascript"),
            ("javascript://app.example.com/%0aalert(1)", "javascript with //"),
            ("data:text/html,<script>alert(1)</script>", "data"),
            ("data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", "data"),
            ("vbscript:msgbox(1)", "vbscript"),
            ("ftp://app.example.com/", "ftp"),
            ("file:///etc/passwd", "file"),
            ("https://evil.com", "other host"),
            ("https://evil.com/", "other host"),
            ("https://app.example.com.evil.com/x", "suffix host"),
            ("https://evil-app.example.com/x", "other host"),
            ("https://evilapp.example.com/x", "other host"),
            ("https://example.com/", "parent domain"),
            ("https://sub.app.example.com/", "subdomain"),
            ("https://app.example.com@evil.com/", "user info"),
            ("https://app.example.com:443@evil.com/", "user info"),
            ("https://user@app.example.com/", "user info on the right host"),
            ("https://user:pw@app.example.com/", "user info on the right host"),
            ("https://evil.com#@app.example.com", "fragment trick"),
            ("https://evil.com?@app.example.com", "query trick"),
            ("https://evil.com/@app.example.com", "path trick"),
            ("https://evil.com\\@app.example.com", "backslash trick"),
            ("https://app.example.com\\@evil.com", "backslash trick"),
            ("https:\\\\app.example.com", "backslashes"),
            ("https:/app.example.com/", "one slash"),
            ("https:app.example.com/", "no slashes"),
            ("https:///app.example.com/", "three slashes"),
            ("https://", "no host"),
            ("https://:443/", "no host"),
            ("http://app.example.com/", "http when only https is allowed"),
            ("https://app.example.com:444/", "other port"),
            ("https://app.example.com:80/", "other port"),
            ("https://app.example.com:/", "empty port"),
            ("https://app.example.com:0/", "port 0"),
            ("https://app.example.com:65536/", "port too large"),
            ("https://app.example.com:4430000000000000000000443/", "huge port"),
            ("https://app.example.com:44a/", "non-digit port"),
            ("https://app.example.com./", "trailing dot"),
            ("https://app.example.com%2eevil.com/", "percent-encoded host"),
            ("https://app%2Eexample.com/", "percent-encoded dot"),
            ("https://\u{0430}pp.example.com/", "Cyrillic a lookalike"),
            ("https://app.exаmple.com/", "Cyrillic a lookalike"),
            ("https://app.example.com\u{3002}/", "ideographic full stop"),
            ("https://ａｐｐ.example.com/", "fullwidth"),
            ("https://app.example.com\u{301}/", "combining mark on the host"),
            ("https://[::1]/", "IPv6 literal not allowed"),
            ("https://app.example.com /", "space"),
            ("https://app.example.com/\tx", "tab"),
            ("https://app.example.com/\nx", "newline"),
            ("\thttps://app.example.com/", "leading tab"),
            (" https://app.example.com/", "leading space"),
            ("https ://app.example.com/", "space in scheme"),
            ("htps://app.example.com/", "misspelt scheme"),
            ("https-://app.example.com/", "bad scheme"),
            ("://app.example.com/", "empty scheme"),
            ("app.example.com/x", "no scheme"),
            ("https://app.example.com/" + String(repeating: "a", count: 2025), "2049 bytes"),
        ]
        for (redirect, why) in refused {
            assertRefused(p, redirect, why)
        }
    }

    func testPortsAndSchemesMustMatchExactly() {
        let p = policy(["http://localhost:8080", "https://app.example.com:8443", "http://[::1]:3000"])
        assertAllowed(p, "http://localhost:8080/callback")
        assertAllowed(p, "http://LocalHost:8080")
        assertAllowed(p, "https://app.example.com:8443/x")
        assertAllowed(p, "http://[::1]:3000/x")
        assertAllowed(p, "/")
        assertRefused(p, "http://localhost/callback", "default port")
        assertRefused(p, "http://localhost:8081/", "other port")
        assertRefused(p, "https://localhost:8080/", "other scheme")
        assertRefused(p, "https://app.example.com/x", "default port, 8443 configured")
        assertRefused(p, "http://app.example.com:8443/x", "http")
        assertRefused(p, "http://[::1]/x", "default port")
        assertRefused(p, "http://[0:0::1]:3000/x", "IPv6 spelt differently: compared as written")
        assertRefused(p, "http://127.0.0.1:8080/", "other host")
    }

    func testDefaultPortsAreEquivalent() {
        let https = policy(["https://app.example.com:443/"])
        assertAllowed(https, "https://app.example.com/x")
        assertAllowed(https, "https://app.example.com:443/x")
        let http = policy(["http://app.example.com"])
        assertAllowed(http, "http://app.example.com:80/x")
        assertRefused(http, "https://app.example.com/x", "https not configured")
        assertRefused(http, "http://app.example.com:443/x", "443 is not http's default")
    }

    func testWithoutOriginsOnlyPathsAreAllowed() {
        let p = policy([])
        assertAllowed(p, "/")
        assertAllowed(p, "/account?x=1")
        assertRefused(p, "https://app.example.com/", "no origins")
        assertRefused(p, "//app.example.com/", "protocol-relative")
    }
}
