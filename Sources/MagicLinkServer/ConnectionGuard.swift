import Logging
import MagicLinkProtocol
import NIOConcurrencyHelpers
import NIOCore

/// The handler of every served connection, on its event loop: cuts the bytes coming in into
/// request lines (`LineFramer`) and hands each request line to its `RequestServer` (or, with
/// none, as in tests of the guard alone, to the next handler), follows the replies going out,
/// keeps the connection's activity up to date in the registry (for the capacity rule), and
/// enforces the timers of Protocol/README.md section 1 with one scheduled task at a time:
///
/// - `request_timeout` from the first byte of a request line to its line feed: the client gets
///   `invalid_request` (`details.reason` `request_timeout`) once the requests before it are
///   answered, and the connection is closed. The clock stops while the server itself is not
///   reading (its queue of unanswered lines is full), so only the client's slowness counts.
/// - `request_timeout` for a reply to be written: a client that does not read is cut off.
/// - `idle_timeout` since the last reply (or the connection's start) while nothing is being
///   received or answered: the connection is closed.
///
/// A line that grows past the limit without ending is reported to the server (without one, to
/// the next handler as `RequestLineTooLong`, in `errorCaught`), and nothing more is read.
///
/// Framing here instead of in a `ByteToMessageHandler` before the next handler, and learning
/// that replies are written from the channel's buffered byte count after each flush instead of
/// from a promise per reply, took about a quarter of the daemon's CPU off each request at 32
/// connections (README, Performance). A promise is used only while the client is slow to read.
final class ConnectionGuard: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let slot: ConnectionRegistry.Slot
    private let registry: ConnectionRegistry
    private let requestTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private let peer: PeerCredentials
    private let logs: ConnectionLogs
    /// Serves the lines; it writes its replies, asks for reads and closes through `writeReply`,
    /// `readFromServer` and `closeFromServer`. Nil only in tests of the guard alone, which say
    /// so (no default: a wiring that forgot it would hand every line to nothing).
    private let server: RequestServer?

    // Every stored property below is touched only on the channel's event loop, and no access
    // to one spans a call that could reach it again (the framer's `next` calls nothing, and
    // lines and replies pass to and from the server outside any access): the run-time exclusivity
    // checks (a thread-local look-up per access, several per request) could never fire.
    @exclusivity(unchecked) private var context: ChannelHandlerContext?
    @exclusivity(unchecked) private var framer: LineFramer
    /// The line being received passed the limit: nothing more is read or handed on.
    @exclusivity(unchecked) private var overflowed = false
    /// Set while `channelRead` hands lines on: the connection stays busy in the registry until
    /// the whole read is served (a newcomer cannot evict it between two pipelined lines), and a
    /// read that arrives re-entrantly meanwhile waits in `reentrantBytes` for the rest.
    @exclusivity(unchecked) private var delivering = false
    @exclusivity(unchecked) private var reentrantBytes: ByteBuffer?
    /// Request lines read whose reply is not yet written to the socket.
    @exclusivity(unchecked) private var unanswered = 0
    /// Writes of reply lines handed on and not yet completed.
    @exclusivity(unchecked) private var outstandingWrites = 0
    /// Of `outstandingWrites`, those handed on without a promise (all, unless the client is slow
    /// to read): a flush that leaves nothing buffered completes them; otherwise one empty write
    /// with a promise, after them, tells when they are done.
    @exclusivity(unchecked) private var untrackedWrites = 0
    /// Set while writes are buffered in the channel after a flush: every reply then gets a
    /// promise, so progress is seen reply by reply until the buffer drains.
    @exclusivity(unchecked) private var clientSlow = false
    @exclusivity(unchecked) private var idleSince: NIODeadline
    @exclusivity(unchecked) private var lineStartedAt: NIODeadline
    @exclusivity(unchecked) private var lastWriteProgress: NIODeadline
    /// A read is requested from the socket: the server wants the client's bytes.
    @exclusivity(unchecked) private var reading = false
    @exclusivity(unchecked) private var readingStoppedAt: NIODeadline?
    /// The line being received ran out of time: the answers before it are written, then the
    /// timeout reply, then the connection closes.
    @exclusivity(unchecked) private var timedOut = false
    @exclusivity(unchecked) private var closing = false
    @exclusivity(unchecked) private var activity: ConnectionActivity
    @exclusivity(unchecked) private var timer: Scheduled<Void>?
    @exclusivity(unchecked) private var timerDeadline: NIODeadline?

    /// `now` is the event loop's clock (`EventLoop.now`), which every later reading uses too.
    init(slot: ConnectionRegistry.Slot, registry: ConnectionRegistry, policy: ConnectionPolicy, peer: PeerCredentials, logs: ConnectionLogs,
         maxLineBytes: Int, now: NIODeadline, server: RequestServer?) {
        self.server = server
        // One byte over the line limit leaves room for the carriage return of a line at the limit.
        self.framer = LineFramer(limit: maxLineBytes + 1)
        self.slot = slot
        self.registry = registry
        self.requestTimeout = policy.requestTimeout
        self.idleTimeout = policy.idleTimeout
        self.peer = peer
        self.logs = logs
        self.idleSince = now
        self.lineStartedAt = now
        self.lastWriteProgress = now
        self.activity = .idle(since: now)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        options = context.channel.syncOptions
        server?.attach(to: self)
    }

    /// The channel's synchronous options, asked once: `flush` reads the buffered byte count
    /// after every reply.
    @exclusivity(unchecked) private var options: (any NIOSynchronousChannelOptions)?

    /// The event loop's clock (virtual in tests with an embedded loop). While a read is served,
    /// its replies share the first reading: the rules count seconds, and two clock reads were a
    /// measurable part of a cached `session`. The write and idle timers may then run early by
    /// the time one read takes to serve (microseconds; a full read of pipelined lines answered
    /// at once, milliseconds), never late; the line timer reads the clock after the read.
    private var now: NIODeadline {
        if let clockInRead { return clockInRead }
        let reading = context?.eventLoop.now ?? .now()
        if delivering { clockInRead = reading }
        return reading
    }
    @exclusivity(unchecked) private var clockInRead: NIODeadline?

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimer()
        self.context = nil
        options = nil
        server?.detach()
    }

    func channelActive(context: ChannelHandlerContext) {
        arm()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closing = true
        cancelTimer()
        server?.channelClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let server { server.failed(error) } else { context.fireErrorCaught(error) }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        server?.writabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing, !timedOut, !overflowed else { return }  // dropped: nothing more is served here
        var bytes = unwrapInboundIn(data)
        if delivering {
            // NIO read again from inside a write of ours (it does when a write fails): these
            // bytes come after the ones in hand, so they wait for them.
            if reentrantBytes == nil { reentrantBytes = bytes } else { reentrantBytes!.writeBuffer(&bytes) }
            return
        }
        let wasMidLine = framer.midLine
        delivering = true
        let (endedLine, stillServed) = deliverLines(from: &bytes, context: context)
        delivering = false
        clockInRead = nil
        reentrantBytes = nil
        guard stillServed else {
            closing = true  // chosen to make room while idle: nothing is served, the close is on its way
            return
        }
        guard !closing else { return }
        if framer.midLine && (endedLine || !wasMidLine) { lineStartedAt = now }
        // Once per read: replies written meanwhile did not publish (the connection stayed busy
        // until the whole read was served).
        if currentActivity() != activity, !publishActivity() {
            closing = true
            return
        }
        arm()
    }

    /// Hands on each request line in `bytes` (and in bytes that arrive re-entrantly meanwhile),
    /// in order. Returns whether a line ended, and false as its second value when the registry
    /// chose this connection to make room before its first request was taken.
    private func deliverLines(from bytes: inout ByteBuffer, context: ChannelHandlerContext) -> (endedLine: Bool, stillServed: Bool) {
        var endedLine = false
        while !closing, !timedOut {
            switch framer.next(from: &bytes) {
            case .line(let line):
                endedLine = true
                unanswered += 1
                // Busy from the first request on (`delivering` keeps it so until the read is served).
                if activity != .busy, !publishActivity() { return (endedLine, false) }
                if let server { server.lineReceived(line) } else { context.fireChannelRead(wrapInboundOut(line)) }
            case .blank:
                endedLine = true
            case .needMore:
                guard let more = reentrantBytes else { return (endedLine, true) }
                reentrantBytes = nil
                bytes = more
            case .overflow:
                overflowed = true
                framer.discardPartialLine()
                unanswered += 1  // the `request_too_large` reply answers it
                if activity != .busy, !publishActivity() { return (endedLine, false) }
                if let server { server.lineTooLong() } else { context.fireErrorCaught(RequestLineTooLong()) }
                return (endedLine, true)
            }
        }
        return (endedLine, true)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        reading = false
        // The line clock only matters while a line is being received.
        if framer.midLine { readingStoppedAt = now }
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            // Bytes after the last line feed when the client closes its side are not a request.
            framer.discardPartialLine()
            publishActivity()
            arm()
            server?.inputClosed()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func read(context: ChannelHandlerContext) {
        // The server holds reads while it has enough in hand; it asks again (`readFromServer`).
        if let server, !server.mayRead() { return }
        if !reading {
            reading = true
            // The line clock stood still while the server was not reading.
            if framer.midLine, let stopped = readingStoppedAt {
                lineStartedAt = lineStartedAt + (now - stopped)
            }
            readingStoppedAt = nil
            arm()
        }
        context.read()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // Each reply is one line in one write; anything else (an empty write a test's handler
        // makes to learn when the replies before it are out) passes untouched.
        let buffer = unwrapOutboundIn(data)
        guard buffer.readableBytes > 0, buffer.getInteger(at: buffer.writerIndex - 1, as: UInt8.self) == 0x0A else {
            context.write(data, promise: promise)
            return
        }
        if outstandingWrites == 0 { lastWriteProgress = now }
        outstandingWrites += 1
        if clientSlow || promise != nil {
            let written = promise ?? context.eventLoop.makePromise()
            context.write(data, promise: written)
            written.futureResult.assumeIsolated().whenComplete { _ in self.repliesWritten(1) }
        } else {
            untrackedWrites += 1
            context.write(data, promise: nil)
        }
        arm()
    }

    func flush(context: ChannelHandlerContext) {
        context.flush()
        guard untrackedWrites > 0, !closing else { return }
        let buffered = (try? options?.getOption(.bufferedWritableBytes)) ?? 1
        let settled = untrackedWrites
        untrackedWrites = 0
        if buffered == 0 {
            repliesWritten(settled)
        } else {
            // The client is not keeping up: learn when these are written from an empty write
            // after them (writes complete in order), and follow the next ones one by one.
            clientSlow = true
            let marker = context.eventLoop.makePromise(of: Void.self)
            context.write(wrapOutboundOut(ByteBuffer()), promise: marker)
            context.flush()
            marker.futureResult.assumeIsolated().whenComplete { _ in self.repliesWritten(settled) }
        }
    }

    // MARK: for the server

    /// Writes and flushes one reply line of the server's, as if it had come down the pipeline.
    func writeReply(_ buffer: ByteBuffer) {
        guard let context else { return }
        write(context: context, data: wrapOutboundOut(buffer), promise: nil)
        flush(context: context)
    }

    /// The server's hold on reads ended.
    func readFromServer() {
        guard let context else { return }
        read(context: context)
    }

    /// Closes the connection for the server: once the replies written so far are out, if there
    /// are any (writes complete in order: an empty write after them tells when), else at once.
    func closeFromServer(afterWrites: Bool) {
        guard let context else { return }
        guard afterWrites else {
            context.close(promise: nil)
            return
        }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(ByteBuffer())).whenComplete { _ in channel.close(promise: nil) }
    }

    // MARK: state

    /// `replies` reply lines (one a write) reached the socket.
    private func repliesWritten(_ replies: Int) {
        let now = self.now
        outstandingWrites -= replies
        if outstandingWrites == 0 { clientSlow = false }
        lastWriteProgress = now
        unanswered = max(0, unanswered - replies)
        if unanswered == 0 { idleSince = now }
        guard !closing else { return }
        if !delivering { publishActivity() }  // else `channelRead` publishes once the read is served
        if timedOut && unanswered == 0 {
            sendTimeoutReply()
            return
        }
        arm()
    }

    /// Tells the registry what this connection is doing; false when it was chosen to make room.
    @discardableResult
    private func publishActivity() -> Bool {
        activity = currentActivity()
        return registry.update(slot, activity: activity)
    }

    private func currentActivity() -> ConnectionActivity {
        if unanswered > 0 || outstandingWrites > 0 || timedOut || delivering {
            return .busy
        } else if framer.midLine {
            return .receiving(since: lineStartedAt)
        } else {
            return .idle(since: idleSince)
        }
    }

    /// The next moment a rule may act, if any.
    private func nextDeadline() -> NIODeadline? {
        var next: NIODeadline?
        func consider(_ deadline: NIODeadline) { next = min(next ?? deadline, deadline) }
        if outstandingWrites > 0 { consider(lastWriteProgress + requestTimeout) }
        if framer.midLine && reading && !timedOut { consider(lineStartedAt + requestTimeout) }
        if unanswered == 0 && !framer.midLine && outstandingWrites == 0 && !timedOut { consider(idleSince + idleTimeout) }
        return next
    }

    /// One timer at a time, at the earliest deadline; a timer that fires early (the state moved
    /// on) just looks again.
    private func arm() {
        guard !closing, let context, let deadline = nextDeadline() else { return }
        if let timerDeadline, timerDeadline <= deadline { return }
        timer?.cancel()
        timerDeadline = deadline
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            timer = nil
            timerDeadline = nil
            check()
        }
    }

    private func cancelTimer() {
        timer?.cancel()
        timer = nil
        timerDeadline = nil
    }

    private func check() {
        guard !closing, let context else { return }
        let now = self.now
        if outstandingWrites > 0 && now >= lastWriteProgress + requestTimeout {
            logs.writeTimeout.log("connection closed: the client did not read its replies within request_timeout",
                                  metadata: peerMetadata(["request_timeout_s": "\(requestTimeout.nanoseconds / 1_000_000_000)"]),
                                  on: context.eventLoop)
            close()
            return
        }
        if framer.midLine && reading && !timedOut && now >= lineStartedAt + requestTimeout {
            timedOut = true
            publishActivity()
            logs.requestTimeout.log("request line not completed within request_timeout: answered and closed",
                                    metadata: peerMetadata(["request_timeout_s": "\(requestTimeout.nanoseconds / 1_000_000_000)",
                                                            "bytes": "\(framer.partialLength)"]),
                                    on: context.eventLoop)
            if unanswered == 0 && outstandingWrites == 0 {
                sendTimeoutReply()
            } else {
                arm()
            }
            return
        }
        if unanswered == 0 && !framer.midLine && outstandingWrites == 0 && !timedOut && now >= idleSince + idleTimeout {
            logs.idleTimeout.log("idle connection closed", metadata: peerMetadata(["idle_timeout_s": "\(idleTimeout.nanoseconds / 1_000_000_000)"]),
                                 on: context.eventLoop)
            close()
            return
        }
        arm()
    }

    private func sendTimeoutReply() {
        guard let context, !closing else { return }
        closing = true
        cancelTimer()
        let seconds = requestTimeout.nanoseconds / 1_000_000_000
        let reply = Envelope.failure(id: .null, error: WireError(
            .invalidRequest, "The request line was not completed within \(seconds) seconds.",
            details: ["reason": "request_timeout", "request_timeout_s": .integer(seconds)]))
        // A reply the client does not read must not hold the connection open either.
        let channel = context.channel
        let cutoff = context.eventLoop.scheduleTask(in: requestTimeout) { channel.close(promise: nil) }
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: reply))).assumeIsolated().whenComplete { _ in
            cutoff.cancel()
            context.close(promise: nil)
        }
    }

    private func close() {
        closing = true
        cancelTimer()
        context?.close(promise: nil)
    }

    private func peerMetadata(_ extra: Logger.Metadata) -> Logger.Metadata {
        var metadata = extra
        metadata["peer_uid"] = "\(peer.uid)"
        metadata["peer_gid"] = "\(peer.gid)"
        metadata["peer_pid"] = "\(peer.pid)"
        return metadata
    }
}

