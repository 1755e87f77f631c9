import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

/// One TCP connection to the server, seen as "write a command, await a reply". It knows
/// nothing about SMTP's order of commands: that is `SMTPSession`'s job.
///
/// The channel's only handlers are the optional TLS handler and `SMTPReplyHandler`; every
/// operation hops to the event loop to talk to the handler, which never leaves the loop.
final class SMTPConnection: Sendable {
    let channel: any Channel
    /// Held here, not looked up in the pipeline: a closed channel drops its handlers, and the
    /// reason it closed (a TLS failure, an injection) must still be reported.
    private let handler: NIOLoopBound<SMTPReplyHandler>

    private init(channel: any Channel, handler: NIOLoopBound<SMTPReplyHandler>) {
        self.channel = channel
        self.handler = handler
    }

    /// Connects within `timeout`. With `implicitTLS`, TLS starts on the first byte and a failed
    /// handshake surfaces as a `.tls` error on the first read.
    static func connect(
        host: String,
        port: Int,
        implicitTLS: SMTPTLSParameters?,
        timeout: Duration,
        group: any EventLoopGroup
    ) async throws(SMTPError) -> SMTPConnection {
        let handlerBox = NIOLockedValueBox<NIOLoopBound<SMTPReplyHandler>?>(nil)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(TimeAmount(timeout))
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let implicitTLS {
                        try channel.pipeline.syncOperations.addHandler(implicitTLS.makeHandler())
                    }
                    let handler = SMTPReplyHandler(implicitTLS: implicitTLS != nil)
                    try channel.pipeline.syncOperations.addHandler(handler)
                    handlerBox.withLockedValue { $0 = NIOLoopBound(handler, eventLoop: channel.eventLoop) }
                }
            }
        do {
            let channel = try await bootstrap.connect(host: host, port: port).get()
            guard let handler = handlerBox.withLockedValue({ $0 }) else {
                channel.close(promise: nil)
                throw SMTPError(.connect, "connection to \(host):\(port) was not set up")
            }
            return SMTPConnection(channel: channel, handler: handler)
        } catch let error as ChannelError {
            if case .connectTimeout = error {
                throw SMTPError(.timeout, "could not connect to \(host):\(port) within \(timeout)")
            }
            throw SMTPError(.connect, "could not connect to \(host):\(port): \(error)")
        } catch let error as NIOSSLExtraError {
            throw SMTPError(.tls, "cannot start TLS with \(host): \(error)")
        } catch {
            throw SMTPError(.connect, "could not connect to \(host):\(port): \(error)")
        }
    }

    /// Runs `body` on the event loop with the reply handler.
    private func withHandler<T: Sendable>(
        _ body: @escaping @Sendable (SMTPReplyHandler, EventLoopPromise<T>) -> Void
    ) async throws(SMTPError) -> T {
        let handler = self.handler
        let promise = channel.eventLoop.makePromise(of: T.self)
        channel.eventLoop.execute {
            body(handler.value, promise)
        }
        do {
            return try await promise.futureResult.get()
        } catch let error as SMTPError {
            throw error
        } catch {
            throw SMTPError(.closed, "connection error: \(error)")
        }
    }

    /// Writes and flushes. A write to a closed connection is `.closed`.
    func write(_ bytes: [UInt8]) async throws(SMTPError) {
        do {
            try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
        } catch {
            // Prefer the reason the handler recorded (e.g. a TLS failure) over "channel closed".
            if let recorded = await recordedFailure() { throw recorded }
            throw SMTPError(.closed, "could not write to the server: \(error)")
        }
    }

    func write(command: String) async throws(SMTPError) {
        try await write(Array((command + "\r\n").utf8))
    }

    func readReply(timeout: Duration) async throws(SMTPError) -> SMTPReply {
        try await withHandler { handler, promise in
            handler.nextReply(promise: promise, timeout: timeout)
        }
    }

    /// Sends one command and reads its reply.
    func command(_ command: String, timeout: Duration) async throws(SMTPError) -> SMTPReply {
        try await write(command: command)
        return try await readReply(timeout: timeout)
    }

    /// Sends STARTTLS and returns its reply. On a 220 the handler has already swapped TLS in
    /// (see `SMTPReplyHandler.deliver`); this then waits for the handshake to finish.
    func startTLS(_ parameters: SMTPTLSParameters, timeout: Duration) async throws(SMTPError) -> SMTPReply {
        let _: Bool = try await withHandler { handler, promise in
            handler.expectStartTLSReply(parameters)
            promise.succeed(true)
        }
        let reply = try await command("STARTTLS", timeout: timeout)
        guard reply.code == 220 else { return reply }
        let _: Bool = try await withHandler { handler, promise in
            let done = promise.futureResult.eventLoop.makePromise(of: Void.self)
            handler.handshakeCompleted(promise: done, timeout: timeout)
            done.futureResult.map { true }.cascade(to: promise)
        }
        return reply
    }

    /// Cancels the idle timer and says whether the connection can carry another transaction.
    func takeForUse() async -> Bool {
        (try? await withHandler { handler, promise in
            handler.disarmIdleTimer()
            promise.succeed(handler.isClean)
        }) ?? false
    }

    func armIdleTimer(_ duration: Duration) {
        let handler = self.handler
        channel.eventLoop.execute {
            handler.value.armIdleTimer(duration)
        }
    }

    private func recordedFailure() async -> SMTPError? {
        let handler = self.handler
        return try? await channel.eventLoop.submit {
            handler.value.failure
        }.get()
    }

    /// QUIT (waiting briefly for the 221 so the server logs a clean end), then close.
    func quit(timeout: Duration) async {
        if await takeForUse() {
            _ = try? await command("QUIT", timeout: timeout)
        }
        close()
    }

    func close() {
        channel.close(promise: nil)
    }
}
