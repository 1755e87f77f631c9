import Foundation
import NIOSSL
import XCTest

@testable import MagicLinkSMTP

/// STARTTLS and implicit TLS against a test CA made with openssl at test time.
final class SMTPTLSTests: XCTestCase {
    private func tlsServer(
        certificate: String = "server",
        implicit: Bool = false,
        capabilities: [String] = ["STARTTLS", "AUTH LOGIN"],
        tlsCapabilities: [String]? = ["PIPELINING", "AUTH PLAIN LOGIN"],
        script: @escaping ScriptedSMTPServer.Script = { _ in nil }
    ) async throws -> ScriptedSMTPServer {
        var options = ScriptedSMTPServer.Options()
        options.capabilities = capabilities
        options.tlsCapabilities = tlsCapabilities
        options.tls = try TestPKI.shared.serverContext(certificate)
        options.implicitTLS = implicit
        return try await ScriptedSMTPServer.start(options: options, group: testGroup, script: script)
    }

    private func configuration(
        _ server: ScriptedSMTPServer,
        host: String = "localhost",
        security: SMTPConfiguration.Security = .starttls,
        trustTestCA: Bool = true,
        username: String? = nil,
        password: String? = nil
    ) -> SMTPConfiguration {
        SMTPConfiguration(
            host: host, port: server.port, security: security, caFile: trustTestCA ? TestPKI.shared.caFile : nil,
            username: username, password: password, replyTimeout: .seconds(5)
        )
    }

    func testSTARTTLSThenAuthPlainWithPostTLSCapabilities() async throws {
        let server = try await tlsServer()
        defer { Task { await server.stop() } }
        let client = SMTPClient(
            configuration: configuration(server, username: "alice", password: "s3cret"), eventLoopGroup: testGroup
        )

        let reply = try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        XCTAssertEqual(reply, "250 2.0.0 Ok: queued as ABC1")
        let commands = server.commands
        XCTAssertEqual(commands.map(\.line), [
            "EHLO localhost", "STARTTLS", "EHLO localhost", "AUTH PLAIN AGFsaWNlAHMzY3JldA==",
            "MAIL FROM:<a@shop.example>", "RCPT TO:<b@example.com>", "DATA", ".",
        ])
        XCTAssertEqual(commands.map(\.tls), [false, false, true, true, true, true, true, true])
        // PIPELINING and PLAIN were only announced after TLS, and were used.
        let envelope = commands.filter { ["MAIL", "RCPT", "DATA"].contains($0.verb) }
        XCTAssertEqual(Set(envelope.map(\.read)).count, 1)
        XCTAssertEqual(server.messages, [sampleMessageOnWire])

        // The TLS session is reused for the next message.
        _ = try await client.send(from: "a@shop.example", to: "c@example.com", message: sampleMessage)
        XCTAssertEqual(server.connectionCount, 1)
        XCTAssertEqual(server.commands.last(where: { $0.verb == "RSET" })?.tls, true)
        await client.shutdown()
    }

    func testSTARTTLSRequiredButNotOffered() async throws {
        let server = try await tlsServer(capabilities: ["AUTH PLAIN LOGIN", "PIPELINING"])
        defer { Task { await server.stop() } }
        let client = SMTPClient(
            configuration: configuration(server, username: "alice", password: "s3cret"), eventLoopGroup: testGroup
        )

        let error = await expectSMTPError { () async throws(SMTPError) in
            try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        }
        XCTAssertEqual(error?.kind, .startTLSNotOffered)
        XCTAssertEqual(error?.isPermanent, false)
        await assertEventually(server) { $0.closedCount == 1 }
        XCTAssertEqual(server.lines, ["EHLO localhost", "QUIT"])
    }

    func testSTARTTLSRefusedByServer() async throws {
        let server = try await tlsServer { command in
            command.verb == "STARTTLS" ? .reply("454 4.7.0 TLS not available due to temporary reason") : nil
        }
        defer { Task { await server.stop() } }
        let client = SMTPClient(configuration: configuration(server), eventLoopGroup: testGroup)
        let error = await expectSMTPError { () async throws(SMTPError) in
            try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        }
        XCTAssertEqual(error?.kind, .tls)
        XCTAssertEqual(error?.replyCode, 454)
        XCTAssertEqual(error?.isPermanent, false)
        XCTAssertFalse(server.lines.contains { $0.hasPrefix("MAIL") || $0.hasPrefix("AUTH") })
    }

    func testUntrustedCertificateFailsTheHandshake() async throws {
        let server = try await tlsServer()
        defer { Task { await server.stop() } }
        // System roots only: the test CA is unknown.
        let client = SMTPClient(
            configuration: configuration(server, trustTestCA: false, username: "alice", password: "s3cret"),
            eventLoopGroup: testGroup
        )
        let error = await expectSMTPError { () async throws(SMTPError) in
            try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        }
        XCTAssertEqual(error?.kind, .tls)
        XCTAssertEqual(error?.isPermanent, false)
        XCTAssertFalse(error?.description.contains("s3cret") ?? true)
        await assertEventually(server) { $0.closedCount == 1 }
        XCTAssertEqual(server.lines, ["EHLO localhost", "STARTTLS"], "nothing may follow a failed handshake")
    }