/// A request line grew past `max_line_bytes` without ending: what a guard without a server
/// (tests of the guard alone) hands to the next handler's `errorCaught`. With a server, the
/// server answers `request_too_large` and closes.
struct RequestLineTooLong: Error {}

/// The pipeline of a connection that is not served (peer not allowed, no room, shutting down):
/// nothing is ever read; the optional reply is written, then the connection is closed.
final class RefusedConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let reply: [UInt8]?

    init(reply: [UInt8]?) { self.reply = reply }

    func channelActive(context: ChannelHandlerContext) {
        guard let reply else {
            context.close(promise: nil)
            return
        }
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: reply))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    func read(context: ChannelHandlerContext) {}
}

/// The connection events worth a log line, each kind limited to one line a second (with the
/// number left out), so a client in a loop cannot flood the journal.
struct ConnectionLogs: Sendable {
    let refused: RateLimitedLog
    let full: RateLimitedLog
    let evicted: RateLimitedLog
    let requestTimeout: RateLimitedLog
    let writeTimeout: RateLimitedLog
    let idleTimeout: RateLimitedLog

    init(logger: Logger, interval: TimeAmount = .seconds(1)) {
        refused = RateLimitedLog(logger: logger, level: .warning, event: "peer_refused", interval: interval)
        full = RateLimitedLog(logger: logger, level: .warning, event: "connection_refused", interval: interval)
        evicted = RateLimitedLog(logger: logger, level: .info, event: "connection_evicted", interval: interval)
        requestTimeout = RateLimitedLog(logger: logger, level: .notice, event: "request_timeout", interval: interval)
        writeTimeout = RateLimitedLog(logger: logger, level: .notice, event: "write_timeout", interval: interval)
        idleTimeout = RateLimitedLog(logger: logger, level: .debug, event: "idle_timeout", interval: interval)
    }
}

