import ExtrasBase64
import Foundation
import XCTest

@testable import MagicLinkSMTP

/// Plaintext sessions: greeting, EHLO/HELO, AUTH, timeouts, connection reuse.
final class SMTPSessionTests: XCTestCase {
    func testGreetingFailureIsTransientWithItsCode() async throws {
        var options = ScriptedSMTPServer.Options()
        options.greeting = "554 5.3.2 mx.example: too busy"
        let server = try await ScriptedSMTPServer.start(options: options, group: testGroup)
        defer { Task { await server.stop() } }
        let client = SMTPClient(configuration: plaintextConfiguration(server), eventLoopGroup: testGroup)

        let error = await expectSMTPError { () async throws(SMTPError) in
            try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        }
        XCTAssertEqual(error?.kind, .rejected)
        XCTAssertEqual(error?.replyCode, 554)
        XCTAssertEqual(error?.isPermanent, false)
        XCTAssertEqual(server.lines, ["QUIT"])
    }

    func testHELOFallbackOnlyForPlaintextRelays() async throws {
        let server = try await ScriptedSMTPServer.start(group: testGroup) { command in
            command.verb == "EHLO" ? .reply("502 5.5.1 EHLO not supported") : nil
        }
        defer { Task { await server.stop() } }
        let client = SMTPClient(configuration: plaintextConfiguration(server), eventLoopGroup: testGroup)
        _ = try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        XCTAssertEqual(Array(server.lines.prefix(3)), ["EHLO localhost", "HELO localhost", "MAIL FROM:<a@shop.example>"])
        await client.shutdown()

        // With STARTTLS required there is no HELO fallback: EHLO failing is an error.
        let strict = SMTPClient(configuration: plaintextConfiguration(server, security: .starttls), eventLoopGroup: testGroup)
        let error = await expectSMTPError { () async throws(SMTPError) in
            try await strict.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        }
        XCTAssertEqual(error?.kind, .rejected)
        XCTAssertEqual(error?.replyCode, 502)
        XCTAssertEqual(error?.isPermanent, false)
        XCTAssertEqual(server.lines(connection: 2), ["EHLO localhost", "QUIT"])
    }

    func testAuthLoginWhenPlainIsNotOffered() async throws {
        var options = ScriptedSMTPServer.Options()
        options.capabilities = ["AUTH LOGIN"]
        let server = try await ScriptedSMTPServer.start(options: options, group: testGroup)
        defer { Task { await server.stop() } }
        let configuration = plaintextConfiguration(server, username: "alice", password: "s3cret")
        let client = SMTPClient(configuration: configuration, eventLoopGroup: testGroup)

        _ = try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        XCTAssertEqual(Array(server.lines.prefix(5)), [
            "EHLO localhost", "AUTH LOGIN", Base64.encodeToString(bytes: Array("alice".utf8)), Base64.encodeToString(bytes: Array("s3cret".utf8)),
            "MAIL FROM:<a@shop.example>",
        ])
        await client.shutdown()
    }

    func testRejectedAuthenticationIsNotPermanentAndNeverShowsThePassword() async throws {
        let password = "correct horse battery staple"
        let plain = Base64.encodeToString(bytes: Array("\u{0}alice\u{0}\(password)".utf8))
        var options = ScriptedSMTPServer.Options()
        options.capabilities = ["AUTH PLAIN LOGIN"]
        // A careless server that echoes what it could not accept.
        let server = try await ScriptedSMTPServer.start(options: options, group: testGroup) { command in
            command.verb == "AUTH"
                ? .reply("535 5.7.8 Authentication credentials invalid: \(command.line.dropFirst(11)) \(password)") : nil
        }
        defer { Task { await server.stop() } }
        let configuration = plaintextConfiguration(server, username: "alice", password: password)
        let client = SMTPClient(configuration: configuration, eventLoopGroup: testGroup)

        let error = await expectSMTPError { () async throws(SMTPError) in
            try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        }
        XCTAssertEqual(error?.kind, .authentication)
        XCTAssertEqual(error?.replyCode, 535)
        XCTAssertEqual(error?.isPermanent, false)
        XCTAssertEqual(server.lines.first { $0.hasPrefix("AUTH") }, "AUTH PLAIN \(plain)")
        XCTAssertFalse(server.lines.contains { $0.hasPrefix("MAIL") })
        for text in [error?.description ?? "", error?.serverReply ?? "", "\(String(describing: error))"] {
            XCTAssertFalse(text.contains(password), text)
            XCTAssertFalse(text.contains(plain), text)
            XCTAssertFalse(text.contains(Base64.encodeToString(bytes: Array(password.utf8))), text)
        }
        XCTAssertTrue(error?.description.contains("<redacted>") ?? false)
    }