    func testCertificateForAnotherHostFailsTheHandshake() async throws {
        let server = try await tlsServer(certificate: "wrong")
        defer { Task { await server.stop() } }
        let client = SMTPClient(configuration: configuration(server), eventLoopGroup: testGroup)
        let error = await expectSMTPError { () async throws(SMTPError) in
            try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        }
        XCTAssertEqual(error?.kind, .tls)
        await assertEventually(server) { $0.closedCount == 1 }
        XCTAssertEqual(server.lines, ["EHLO localhost", "STARTTLS"])
    }

    func testBytesInjectedAfterSTARTTLSReplyInSamePacketAreRefused() async throws {
        let server = try await tlsServer { command in
            command.verb == "STARTTLS" ? .startTLS(["220 go\r\n250 injected\r\n"]) : nil
        }
        defer { Task { await server.stop() } }
        let client = SMTPClient(
            configuration: configuration(server, username: "alice", password: "s3cret"), eventLoopGroup: testGroup
        )
        let error = await expectSMTPError { () async throws(SMTPError) in
            try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        }
        XCTAssertEqual(error?.kind, .protocolViolation)
        XCTAssertEqual(error?.isPermanent, false)
        await assertEventually(server) { $0.closedCount == 1 }
        XCTAssertEqual(server.lines, ["EHLO localhost", "STARTTLS"])
    }

    func testBytesInjectedAfterSTARTTLSReplyInLaterWriteAreNeverAReply() async throws {
        // Separate writes may or may not arrive in one read; either way they must not be taken
        // as the EHLO reply: the client either sees them in the same read (and refuses) or feeds
        // them to TLS (and the handshake fails).
        let server = try await tlsServer { command in
            command.verb == "STARTTLS" ? .startTLS(["220 go\r\n", "250 injected\r\n"]) : nil
        }
        defer { Task { await server.stop() } }
        let client = SMTPClient(configuration: configuration(server), eventLoopGroup: testGroup)
        let error = await expectSMTPError { () async throws(SMTPError) in
            try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        }
        XCTAssertTrue([.protocolViolation, .tls].contains(error?.kind), "\(String(describing: error))")
        await assertEventually(server) { $0.closedCount == 1 }
        XCTAssertEqual(server.lines, ["EHLO localhost", "STARTTLS"])
    }

    func testImplicitTLSByIPAddress() async throws {
        let server = try await tlsServer(implicit: true, capabilities: ["AUTH PLAIN", "SMTPUTF8"], tlsCapabilities: nil)
        defer { Task { await server.stop() } }
        // 127.0.0.1: no SNI, and the certificate is checked against its IP address SAN.
        let client = SMTPClient(
            configuration: configuration(server, host: "127.0.0.1", security: .tls, username: "alice", password: "s3cret"),
            eventLoopGroup: testGroup
        )
        let reply = try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        XCTAssertEqual(reply, "250 2.0.0 Ok: queued as ABC1")
        XCTAssertEqual(server.lines.first, "EHLO localhost")
        XCTAssertFalse(server.lines.contains("STARTTLS"))
        XCTAssertTrue(server.commands.allSatisfy(\.tls))
        XCTAssertEqual(server.messages, [sampleMessageOnWire])
        await client.shutdown()
        await assertEventually(server) { $0.lines.last == "QUIT" }
    }

    func testImplicitTLSWithUntrustedCertificate() async throws {
        let server = try await tlsServer(implicit: true)
        defer { Task { await server.stop() } }
        let client = SMTPClient(
            configuration: configuration(server, security: .tls, trustTestCA: false), eventLoopGroup: testGroup
        )
        let error = await expectSMTPError { () async throws(SMTPError) in
            try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        }
        XCTAssertEqual(error?.kind, .tls)
        await assertEventually(server) { $0.closedCount == 1 }
        XCTAssertEqual(server.lines, [])
    }

    func testMissingCAFileIsATLSConfigurationError() async throws {
        let server = try await tlsServer()
        defer { Task { await server.stop() } }
        var configuration = configuration(server)
        configuration.caFile = "/nonexistent/ca.pem"
        let client = SMTPClient(configuration: configuration, eventLoopGroup: testGroup)
        let error = await expectSMTPError { () async throws(SMTPError) in
            try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        }
        XCTAssertEqual(error?.kind, .tls)
        XCTAssertEqual(error?.isPermanent, false)
        XCTAssertEqual(server.connectionCount, 0)
    }
}
