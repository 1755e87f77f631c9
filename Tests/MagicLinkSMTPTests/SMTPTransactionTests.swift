import Foundation
import XCTest

@testable import MagicLinkSMTP

/// Plaintext sessions against the scripted server: the transaction itself.
final class SMTPTransactionTests: XCTestCase {
    func testFullPlaintextTransaction() async throws {
        let server = try await ScriptedSMTPServer.start(group: testGroup)
        defer { Task { await server.stop() } }
        let client = SMTPClient(configuration: plaintextConfiguration(server), eventLoopGroup: testGroup)

        let reply = try await client.send(from: "login@shop.example", to: "alice@example.com", message: sampleMessage)
        await client.shutdown()

        XCTAssertEqual(reply, "250 2.0.0 Ok: queued as ABC1")
        await assertEventually(server) { $0.lines.last == "QUIT" }
        XCTAssertEqual(server.lines, [
            "EHLO localhost", "MAIL FROM:<login@shop.example>", "RCPT TO:<alice@example.com>", "DATA", ".", "QUIT",
        ])
        XCTAssertEqual(server.messages, [sampleMessageOnWire])
        // Without PIPELINING each command waits for the previous reply: separate reads.
        let reads = server.commands.filter { ["MAIL", "RCPT", "DATA"].contains($0.verb) }.map(\.read)
        XCTAssertEqual(Set(reads).count, 3)
    }

    func testPipeliningSendsEnvelopeInOneWrite() async throws {
        var options = ScriptedSMTPServer.Options()
        options.capabilities = ["PIPELINING", "SIZE 10240000"]
        // MAIL and RCPT are answered only once DATA has arrived: a client that waits for the
        // MAIL reply before sending RCPT would hang here and time out.
        let server = try await ScriptedSMTPServer.start(options: options, group: testGroup) { command in
            switch command.verb {
            case "MAIL": return .deferred("250 2.1.0 sender ok")
            case "RCPT": return .deferred("250 2.1.5 recipient ok")
            default: return nil
            }
        }
        defer { Task { await server.stop() } }
        let client = SMTPClient(configuration: plaintextConfiguration(server, replyTimeout: .seconds(2)), eventLoopGroup: testGroup)

        let reply = try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        XCTAssertEqual(reply, "250 2.0.0 Ok: queued as ABC1")
        let envelope = server.commands.filter { ["MAIL", "RCPT", "DATA"].contains($0.verb) }
        XCTAssertEqual(envelope.map(\.line), [
            "MAIL FROM:<a@shop.example> SIZE=\(sampleMessage.count)", "RCPT TO:<b@example.com>", "DATA",
        ])
        XCTAssertEqual(Set(envelope.map(\.read)).count, 1, "MAIL, RCPT and DATA should arrive in one packet")
        XCTAssertEqual(server.messages, [sampleMessageOnWire])
        await client.shutdown()
    }

    func testPipelinedEnvelopeFailureStillReadsAllReplies() async throws {
        var options = ScriptedSMTPServer.Options()
        options.capabilities = ["PIPELINING"]
        let server = try await ScriptedSMTPServer.start(options: options, group: testGroup) { command in
            command.line == "RCPT TO:<nobody@example.com>"
                ? .reply("550 5.1.1 <nobody@example.com>: Recipient address rejected") : nil
        }
        defer { Task { await server.stop() } }
        let client = SMTPClient(configuration: plaintextConfiguration(server), eventLoopGroup: testGroup)

        let error = await expectSMTPError { () async throws(SMTPError) in
            try await client.send(from: "a@shop.example", to: "nobody@example.com", message: sampleMessage)
        }
        XCTAssertEqual(error?.kind, .rejected)
        XCTAssertEqual(error?.replyCode, 550)
        XCTAssertEqual(error?.isPermanent, true)
        // DATA got 354 from this lax server: the client ends it with an empty body, then RSETs.
        await assertEventually(server) { $0.lines.last == "RSET" }
        XCTAssertEqual(Array(server.lines.suffix(2)), [".", "RSET"])
        XCTAssertEqual(server.messages, [Array(".\r\n".utf8)])

        // The connection is still good for the next message.
        _ = try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        XCTAssertEqual(server.connectionCount, 1)
        await client.shutdown()
    }

