import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// One command line the test server received, with the circumstances it arrived in.
struct ReceivedCommand: Sendable, Equatable {
    var line: String
    /// Whether TLS was up on that connection when the line arrived.
    var tls: Bool
    /// 1 for the first accepted connection, 2 for the next…
    var connection: Int
    /// Which `channelRead` on that connection carried it (same number = same packet).
    var read: Int

    /// First word, upper-cased ("MAIL", "RCPT"); for the end of DATA it is ".".
    var verb: String { line.split(separator: " ").first.map { $0.uppercased() } ?? "" }
}

/// What the server does in response to a command. `text` values are sent with "\r\n" added.
enum ServerAction: Sendable {
    case reply(String)
    /// Exactly these byte chunks, each in its own write.
    case raw([String])
    case replyAndClose(String)
    case close
    /// No answer at all (for timeout tests).
    case silent
    /// Queues the reply and sends it together with the next non-deferred one (pipelining tests:
    /// the client must have sent everything before it sees any reply).
    case deferred(String)
    /// Sends the given chunks (each its own write) and then starts TLS on the server side.
    case startTLS([String])
}

/// An in-process SMTP server for tests: records every line and answers from a script. The
/// script is a closure consulted first; when it returns nil the server acts as a plain,
/// well-behaved ESMTP server.
final class ScriptedSMTPServer: @unchecked Sendable {
    struct Options: Sendable {
        var greeting = "220 test.local ESMTP ready"
        /// EHLO keywords before TLS (and on plaintext/implicit-TLS connections).
        var capabilities: [String] = []
        /// EHLO keywords after STARTTLS; nil means the same as `capabilities`.
        var tlsCapabilities: [String]? = nil
        /// For STARTTLS and implicit TLS.
        var tls: NIOSSLContext? = nil
        var implicitTLS = false
    }

    typealias Script = @Sendable (ReceivedCommand) -> ServerAction?

    let options: Options
    let script: Script
    private let channel: any Channel
    private let lock = NIOLock()
    private var _commands: [ReceivedCommand] = []
    private var _messages: [[UInt8]] = []
    private var _connections = 0
    private var _closed = 0
    private var _errors: [String] = []

    var port: Int { channel.localAddress!.port! }
    var commands: [ReceivedCommand] { lock.withLock { _commands } }
    var lines: [String] { commands.map(\.line) }
    /// Raw bytes after each 354, up to and including the terminating ".\r\n".
    var messages: [[UInt8]] { lock.withLock { _messages } }
    var connectionCount: Int { lock.withLock { _connections } }
    var closedCount: Int { lock.withLock { _closed } }
    var errors: [String] { lock.withLock { _errors } }

    static func start(
        options: Options = Options(),
        group: any EventLoopGroup,
        script: @escaping Script = { _ in nil }
    ) async throws -> ScriptedSMTPServer {
        let box = NIOLockedValueBox<ScriptedSMTPServer?>(nil)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard let server = box.withLockedValue({ $0 }) else { throw ChannelError.ioOnClosedChannel }
                    let number = server.lock.withLock {
                        server._connections += 1
                        return server._connections
                    }
                    if server.options.implicitTLS, let tls = server.options.tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                    }
                    try channel.pipeline.syncOperations.addHandler(ScriptedSessionHandler(server: server, connection: number))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let server = ScriptedSMTPServer(options: options, script: script, channel: channel)
        box.withLockedValue { $0 = server }
        return server
    }

    private init(options: Options, script: @escaping Script, channel: any Channel) {
        self.options = options
        self.script = script
        self.channel = channel
    }

    func stop() async {
        try? await channel.close()
    }

    fileprivate func record(_ command: ReceivedCommand) { lock.withLock { _commands.append(command) } }
    fileprivate func record(message: [UInt8]) { lock.withLock { _messages.append(message) } }
    fileprivate func recordClosed() { lock.withLock { _closed += 1 } }
    fileprivate func record(error: String) { lock.withLock { _errors.append(error) } }

    /// The well-behaved default answer.
    fileprivate func defaultAction(for command: ReceivedCommand, authLoginStep: Int) -> ServerAction {
        if authLoginStep == 1 { return .reply("334 UGFzc3dvcmQ6") }
        if authLoginStep == 2 { return .reply("235 2.7.0 Authentication successful") }
        switch command.verb {
        case "EHLO":
            let keywords = command.tls ? (options.tlsCapabilities ?? options.capabilities) : options.capabilities
            let lines = ["test.local greets you"] + keywords
            return .reply(
                lines.enumerated().map { index, text in
                    (index == lines.count - 1 ? "250 " : "250-") + text
                }.joined(separator: "\r\n")
            )
        case "HELO": return .reply("250 test.local")
        case "STARTTLS":
            return options.tls != nil && !command.tls ? .startTLS(["220 2.0.0 Ready to start TLS\r\n"]) : .reply("502 5.5.1 no")
        case "AUTH":
            if command.line.uppercased().hasPrefix("AUTH LOGIN") { return .reply("334 VXNlcm5hbWU6") }
            return .reply("235 2.7.0 Authentication successful")
        case "MAIL", "RCPT", "RSET", "NOOP": return .reply("250 2.1.0 Ok")
        case "DATA": return .reply("354 End data with <CR><LF>.<CR><LF>")
        case ".": return .reply("250 2.0.0 Ok: queued as ABC\(messages.count)")
        case "QUIT": return .replyAndClose("221 2.0.0 Bye")
        default: return .reply("500 5.5.2 unrecognized")
        }
    }

    /// Polls until `condition` holds or `timeout` passes; for state that settles asynchronously.
    func waitUntil(timeout: TimeInterval = 5, _ condition: (ScriptedSMTPServer) -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition(self) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return condition(self)
    }
}

