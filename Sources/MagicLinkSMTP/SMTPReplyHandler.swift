import NIOCore
import NIOSSL
import NIOTLS

/// The inbound end of an SMTP client channel: splits bytes into lines (4096 bytes at most),
/// assembles replies, and hands them to whoever waits, one at a time, with a timeout.
///
/// It also performs the STARTTLS swap itself, synchronously inside `channelRead`: when the
/// 220 to STARTTLS is decoded, any byte left after it is a STARTTLS response injection
/// (CVE-2011-0411 class) and fails the connection; otherwise the buffer is cleared and the
/// TLS handler is put at the front of the pipeline before the event loop reads anything
/// else, so no plaintext byte can ever be taken for a reply sent under TLS.
///
/// Every method runs on the channel's event loop.
final class SMTPReplyHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    static let maxLineLength = 4096

    enum TLSState {
        case plaintext
        /// STARTTLS was sent; on a 220 the handler adds TLS with these parameters.
        case awaitingStartTLSReply(SMTPTLSParameters)
        case handshaking
        case established
    }

    private struct Waiter<Value: Sendable> {
        var promise: EventLoopPromise<Value>
        var timeout: Scheduled<Void>
    }

    private(set) var tlsState: TLSState
    private var buffer = ByteBuffer()
    private var assembler = SMTPReplyAssembler()
    private var replies = CircularBuffer<SMTPReply>()
    private var replyWaiter: Waiter<SMTPReply>?
    private var handshakeWaiter: Waiter<Void>?
    private var idleTimer: Scheduled<Void>?
    /// Set once; after it the connection is unusable and every wait fails with it.
    private(set) var failure: SMTPError?
    private var context: ChannelHandlerContext?

    init(implicitTLS: Bool) {
        self.tlsState = implicitTLS ? .handshaking : .plaintext
    }

    /// True when nothing unexpected happened since the last reply: no stray reply, no partial
    /// data, no failure, still connected. Used before reusing a pooled connection.
    var isClean: Bool {
        failure == nil && replies.isEmpty && !assembler.isMidReply && buffer.readableBytes == 0
            && (context?.channel.isActive ?? false)
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        fail(SMTPError(.closed, "connection handler removed"))
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard failure == nil else { return }
        var incoming = unwrapInboundIn(data)
        buffer.writeBuffer(&incoming)
        decode(context: context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            tlsState = .established
            if let waiter = handshakeWaiter {
                handshakeWaiter = nil
                waiter.timeout.cancel()
                waiter.promise.succeed(())
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .handshaking = tlsState {
            fail(SMTPError(.tls, "connection closed during the TLS handshake"))
        } else {
            fail(SMTPError(.closed, "connection closed by the server"))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(Self.classify(error, tlsState: tlsState))
    }

    /// TLS library errors are `.tls` while the handshake runs, and also after it unless they
    /// are merely the peer closing TCP without close_notify.
    static func classify(_ error: any Error, tlsState: TLSState) -> SMTPError {
        if case .handshaking = tlsState {
            return SMTPError(.tls, "TLS handshake failed: \(error)")
        }
        if let sslError = error as? NIOSSLError {
            if case .uncleanShutdown = sslError {
                return SMTPError(.closed, "connection closed by the server without TLS close_notify")
            }
            return SMTPError(.tls, "TLS error: \(sslError)")
        }
        if error is NIOSSLExtraError || error is BoringSSLError {
            return SMTPError(.tls, "TLS error: \(error)")
        }
        return SMTPError(.closed, "connection error: \(error)")
    }

    // MARK: Decoding

    private func decode(context: ChannelHandlerContext) {
        while failure == nil, let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
            let length = newline - buffer.readerIndex
            var line = buffer.readSlice(length: length + 1)!.readableBytesView.dropLast()
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            guard line.count <= Self.maxLineLength else {
                fail(SMTPError(.protocolViolation, "reply line longer than \(Self.maxLineLength) bytes"))
                return
            }
            switch assembler.add(lineBytes: line) {
            case .needMore:
                continue
            case .invalid(let why):
                fail(SMTPError(.protocolViolation, "invalid reply from server: \(why)"))
                return
            case .reply(let reply):
                deliver(reply, context: context)
            }
        }
        if failure == nil, buffer.readableBytes > Self.maxLineLength + 2 {
            fail(SMTPError(.protocolViolation, "reply line longer than \(Self.maxLineLength) bytes"))
            return
        }
        buffer.discardReadBytes()
    }

    private func deliver(_ reply: SMTPReply, context: ChannelHandlerContext) {
        if case .awaitingStartTLSReply(let parameters) = tlsState {
            guard reply.code == 220 else {
                tlsState = .plaintext
                hand(reply)
                return
            }
            guard buffer.readableBytes == 0, !assembler.isMidReply else {
                // The server (or someone in the path) put bytes after the 220 in the same
                // packet. Had we kept them, they would be read as replies under TLS.
                fail(SMTPError(.protocolViolation, "data after the STARTTLS 220 reply (possible response injection)"))
                return
            }
            buffer.clear()
            tlsState = .handshaking
            do {
                let tlsHandler = try parameters.makeHandler()
                try context.pipeline.syncOperations.addHandler(tlsHandler, position: .first)
            } catch {
                fail(SMTPError(.tls, "cannot start TLS: \(error)"))
                return
            }
        }
        hand(reply)
    }

    private func hand(_ reply: SMTPReply) {
        if let waiter = replyWaiter {
            replyWaiter = nil
            waiter.timeout.cancel()
            waiter.promise.succeed(reply)
        } else {
            replies.append(reply)
        }
    }

    // MARK: Requests from SMTPConnection

    /// Completes with the next reply, or fails with the connection's failure or `.timeout`.
    func nextReply(promise: EventLoopPromise<SMTPReply>, timeout: Duration) {
        if let reply = replies.popFirst() {
            promise.succeed(reply)
            return
        }
        if let failure {
            promise.fail(failure)
            return
        }
        precondition(replyWaiter == nil, "one reply reader at a time")
        let task = promise.futureResult.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) {
            self.fail(SMTPError(.timeout, "no reply from the server within \(timeout)"))
        }
        replyWaiter = Waiter(promise: promise, timeout: task)
    }

    /// Marks STARTTLS as sent, so the next 220 switches the pipeline to TLS.
    /// Arms the STARTTLS swap. Anything the server said unasked before this point is dropped
    /// (and the connection is not clean): no plaintext reply may be read as the STARTTLS answer
    /// or survive into the TLS session.
    func expectStartTLSReply(_ parameters: SMTPTLSParameters) {
        replies.removeAll()
        tlsState = .awaitingStartTLSReply(parameters)
    }

    /// Completes once the TLS handshake has finished (immediately if it already has).
    func handshakeCompleted(promise: EventLoopPromise<Void>, timeout: Duration) {
        if let failure {
            promise.fail(failure)
            return
        }
        switch tlsState {
        case .established:
            promise.succeed(())
        case .handshaking:
            let task = promise.futureResult.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) {
                self.fail(SMTPError(.timeout, "TLS handshake did not finish within \(timeout)"))
            }
            handshakeWaiter = Waiter(promise: promise, timeout: task)
        case .plaintext, .awaitingStartTLSReply:
            promise.fail(SMTPError(.tls, "TLS was not started"))
        }
    }

    /// Closes the connection politely (QUIT) if it stays unused for `duration`.
    func armIdleTimer(_ duration: Duration) {
        idleTimer?.cancel()
        guard let channel = context?.channel, failure == nil else { return }
        idleTimer = channel.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(duration)) {
            self.idleTimer = nil
            guard self.failure == nil, self.replyWaiter == nil else { return }
            self.fail(SMTPError(.closed, "connection idle for \(duration); closed"), sendQuit: true)
        }
    }

    func disarmIdleTimer() {
        idleTimer?.cancel()
        idleTimer = nil
    }

    /// Records the first failure, fails every waiter and closes the channel.
    func fail(_ error: SMTPError, sendQuit: Bool = false) {
        guard failure == nil else { return }
        failure = error
        idleTimer?.cancel()
        idleTimer = nil
        if let waiter = replyWaiter {
            replyWaiter = nil
            waiter.timeout.cancel()
            waiter.promise.fail(error)
        }
        if let waiter = handshakeWaiter {
            handshakeWaiter = nil
            waiter.timeout.cancel()
            waiter.promise.fail(error)
        }
        buffer.clear()
        guard let channel = context?.channel else { return }
        if sendQuit, channel.isActive {
            channel.writeAndFlush(ByteBuffer(string: "QUIT\r\n")).whenComplete { _ in
                channel.close(promise: nil)
            }
        } else {
            channel.close(promise: nil)
        }
    }
}
