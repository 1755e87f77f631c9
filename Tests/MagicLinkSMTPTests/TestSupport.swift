import Foundation
import NIOCore
import NIOPosix
import XCTest

@testable import MagicLinkSMTP

let testGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton

/// A message as magiclinkd's mail module would produce it: CRLF line ends, not dot-stuffed.
let sampleMessage = Array("Subject: Your link\r\n\r\nHello\r\n.line starting with a dot\r\nlast line without CRLF".utf8)

/// What the server must receive after the 354 for `sampleMessage`.
let sampleMessageOnWire = Array("Subject: Your link\r\n\r\nHello\r\n..line starting with a dot\r\nlast line without CRLF\r\n.\r\n".utf8)

func plaintextConfiguration(
    _ server: ScriptedSMTPServer,
    security: SMTPConfiguration.Security = .none,
    username: String? = nil,
    password: String? = nil,
    replyTimeout: Duration = .seconds(5),
    idleTimeout: Duration = .seconds(30)
) -> SMTPConfiguration {
    SMTPConfiguration(
        host: "127.0.0.1", port: server.port, security: security, username: username, password: password,
        replyTimeout: replyTimeout, idleTimeout: idleTimeout
    )
}

/// Runs `body`, which must throw an `SMTPError`, and returns that error.
func expectSMTPError(
    _ body: () async throws(SMTPError) -> String,
    file: StaticString = #filePath,
    line: UInt = #line
) async -> SMTPError? {
    do {
        let reply = try await body()
        XCTFail("expected an SMTPError, got success: \(reply)", file: file, line: line)
        return nil
    } catch {
        return error
    }
}

extension ScriptedSMTPServer {
    /// Lines received, without the connection/TLS details.
    func lines(connection: Int) -> [String] {
        commands.filter { $0.connection == connection }.map(\.line)
    }
}

/// Fails unless `condition` becomes true within a few seconds (server state settles asynchronously).
func assertEventually(
    _ server: ScriptedSMTPServer,
    file: StaticString = #filePath,
    line: UInt = #line,
    _ condition: (ScriptedSMTPServer) -> Bool
) async {
    let settled = await server.waitUntil(condition)
    XCTAssertTrue(settled, "condition not met; server saw \(server.lines)", file: file, line: line)
}