/// One kind of log line, at most one per interval: a line left out is counted, and the count
/// comes with the next line (`suppressed=`) or in a summary line when the interval ends.
final class RateLimitedLog: Sendable {
    private struct State {
        var limiter: LogLimiter
        var lastMetadata: Logger.Metadata = [:]
    }

    let logger: Logger
    let level: Logger.Level
    let event: String
    private let state: NIOLockedValueBox<State>

    init(logger: Logger, level: Logger.Level, event: String, interval: TimeAmount) {
        self.logger = logger
        self.level = level
        self.event = event
        self.state = NIOLockedValueBox(State(limiter: LogLimiter(interval: interval)))
    }

    func log(_ message: String, metadata: Logger.Metadata, on eventLoop: any EventLoop) {
        guard logger.logLevel <= level else { return }
        let decision = state.withLockedValue { state in
            state.lastMetadata = metadata
            return state.limiter.event(at: eventLoop.now)
        }
        switch decision {
        case .log(let suppressed):
            var metadata = metadata
            metadata["event"] = "\(event)"
            if suppressed > 0 { metadata["suppressed"] = "\(suppressed)" }
            logger.log(level: level, "\(message)", metadata: metadata)
        case .suppress(let flushAt):
            if let flushAt { scheduleFlush(at: flushAt, on: eventLoop) }
        }
    }

    private func scheduleFlush(at deadline: NIODeadline, on eventLoop: any EventLoop) {
        eventLoop.scheduleTask(deadline: deadline) { self.flush(on: eventLoop) }
    }

    private func flush(on eventLoop: any EventLoop) {
        let (decision, last) = state.withLockedValue { state in (state.limiter.flush(at: eventLoop.now), state.lastMetadata) }
        switch decision {
        case .nothing:
            break
        case .later(let deadline):
            scheduleFlush(at: deadline, on: eventLoop)
        case .summary(let count):
            // The left-out lines' details, as the last of them had them.
            var metadata: Logger.Metadata = last.reduce(into: [:]) { $0["last_" + $1.key] = $1.value }
            metadata["event"] = "\(event)"
            metadata["suppressed"] = "\(count)"
            logger.log(level: level, "\(count) more \(event) events in the last interval (not logged one by one)", metadata: metadata)
        }
    }
}
