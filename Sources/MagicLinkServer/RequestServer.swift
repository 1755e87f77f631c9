import Logging
import MagicLinkProtocol
import NIOCore

/// Serves one connection's request lines (cut by `ConnectionGuard`, blank lines left out) in
/// order. What needs no database (`hello`, a line that is not a request, a cached `session`) is
/// answered at once; an uncached `session` goes to the session pool and comes back by callback;
/// every other op runs in a task on this channel's event loop. Each reply is written from the
/// loop when it is ready, and the next line waits for it (replies keep request order). Lines
/// that arrive meanwhile queue here; past `maximumQueued` the guard is told not to read, so a
/// client that pipelines without reading fills its own socket buffer, not ours.
///
/// Not a channel handler of its own: the guard, the connection's only handler, calls it
/// directly, and it writes through the guard. As a second handler in the pipeline every line,
/// reply, flush and read took one more hop through it (about 2% of a cached `session`'s CPU at
/// 32 connections; README, Performance, change 25). Everything here runs on the channel's event
/// loop.
///
/// Measured against serving the connection from a task over `NIOAsyncChannel` (an async
/// sequence in, an async writer out): that machinery was about a fifth of the daemon's CPU at
/// 32 connections.
final class RequestServer {
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

    /// The channel's event loop, where everything here runs.
    let eventLoop: any EventLoop

    /// The guard this serves for, from `attach` until the guard leaves the pipeline: replies,
    /// reads and closes go through it.
    @exclusivity(unchecked) private var connection: ConnectionGuard?

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
    /// loop, the moment it happens; the guard passes each on, and a handler put in front of the
    /// guard must pass them on too, or a connection could stall): asking the channel took a call
    /// through its existential and a retain, three times per request.
    @exclusivity(unchecked) private var writable = true
    /// The channels' allocator (the daemon never sets another).
    private let allocator = ByteBufferAllocator()

    init(slot: ConnectionRegistry.Slot, peer: PeerCredentials, dispatcher: Dispatcher, registry: ConnectionRegistry, logger: Logger,
         eventLoop: any EventLoop, maximumQueued: Int = 128) {
        self.eventLoop = eventLoop
        self.slot = slot
        self.peer = peer
        self.dispatcher = dispatcher
        self.registry = registry
        self.logger = logger
        self.maximumQueued = maximumQueued
    }

    // MARK: called by the guard

    /// The guard joined the pipeline.
    func attach(to connection: ConnectionGuard) {
        self.connection = connection
    }

    /// The guard left the pipeline: nothing more goes out through it (and the two no longer
    /// hold each other).
    func detach() {
        closed = true
        queue.removeAll()
        connection = nil
    }

    /// A request line arrived.
    func lineReceived(_ line: ByteBuffer) {
        guard !closed, !inputDone else { return }
        // The usual case, one line at a time: served without a trip through the queue.
        if queue.isEmpty, !busy, writable {
            serve(.line(line))
        } else {
            queue.append(.line(line))
        }
        serveNext()
    }

    /// The client closed its sending side.
    func inputClosed() {
        guard !closed, !inputDone else { return }
        inputDone = true
        queue.append(.end)
        serveNext()
    }

    /// A line grew past the limit: it is answered `request_too_large` in its turn, then the
    /// connection closes.
    func lineTooLong() {
        guard !closed, !inputDone else { return }
        inputDone = true
        queue.append(.tooLarge)
        serveNext()
    }

    /// The channel reported an error (a failed read, for one).
    func failed(_ error: any Error) {
        guard !closed, !inputDone else { return }
        logger.debug("connection ended with an error", metadata: ["error": "\(error)"])
        close()
    }

    func channelClosed() {
        closed = true
        queue.removeAll()
    }

    /// Whether the guard may ask the socket for more bytes now. Held while lines wait, while
    /// replies wait for the client to read them (so a client that pipelines without reading
    /// fills its own buffers, not ours), and once input is done (nothing after an over-long line
    /// is read); `serveNext` asks for the read once the hold ends.
    func mayRead() -> Bool {
        if queue.count >= maximumQueued || !writable || inputDone {
            heldRead = true
            return false
        }
        return true
    }

    func writabilityChanged(_ isWritable: Bool) {
        writable = isWritable
        if writable { serveNext() }
    }

    // MARK: serving

    /// Takes queued lines until one needs the dispatcher, the client must read replies first,
    /// or the connection ends.
    private func serveNext() {
        while !busy, !closed, writable, let item = queue.popFirst() {
            serve(item)
        }
        guard !closed else { return }
        if !busy, queue.isEmpty, shutdownSeen {
            close()  // answered what was in hand; nothing waits
            return
        }
        if heldRead, queue.count < maximumQueued, writable, !inputDone {
            heldRead = false
            connection?.readFromServer()
        }
    }

    /// Answers one item, or starts its answer and marks the server busy until `finish`.
    private func serve(_ item: Item) {
        switch item {
        case .end:
            close()
        case .tooLarge:
            reply(dispatcher.tooLargeReply())
            close()
        case .line(let line):
            guard registry.markBusy(slot) else {
                // Read but not started when shutdown began: say so, then close.
                reply(Envelope.failure(id: .null, error: WireError(.unavailable, "The daemon is shutting down; try again shortly.")))
                close()
                return
            }
            if line.readableBytes > dispatcher.maxLineBytes {
                reply(dispatcher.tooLargeReply())
                close()
                return
            }
            switch dispatcher.prepare(line) {
            case .answered(let answer):
                // Idle before the reply goes out: its flush can fire a writability change that
                // starts the next queued request here and now, which must stay busy.
                if !registry.markIdle(slot) { shutdownSeen = true }
                reply(answer)
            case .session(let request):
                busy = true
                registry.requestStarted()
                let bound = NIOLoopBound(self, eventLoop: eventLoop)
                dispatcher.replySession(request) { answer in
                    bound.eventLoop.execute { bound.value.finish(answer) }
                }
            case .request(let request):
                busy = true
                registry.requestStarted()
                dispatch(request)
            }
        }
    }

    private func dispatch(_ request: Request) {
        let eventLoop = self.eventLoop
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        let dispatcher = self.dispatcher
        let peer = self.peer
        Task(executorPreference: EventLoopTaskExecutor(eventLoop)) {
            let answer = await dispatcher.reply(to: request, peer: peer)
            if eventLoop.inEventLoop {
                bound.value.finish(answer)
            } else {
                eventLoop.execute { bound.value.finish(answer) }
            }
        }
    }

    private func finish(_ answer: [UInt8]) {
        registry.requestEnded()
        busy = false
        guard !closed else { return }
        // During shutdown the next queued line hears `unavailable` (in serveNext), then the
        // connection closes. Idle before the reply goes out, as in `serve`.
        if !registry.markIdle(slot) { shutdownSeen = true }
        reply(answer)
        serveNext()
    }

    private func reply(_ bytes: [UInt8]) {
        reply(allocator.buffer(bytes: bytes))
    }

    private func reply(_ buffer: ByteBuffer) {
        // Before the write: a close that its flush sets off must wait for this reply.
        wroteReply = true
        connection?.writeReply(buffer)
    }

    private func close() {
        guard !closed else { return }
        closed = true
        queue.removeAll()
        connection?.closeFromServer(afterWrites: wroteReply)
    }
}