    func testAuthenticationRequiredAtMAILIsAConfigurationProblem() async throws {
        let server = try await ScriptedSMTPServer.start(group: testGroup) { command in
            command.verb == "MAIL" ? .reply("530 5.7.0 Must issue a STARTTLS command first") : nil
        }
        defer { Task { await server.stop() } }
        let client = SMTPClient(configuration: plaintextConfiguration(server), eventLoopGroup: testGroup)
        let error = await expectSMTPError { () async throws(SMTPError) in
            try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        }
        XCTAssertEqual(error?.kind, .authentication)
        XCTAssertEqual(error?.replyCode, 530)
        XCTAssertEqual(error?.isPermanent, false, "mail must wait for the admin to fix the configuration")
    }

    func testUsernameWithoutUsableMechanismFails() async throws {
        var options = ScriptedSMTPServer.Options()
        options.capabilities = ["AUTH CRAM-MD5"]
        let server = try await ScriptedSMTPServer.start(options: options, group: testGroup)
        defer { Task { await server.stop() } }
        let configuration = plaintextConfiguration(server, username: "alice", password: "s3cret")
        let client = SMTPClient(configuration: configuration, eventLoopGroup: testGroup)

        let error = await expectSMTPError { () async throws(SMTPError) in
            try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        }
        XCTAssertEqual(error?.kind, .authentication)
        XCTAssertEqual(error?.isPermanent, false)
        XCTAssertFalse(error?.description.contains("s3cret") ?? true)
        XCTAssertFalse(server.lines.contains { $0.hasPrefix("AUTH") || $0.hasPrefix("MAIL") })
    }

    func testReplyTimeout() async throws {
        let server = try await ScriptedSMTPServer.start(group: testGroup) { command in
            command.verb == "MAIL" ? .silent : nil
        }
        defer { Task { await server.stop() } }
        let configuration = plaintextConfiguration(server, replyTimeout: .milliseconds(300))
        let client = SMTPClient(configuration: configuration, eventLoopGroup: testGroup)

        let started = ContinuousClock.now
        let error = await expectSMTPError { () async throws(SMTPError) in
            try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        }
        let elapsed = ContinuousClock.now - started
        XCTAssertEqual(error?.kind, .timeout)
        XCTAssertEqual(error?.isPermanent, false)
        XCTAssertNil(error?.replyCode)
        XCTAssertGreaterThanOrEqual(elapsed, .milliseconds(300))
        XCTAssertLessThan(elapsed, .seconds(3))
        // The timed-out connection was closed, not kept.
        await assertEventually(server) { $0.closedCount == 1 }
    }

    func testOverlongReplyLineIsAProtocolViolation() async throws {
        var options = ScriptedSMTPServer.Options()
        options.greeting = "220 " + String(repeating: "x", count: 5000)
        let server = try await ScriptedSMTPServer.start(options: options, group: testGroup)
        defer { Task { await server.stop() } }
        let client = SMTPClient(configuration: plaintextConfiguration(server), eventLoopGroup: testGroup)

        let error = await expectSMTPError { () async throws(SMTPError) in
            try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        }
        XCTAssertEqual(error?.kind, .protocolViolation)
        XCTAssertEqual(error?.isPermanent, false)
        XCTAssertEqual(server.lines, [])
    }