    func testEightBitBodyAndSMTPUTF8Parameters() async throws {
        var options = ScriptedSMTPServer.Options()
        options.capabilities = ["8BITMIME", "SMTPUTF8"]
        let server = try await ScriptedSMTPServer.start(options: options, group: testGroup)
        defer { Task { await server.stop() } }
        let client = SMTPClient(configuration: plaintextConfiguration(server), eventLoopGroup: testGroup)

        let message = Array("Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nGrüße\r\n".utf8)
        _ = try await client.send(from: "login@shop.example", to: "jürgen@exämple.de", message: message)
        XCTAssertTrue(server.lines.contains("MAIL FROM:<login@shop.example> BODY=8BITMIME SMTPUTF8"), "\(server.lines)")
        XCTAssertTrue(server.lines.contains("RCPT TO:<jürgen@exämple.de>"))
        XCTAssertEqual(server.messages, [message + Array(".\r\n".utf8)])
        await client.shutdown()
    }

    func testSMTPUTF8NeededButNotOfferedIsPermanent() async throws {
        let server = try await ScriptedSMTPServer.start(group: testGroup)
        defer { Task { await server.stop() } }
        let client = SMTPClient(configuration: plaintextConfiguration(server), eventLoopGroup: testGroup)

        let error = await expectSMTPError { () async throws(SMTPError) in
            try await client.send(from: "login@shop.example", to: "jürgen@exämple.de", message: sampleMessage)
        }
        XCTAssertEqual(error?.kind, .smtputf8NotOffered)
        XCTAssertEqual(error?.isPermanent, true)
        XCTAssertFalse(server.lines.contains { $0.hasPrefix("MAIL") || $0.hasPrefix("RCPT") })

        // Nothing was started, so the session stays usable.
        _ = try await client.send(from: "login@shop.example", to: "juergen@example.de", message: sampleMessage)
        XCTAssertEqual(server.connectionCount, 1)
        await client.shutdown()
    }

    func testTransientRcptFailureThenConnectionReusedAfterRSET() async throws {
        let rcptCount = LockedCounter()
        let server = try await ScriptedSMTPServer.start(group: testGroup) { command in
            if command.verb == "RCPT", rcptCount.increment() == 1 {
                return .reply("451 4.7.1 <b@example.com>: greylisted, try again later")
            }
            return nil
        }
        defer { Task { await server.stop() } }
        let client = SMTPClient(configuration: plaintextConfiguration(server), eventLoopGroup: testGroup)

        let error = await expectSMTPError { () async throws(SMTPError) in
            try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        }
        XCTAssertEqual(error?.kind, .rejected)
        XCTAssertEqual(error?.replyCode, 451)
        XCTAssertEqual(error?.isPermanent, false)
        XCTAssertEqual(error?.serverReply, "451 4.7.1 <b@example.com>: greylisted, try again later")

        let reply = try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        XCTAssertEqual(reply, "250 2.0.0 Ok: queued as ABC1")
        XCTAssertEqual(server.connectionCount, 1, "the connection should be reused")
        XCTAssertEqual(server.lines, [
            "EHLO localhost", "MAIL FROM:<a@shop.example>", "RCPT TO:<b@example.com>", "RSET",
            "RSET", "MAIL FROM:<a@shop.example>", "RCPT TO:<b@example.com>", "DATA", ".",
        ])
        await client.shutdown()
    }