/// Per-connection side of `ScriptedSMTPServer`.
private final class ScriptedSessionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let server: ScriptedSMTPServer
    private let connection: Int
    private var buffer: [UInt8] = []
    private var inData = false
    private var tls = false
    private var reads = 0
    private var authLoginStep = 0
    private var deferred: [String] = []

    init(server: ScriptedSMTPServer, connection: Int) {
        self.server = server
        self.connection = connection
    }

    func channelActive(context: ChannelHandlerContext) {
        // With implicit TLS, NIOSSL holds this write until the handshake is done.
        send(server.options.greeting + "\r\n", context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        server.recordClosed()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event { tls = true }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        server.record(error: "\(error)")
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reads += 1
        buffer.append(contentsOf: unwrapInboundIn(data).readableBytesView)
        process(context: context)
    }

    private func process(context: ChannelHandlerContext) {
        while context.channel.isActive {
            if inData {
                guard let end = dataEnd() else { return }
                server.record(message: Array(buffer[..<end]))
                buffer.removeFirst(end)
                inData = false
                let endOfData = ReceivedCommand(line: ".", tls: tls, connection: connection, read: reads)
                server.record(endOfData)
                guard act(on: endOfData, context: context) else { return }
            } else {
                guard let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) else { return }
                var lineBytes = buffer[..<newline]
                if lineBytes.last == UInt8(ascii: "\r") { lineBytes = lineBytes.dropLast() }
                let line = String(decoding: lineBytes, as: UTF8.self)
                buffer.removeFirst(newline + 1)
                let command = ReceivedCommand(line: line, tls: tls, connection: connection, read: reads)
                server.record(command)
                guard act(on: command, context: context) else { return }
            }
        }
    }

    /// Index just past the ".\r\n" that ends the data, if it has arrived.
    private func dataEnd() -> Int? {
        let terminator: [UInt8] = Array(".\r\n".utf8)
        if buffer.starts(with: terminator) { return 3 }
        let pattern: [UInt8] = Array("\r\n.\r\n".utf8)
        guard buffer.count >= pattern.count else { return nil }
        for start in 0...(buffer.count - pattern.count) where buffer[start..<(start + pattern.count)].elementsEqual(pattern) {
            return start + pattern.count
        }
        return nil
    }

    /// Returns false when processing of further input must stop (closed or TLS started).
    private func act(on command: ReceivedCommand, context: ChannelHandlerContext) -> Bool {
        let step = authLoginStep
        if authLoginStep > 0 { authLoginStep = authLoginStep == 2 ? 0 : authLoginStep + 1 }
        let action = server.script(command) ?? server.defaultAction(for: command, authLoginStep: step)
        if command.verb == "AUTH", command.line.uppercased().hasPrefix("AUTH LOGIN"), case .reply(let text) = action,
           text.hasPrefix("334") {
            authLoginStep = 1
        }
        if command.verb == "DATA", case .reply(let text) = action, text.hasPrefix("354") { inData = true }
        switch action {
        case .reply(let text):
            send(text + "\r\n", context: context)
        case .raw(let chunks):
            for chunk in chunks { send(chunk, context: context, includeDeferred: false) }
        case .replyAndClose(let text):
            send(text + "\r\n", context: context)
            context.close(promise: nil)
            return false
        case .close:
            context.close(promise: nil)
            return false
        case .silent:
            break
        case .deferred(let text):
            deferred.append(text + "\r\n")
        case .startTLS(let chunks):
            for chunk in chunks { send(chunk, context: context) }
            buffer.removeAll()
            do {
                try context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: server.options.tls!), position: .first)
            } catch {
                server.record(error: "could not add TLS: \(error)")
                context.close(promise: nil)
            }
            return false
        }
        return true
    }

    private func send(_ text: String, context: ChannelHandlerContext, includeDeferred: Bool = true) {
        let all = (includeDeferred ? deferred.joined() : "") + text
        if includeDeferred { deferred.removeAll() }
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: all)), promise: nil)
    }
}