    func testGarbageReplyIsAProtocolViolation() async throws {
        var options = ScriptedSMTPServer.Options()
        options.greeting = "HTTP/1.1 400 Bad Request"
        let server = try await ScriptedSMTPServer.start(options: options, group: testGroup)
        defer { Task { await server.stop() } }
        let client = SMTPClient(configuration: plaintextConfiguration(server), eventLoopGroup: testGroup)
        let error = await expectSMTPError { () async throws(SMTPError) in
            try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        }
        XCTAssertEqual(error?.kind, .protocolViolation)
    }

    func testConnectionRefused() async throws {
        let server = try await ScriptedSMTPServer.start(group: testGroup)
        let port = server.port
        await server.stop()
        let configuration = SMTPConfiguration(host: "127.0.0.1", port: port, security: .none)
        let client = SMTPClient(configuration: configuration, eventLoopGroup: testGroup)
        let error = await expectSMTPError { () async throws(SMTPError) in
            try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        }
        XCTAssertEqual(error?.kind, .connect)
        XCTAssertEqual(error?.isPermanent, false)
    }

    func testServerClosingThePooledConnectionMeansReconnect() async throws {
        let server = try await ScriptedSMTPServer.start(group: testGroup) { command in
            command.verb == "." && command.connection == 1 ? .replyAndClose("250 2.0.0 Ok: queued as FIRST") : nil
        }
        defer { Task { await server.stop() } }
        let client = SMTPClient(configuration: plaintextConfiguration(server), eventLoopGroup: testGroup)

        let first = try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        XCTAssertEqual(first, "250 2.0.0 Ok: queued as FIRST")
        await assertEventually(server) { $0.closedCount == 1 }
        let second = try await client.send(from: "a@shop.example", to: "c@example.com", message: sampleMessage)
        XCTAssertEqual(second, "250 2.0.0 Ok: queued as ABC2")
        XCTAssertEqual(server.connectionCount, 2)
        XCTAssertEqual(server.lines(connection: 2).first, "EHLO localhost")
        await client.shutdown()
    }

    func testDeadPooledConnectionIsRetriedOnceTransparently() async throws {
        // The server drops connection 1 when it sees the RSET that starts the second message,
        // as a server would whose idle timer fired just as we reused the connection.
        let server = try await ScriptedSMTPServer.start(group: testGroup) { command in
            command.verb == "RSET" && command.connection == 1 ? .close : nil
        }
        defer { Task { await server.stop() } }
        let client = SMTPClient(configuration: plaintextConfiguration(server), eventLoopGroup: testGroup)

        _ = try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        let reply = try await client.send(from: "a@shop.example", to: "c@example.com", message: sampleMessage)
        XCTAssertEqual(reply, "250 2.0.0 Ok: queued as ABC2")
        XCTAssertEqual(server.connectionCount, 2)
        XCTAssertEqual(server.lines(connection: 2), [
            "EHLO localhost", "MAIL FROM:<a@shop.example>", "RCPT TO:<c@example.com>", "DATA", ".",
        ])
        await client.shutdown()
    }

    func testIdleConnectionIsClosedWithQUITAndReplaced() async throws {
        let server = try await ScriptedSMTPServer.start(group: testGroup)
        defer { Task { await server.stop() } }
        let configuration = plaintextConfiguration(server, idleTimeout: .milliseconds(200))
        let client = SMTPClient(configuration: configuration, eventLoopGroup: testGroup)

        _ = try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        await assertEventually(server) { $0.lines.last == "QUIT" && $0.closedCount == 1 }
        _ = try await client.send(from: "a@shop.example", to: "c@example.com", message: sampleMessage)
        XCTAssertEqual(server.connectionCount, 2)
        await client.shutdown()
    }

    func testShutdownSendsQUITOnceAndIsIdempotent() async throws {
        let server = try await ScriptedSMTPServer.start(group: testGroup)
        defer { Task { await server.stop() } }
        let client = SMTPClient(configuration: plaintextConfiguration(server), eventLoopGroup: testGroup)

        await client.shutdown()  // nothing open yet
        _ = try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        await client.shutdown()
        await client.shutdown()
        await assertEventually(server) { $0.closedCount == 1 }
        XCTAssertEqual(server.lines.filter { $0 == "QUIT" }.count, 1)
    }
}
