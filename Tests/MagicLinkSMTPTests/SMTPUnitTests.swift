import ExtrasBase64
import XCTest

@testable import MagicLinkSMTP

/// Pure parsing and encoding, no network.
final class SMTPUnitTests: XCTestCase {
    func testReplyLineParsing() throws {
        let last = try XCTUnwrap(SMTPReplyLine(Array("250 2.0.0 Ok".utf8)))
        XCTAssertEqual(last, SMTPReplyLine(code: 250, isLast: true, text: "2.0.0 Ok"))
        let more = try XCTUnwrap(SMTPReplyLine(Array("250-PIPELINING".utf8)))
        XCTAssertEqual(more, SMTPReplyLine(code: 250, isLast: false, text: "PIPELINING"))
        XCTAssertEqual(SMTPReplyLine(Array("354".utf8))?.code, 354)
        for bad in ["", "25", "2500 x", "abc ok", "150 too low", "650 too high", "250x"] {
            XCTAssertNil(SMTPReplyLine(Array(bad.utf8)), bad)
        }
    }

    func testAssemblerJoinsMultiLineRepliesAndRejectsMixedCodes() {
        var assembler = SMTPReplyAssembler()
        XCTAssertEqual(assembler.add(lineBytes: Array("250-mx.example".utf8)), .needMore)
        XCTAssertEqual(assembler.add(lineBytes: Array("250-SIZE 100".utf8)), .needMore)
        XCTAssertEqual(
            assembler.add(lineBytes: Array("250 STARTTLS".utf8)),
            .reply(SMTPReply(code: 250, lines: ["mx.example", "SIZE 100", "STARTTLS"]))
        )
        XCTAssertEqual(assembler.add(lineBytes: Array("250-a".utf8)), .needMore)
        guard case .invalid = assembler.add(lineBytes: Array("550 b".utf8)) else {
            return XCTFail("mixed codes accepted")
        }
    }

    func testCapabilitiesAreCaseInsensitive() {
        let reply = SMTPReply(code: 250, lines: [
            "mx.example Hello", "pipelining", "Size 35882577", "auth login Plain", "AUTH=CRAM-MD5", "starttls",
            "8bitmime", "SmtpUtf8", "ENHANCEDSTATUSCODES",
        ])
        let capabilities = SMTPCapabilities(ehloReply: reply)
        XCTAssertTrue(capabilities.pipelining)
        XCTAssertTrue(capabilities.startTLS)
        XCTAssertTrue(capabilities.eightBitMIME)
        XCTAssertTrue(capabilities.smtpUTF8)
        XCTAssertEqual(capabilities.size, 35_882_577)
        XCTAssertEqual(capabilities.authMechanisms, ["LOGIN", "PLAIN", "CRAM-MD5"])

        // The greeting line is not a keyword, even if it looks like one.
        let greetingOnly = SMTPCapabilities(ehloReply: SMTPReply(code: 250, lines: ["STARTTLS"]))
        XCTAssertFalse(greetingOnly.startTLS)
    }

    func testDotStuffing() {
        XCTAssertEqual(DotStuffing.encode(sampleMessage), sampleMessageOnWire)
        XCTAssertEqual(DotStuffing.encode([]), Array(".\r\n".utf8))
        XCTAssertEqual(DotStuffing.encode(Array(".\r\n".utf8)), Array("..\r\n.\r\n".utf8))
        XCTAssertEqual(DotStuffing.encode(Array("a\r\n".utf8)), Array("a\r\n.\r\n".utf8))
        // Bare LF / CR become CRLF, so "\n.\n" cannot end the message early on any server.
        XCTAssertEqual(DotStuffing.encode(Array("a\n.\nb\rc".utf8)), Array("a\r\n..\r\nb\r\nc\r\n.\r\n".utf8))
        XCTAssertEqual(DotStuffing.encode(Array("...x".utf8)), Array("....x\r\n.\r\n".utf8))
    }

    func testBase64() {
        XCTAssertEqual(Base64.encodeToString(bytes: Array("".utf8)), "")
        XCTAssertEqual(Base64.encodeToString(bytes: Array("f".utf8)), "Zg==")
        XCTAssertEqual(Base64.encodeToString(bytes: Array("fo".utf8)), "Zm8=")
        XCTAssertEqual(Base64.encodeToString(bytes: Array("foo".utf8)), "Zm9v")
        XCTAssertEqual(Base64.encodeToString(bytes: Array("foobar".utf8)), "Zm9vYmFy")
        XCTAssertEqual(Base64.encodeToString(bytes: Array("\u{0}alice\u{0}s3cret".utf8)), "AGFsaWNlAHMzY3JldA==")
        XCTAssertEqual(Base64.encodeToString(bytes: [0xFF, 0xFE, 0xFD]), "//79")
    }

    func testConfigurationDefaults() {
        XCTAssertEqual(SMTPConfiguration.defaultPort(for: .starttls), 587)
        XCTAssertEqual(SMTPConfiguration.defaultPort(for: .tls), 465)
        XCTAssertEqual(SMTPConfiguration.defaultPort(for: .none), 25)
        let configuration = SMTPConfiguration(host: "smtp.example", security: .tls, password: "hunter2")
        XCTAssertEqual(configuration.port, 465)
        XCTAssertEqual(configuration.ehloName, "localhost")
        XCTAssertEqual(configuration.connectTimeout, .seconds(10))
        XCTAssertEqual(configuration.replyTimeout, .seconds(30))
        XCTAssertEqual(configuration.idleTimeout, .seconds(30))
        XCTAssertEqual(SMTPConfiguration(host: "h", port: 2525).port, 2525)
        XCTAssertEqual(SMTPConfiguration(host: "h").security, .starttls)
        XCTAssertFalse("\(configuration)".contains("hunter2"))
    }

    func testErrorTextIsOneSanitizedLine() {
        let reply = SMTPReply(code: 550, lines: ["5.1.1 first\u{7}", "second " + String(repeating: "x", count: 600)])
        let error = SMTPError(.rejected, "server rejected RCPT TO", reply: reply, permanent: true)
        XCTAssertEqual(error.replyCode, 550)
        XCTAssertTrue(error.serverReply!.hasPrefix("550 5.1.1 first? second xxx"))
        XCTAssertEqual(error.serverReply!.utf8.count, 512)
        XCTAssertFalse(error.description.contains("\n"))
        XCTAssertTrue(error.description.contains("(permanent)"))
    }

    func testAuthenticationRepliesAreRedacted() {
        let reply = SMTPReply(code: 501, lines: ["5.5.2 cannot decode AGFsaWNlAHMzY3JldA== (s3cret)"])
        let redacted = SMTPAuthentication.redact(reply, removing: ["s3cret", "AGFsaWNlAHMzY3JldA=="])
        XCTAssertEqual(redacted.lines, ["5.5.2 cannot decode <redacted> (<redacted>)"])
    }
}
