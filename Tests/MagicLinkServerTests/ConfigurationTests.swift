import Foundation
@testable import MagicLinkServer
import XCTest

final class ConfigurationTests: XCTestCase {
    func testDefaultsAreTheDocumentedOnes() throws {
        let c = try Configuration.load(file: nil, environment: [:])
        XCTAssertEqual(c.socket, "./magiclinkd.sock")
        XCTAssertEqual(c.socketMode, 0o660)
        XCTAssertEqual(c.database, "./magiclinkd.sqlite")
        XCTAssertEqual(c.effectiveKeyFile, "./magiclinkd.sqlite.key")
        XCTAssertEqual(c.outboxDir, "./outbox")
        XCTAssertEqual(c.callbackURL, "http://localhost:8080/auth/callback")
        XCTAssertEqual(c.mailTransport, .outbox)
        XCTAssertEqual(c.tokenTTL, 600)
        XCTAssertEqual(c.sessionTTL, 2_592_000)
        XCTAssertEqual(c.sessionIdleTTL, 604_800)
        XCTAssertEqual(c.maxLineBytes, 65_536)
        XCTAssertEqual(c.rateLimitIPMax, 50)
        XCTAssertEqual(c.rateLimitEmailMax, 5)
        XCTAssertTrue(c.explicitKeys.isEmpty)
    }

    func testEnvironmentOverridesFile() throws {
        let file = try temporaryFile("""
            # comments are fine
            token_ttl: 10m
            socket: /run/magiclinkd/file.sock
            allowed_redirect_origins:
              - https://app.example.com
              - http://localhost:8080
            socket_mode: "0600"
            """)
        let c = try Configuration.load(file: file, environment: ["MAGICLINKD_SOCKET": "/tmp/env.sock", "MAGICLINKD_SESSION_TTL": "2d"])
        XCTAssertEqual(c.tokenTTL, 600)
        XCTAssertEqual(c.socket, "/tmp/env.sock")
        XCTAssertEqual(c.sessionTTL, 172_800)
        XCTAssertEqual(c.socketMode, 0o600)
        XCTAssertEqual(c.allowedRedirectOrigins, ["https://app.example.com", "http://localhost:8080"])
        XCTAssertTrue(c.explicitKeys.isSuperset(of: ["socket", "token_ttl", "session_ttl"]))
    }

    func testCommaSeparatedOriginsFromEnvironment() throws {
        let c = try Configuration.load(file: nil, environment: ["MAGICLINKD_ALLOWED_REDIRECT_ORIGINS": "https://a.example, https://b.example"])
        XCTAssertEqual(c.allowedRedirectOrigins, ["https://a.example", "https://b.example"])
    }

    func testBadValuesNameTheirKey() throws {
        let cases: [(String, String, String)] = [
            ("MAGICLINKD_TOKEN_TTL", "abc", "token_ttl"),
            ("MAGICLINKD_TOKEN_TTL", "0", "token_ttl"),
            ("MAGICLINKD_SOCKET_MODE", "777x", "socket_mode"),
            ("MAGICLINKD_SOCKET_MODE", "0066", "socket_mode"),
            ("MAGICLINKD_MAIL_TRANSPORT", "carrier-pigeon", "mail_transport"),
            ("MAGICLINKD_CALLBACK_URL", "ftp://x.example/cb", "callback_url"),
            ("MAGICLINKD_CALLBACK_URL", "https://x.example/cb#frag", "callback_url"),
            ("MAGICLINKD_CALLBACK_URL", "https://user@x.example/cb", "callback_url"),
            ("MAGICLINKD_ALLOWED_REDIRECT_ORIGINS", "https://x.example/path", "allowed_redirect_origins"),
            ("MAGICLINKD_MAIL_FROM", "not an address", "mail_from"),
            ("MAGICLINKD_MAX_LINE_BYTES", "10", "max_line_bytes"),
            ("MAGICLINKD_LOG_LEVEL", "loud", "log_level"),
        ]
        for (name, value, key) in cases {
            XCTAssertThrowsError(try Configuration.load(file: nil, environment: [name: value]), "\(name)=\(value)") { error in
                let error = error as? ConfigurationError
                XCTAssertEqual(error?.key, key, "\(name)=\(value)")
                XCTAssertTrue(error?.description.contains(name) ?? false, "\(error?.description ?? "")")
            }
        }
    }

    func testUnknownFileKeyIsNamed() throws {
        let file = try temporaryFile("tokn_ttl: 60\n")
        XCTAssertThrowsError(try Configuration.load(file: file, environment: [:])) { error in
            XCTAssertEqual((error as? ConfigurationError)?.key, "tokn_ttl")
        }
        XCTAssertThrowsError(try Configuration.load(file: "/nonexistent/magiclinkd.yaml", environment: [:]))
        XCTAssertThrowsError(try Configuration.load(file: try temporaryFile("- a\n- b\n"), environment: [:]))
        XCTAssertNoThrow(try Configuration.load(file: try temporaryFile("# nothing set\n"), environment: [:]))
    }

    func testUnknownEnvironmentNamesAreReported() {
        XCTAssertEqual(Configuration.unknownEnvironmentNames(["MAGICLINKD_TOKN_TTL": "1", "MAGICLINKD_SOCKET": "x", "PATH": "/bin"]),
                       ["MAGICLINKD_TOKN_TTL"])
    }

    func testPolicyCarriesSettings() throws {
        let c = try Configuration.load(file: nil, environment: [
            "MAGICLINKD_MAIL_FROM": "Shop <login@shop.example>",
            "MAGICLINKD_RATE_LIMIT_IP_MAX": "7", "MAGICLINKD_RATE_LIMIT_IP_WINDOW": "1h",
        ])
        let policy = try c.authPolicy()
        XCTAssertEqual(policy.messageIDDomain, "shop.example")
        XCTAssertEqual(policy.startPerIP.maximum, 7)
        XCTAssertEqual(policy.startPerIP.window, 3_600)
    }

    private func temporaryFile(_ text: String) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("magiclinkd-\(UUID().uuidString).yaml")
        try text.write(to: url, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url.path
    }
}
