import Logging
import MagicLinkProtocol
import NIOCore

/// Serves one connection's request lines (cut by `ConnectionGuard`, blank lines left out) in
/// order, as a channel handler. What needs no database
/// (`hello`, a line that is not a request) is answered at once; `session` goes to the session
/// pool and comes back by callback; every other op runs in a task on this channel's event loop.
/// Each reply is written from the loop when it is ready, and the next line waits for it
/// (replies keep request order). Lines
/// that arrive meanwhile queue here; past `maximumQueued` the handler stops asking the channel
/// to read, so a client that pipelines without reading fills its own socket buffer, not ours.
///
/// Measured against serving the connection from a task over `NIOAsyncChannel` (an async
/// sequence in, an async writer out): that machinery was about a fifth of the daemon's CPU at
/// 32 connections.
final class RequestHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Item {
        case line(ByteBuffer)
        /// A line grew past the limit without ending: answer `request_too_large`, then close.
        case tooLarge
        /// The client closed its sending side: close once everything before is answered.
        case end
    }

    let slot: ConnectionRegistry.Slot
    let peer: PeerCredentials
    let dispatcher: Dispatcher
    let registry: ConnectionRegistry
    let logger: Logger
    let maximumQueued: Int

    // Touched only on the channel's event loop, and no access spans a call that could reach
    // the property again: the run-time exclusivity checks could never fire (as in
    // `ConnectionGuard`).
    @exclusivity(unchecked) private var queue = CircularBuffer<Item>()
    @exclusivity(unchecked) private var busy = false
    @exclusivity(unchecked) private var closed = false
    @exclusivity(unchecked) private var heldRead = false
    /// Nothing more is read: the client closed its side or a line overflowed.
    @exclusivity(unchecked) private var inputDone = false
    /// The registry said shutdown has begun: close as soon as nothing is in hand.
    @exclusivity(unchecked) private var shutdownSeen = false
    /// A reply was written: a close then waits until it is out, so it is not lost.
    @exclusivity(unchecked) private var wroteReply = false
    /// The channel's writability, as its change events tell it (every change fires one, on this
    /// loop, the moment it happens): asking the channel took a call through its existential and
    /// a retain, three times per request. `ConnectionGuard`, before this handler, passes the
    /// events on untouched; a handler put in front of it must too, or a connection could stall.
    @exclusivity(unchecked) private var writable = true
    /// The channels' allocator (the daemon never sets another).
    private let allocator = ByteBufferAllocator()

    init(slot: ConnectionRegistry.Slot, peer: PeerCredentials, dispatcher: Dispatcher, registry: ConnectionRegistry, logger: Logger,
         maximumQueued: Int = 128) {
        self.slot = slot
        self.peer = peer
        self.dispatcher = dispatcher
        self.registry = registry
        self.logger = logger
        self.maximumQueued = maximumQueued
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closed, !inputDone else { return }
        let line = unwrapInboundIn(data)
        // The usual case, one line at a time: served without a trip through the queue.
        if queue.isEmpty, !busy, writable {
            serve(.line(line), context: context)
        } else {
            queue.append(.line(line))
        }
        serveNext(context: context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event, !closed, !inputDone {
            inputDone = true
            queue.append(.end)
            serveNext(context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !closed, !inputDone else { return }
        switch error {
        case is RequestLineTooLong:
            inputDone = true
            queue.append(.tooLarge)
            serveNext(context: context)
        default:
            logger.debug("connection ended with an error", metadata: ["error": "\(error)"])
            close(context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        queue.removeAll()
        context.fireChannelInactive()
    }

    func read(context: ChannelHandlerContext) {
        // Held while lines wait, while replies wait for the client to read them (so a client
        // that pipelines without reading fills its own buffers, not ours), and once input is
        // done (nothing after an over-long line is read).
        if queue.count >= maximumQueued || !writable || inputDone {
            heldRead = true
        } else {
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        writable = context.channel.isWritable
        if writable { serveNext(context: context) }
        context.fireChannelWritabilityChanged()
    }

    /// Takes queued lines until one needs the dispatcher, the client must read replies first,
    /// or the connection ends.
    private func serveNext(context: ChannelHandlerContext) {
        while !busy, !closed, writable, let item = queue.popFirst() {
            serve(item, context: context)
        }
        guard !closed else { return }
        if !busy, queue.isEmpty, shutdownSeen {
            close(context: context)  // answered what was in hand; nothing waits
            return
        }
        if heldRead, queue.count < maximumQueued, writable, !inputDone {
            heldRead = false
            context.read()
        }
    }

    /// Answers one item, or starts its answer and marks the handler busy until `finish`.
    private func serve(_ item: Item, context: ChannelHandlerContext) {
        switch item {
        case .end:
            close(context: context)
        case .tooLarge:
            reply(dispatcher.tooLargeReply(), context: context)
            close(context: context)
        case .line(let line):
            guard registry.markBusy(slot) else {
                // Read but not started when shutdown began: say so, then close.
                reply(Envelope.failure(id: .null, error: WireError(.unavailable, "The daemon is shutting down; try again shortly.")),
                      context: context)
                close(context: context)
                return
            }
            if line.readableBytes > dispatcher.maxLineBytes {
                reply(dispatcher.tooLargeReply(), context: context)
                close(context: context)
                return
            }
            switch dispatcher.prepare(line) {
            case .answered(let answer):
                reply(answer, context: context)
                if !registry.markIdle(slot) { shutdownSeen = true }
            case .session(let request):
                busy = true
                registry.requestStarted()
                let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
                dispatcher.replySession(request) { answer in
                    bound.eventLoop.execute { bound.value.handler.finish(answer, context: bound.value.context) }
                }
            case .request(let request):
                busy = true
                registry.requestStarted()
                dispatch(request, context: context)
            }
        }
    }

    private func dispatch(_ request: Request, context: ChannelHandlerContext) {
        let eventLoop = context.eventLoop
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: eventLoop)
        let dispatcher = self.dispatcher
        let peer = self.peer
        Task(executorPreference: EventLoopTaskExecutor(eventLoop)) {
            let answer = await dispatcher.reply(to: request, peer: peer)
            if eventLoop.inEventLoop {
                bound.value.handler.finish(answer, context: bound.value.context)
            } else {
                eventLoop.execute { bound.value.handler.finish(answer, context: bound.value.context) }
            }
        }
    }

    private func finish(_ answer: [UInt8], context: ChannelHandlerContext) {
        registry.requestEnded()
        busy = false
        guard !closed else { return }
        reply(answer, context: context)
        // During shutdown the next queued line hears `unavailable` (in serveNext), then the
        // connection closes.
        if !registry.markIdle(slot) { shutdownSeen = true }
        serveNext(context: context)
    }

    private func reply(_ bytes: [UInt8], context: ChannelHandlerContext) {
        reply(allocator.buffer(bytes: bytes), context: context)
    }

    private func reply(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        wroteReply = true
    }

    private func close(context: ChannelHandlerContext) {
        guard !closed else { return }
        closed = true
        queue.removeAll()
        guard wroteReply else {
            context.close(promise: nil)
            return
        }
        // Writes complete in order: once an empty write after the replies is done, they are out.
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(ByteBuffer())).whenComplete { _ in channel.close(promise: nil) }
    }
}