    func testPermanentRejectionCarriesReplyText() async throws {
        let server = try await ScriptedSMTPServer.start(group: testGroup) { command in
            command.verb == "RCPT" ? .reply("550-5.1.1 <nobody@example.com>: Recipient address rejected:\r\n550 5.1.1 User unknown in virtual mailbox table") : nil
        }
        defer { Task { await server.stop() } }
        let client = SMTPClient(configuration: plaintextConfiguration(server), eventLoopGroup: testGroup)

        let error = await expectSMTPError { () async throws(SMTPError) in
            try await client.send(from: "a@shop.example", to: "nobody@example.com", message: sampleMessage)
        }
        XCTAssertEqual(error?.kind, .rejected)
        XCTAssertEqual(error?.replyCode, 550)
        XCTAssertEqual(error?.isPermanent, true)
        XCTAssertEqual(
            error?.serverReply,
            "550 5.1.1 <nobody@example.com>: Recipient address rejected: 5.1.1 User unknown in virtual mailbox table"
        )
        XCTAssertTrue(error?.description.contains("User unknown") ?? false)
        XCTAssertFalse(server.lines.contains("DATA"))
        await client.shutdown()
    }

    func testRejectionAfterMessageDataIsPermanent() async throws {
        let server = try await ScriptedSMTPServer.start(group: testGroup) { command in
            command.verb == "." ? .reply("554 5.7.1 Message rejected as spam") : nil
        }
        defer { Task { await server.stop() } }
        let client = SMTPClient(configuration: plaintextConfiguration(server), eventLoopGroup: testGroup)

        let error = await expectSMTPError { () async throws(SMTPError) in
            try await client.send(from: "a@shop.example", to: "b@example.com", message: sampleMessage)
        }
        XCTAssertEqual(error?.replyCode, 554)
        XCTAssertEqual(error?.isPermanent, true)
        XCTAssertEqual(error?.serverReply, "554 5.7.1 Message rejected as spam")
        await client.shutdown()
    }

    func testInvalidAddressesAreRefusedBeforeConnecting() async throws {
        let server = try await ScriptedSMTPServer.start(group: testGroup)
        defer { Task { await server.stop() } }
        let client = SMTPClient(configuration: plaintextConfiguration(server), eventLoopGroup: testGroup)

        for (from, to) in [
            ("a@shop.example", "b@example.com>\r\nRCPT TO:<evil@example.com"),
            ("a@shop.example\n", "b@example.com"),
            ("a@shop.example", "b\u{0}@example.com"),
            ("<a@shop.example", "b@example.com"),
            ("a@shop.example", ""),
        ] {
            let error = await expectSMTPError { () async throws(SMTPError) in
                try await client.send(from: from, to: to, message: sampleMessage)
            }
            XCTAssertEqual(error?.kind, .protocolViolation)
            XCTAssertEqual(error?.isPermanent, true)
        }
        XCTAssertEqual(server.connectionCount, 0)
    }

    func testConcurrentSendsAreSerializedOnOneConnection() async throws {
        var options = ScriptedSMTPServer.Options()
        options.capabilities = ["PIPELINING"]
        let server = try await ScriptedSMTPServer.start(options: options, group: testGroup)
        defer { Task { await server.stop() } }
        let client = SMTPClient(configuration: plaintextConfiguration(server), eventLoopGroup: testGroup)

        try await withThrowingTaskGroup(of: String.self) { group in
            for index in 0..<5 {
                group.addTask {
                    try await client.send(from: "a@shop.example", to: "user\(index)@example.com", message: sampleMessage)
                }
            }
            for try await reply in group { XCTAssertTrue(reply.hasPrefix("250 2.0.0 Ok")) }
        }
        XCTAssertEqual(server.connectionCount, 1)
        XCTAssertEqual(server.messages.count, 5)
        // Each transaction is whole: MAIL, RCPT, DATA, "." never interleave with another's.
        let verbs = server.commands.map(\.verb).filter { $0 != "RSET" && $0 != "EHLO" }
        XCTAssertEqual(verbs, Array(repeating: ["MAIL", "RCPT", "DATA", "."], count: 5).flatMap { $0 })
        await client.shutdown()
    }
}

/// A counter the server script (a Sendable closure) can bump.
final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    /// Returns the new value.
    func increment() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value
    }
}
