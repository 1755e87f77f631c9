import Foundation
import Logging
@testable import MagicLinkServer
import NIOCore
import NIOEmbedded
import XCTest

/// The connection rules without sockets: the allow lists, the eviction choice, the line
/// tracking, the log limiter, the registry, and the timers of `ConnectionGuard` on an embedded
/// event loop whose clock the tests move.
final class ConnectionTests: XCTestCase {
    // MARK: allow lists

    func testEmptyListsAdmitEveryone() {
        let policy = ConnectionPolicy()
        XCTAssertTrue(policy.admits(PeerCredentials(pid: 1, uid: 33, gid: 33)))
        XCTAssertTrue(policy.admits(.unknown))
    }

    func testListsAdmitListedPeersRootAndAdministratorsOnly() {
        var policy = ConnectionPolicy()
        policy.allowedUIDs = [33]
        policy.allowedGIDs = [44]
        policy.adminUIDs = [1000]
        policy.adminGIDs = [2000]
        func admits(_ uid: UInt32, _ gid: UInt32) -> Bool { policy.admits(PeerCredentials(pid: 9, uid: uid, gid: gid)) }
        XCTAssertTrue(admits(33, 5))     // listed uid
        XCTAssertTrue(admits(5, 44))     // listed primary gid
        XCTAssertTrue(admits(0, 0))      // root
        XCTAssertTrue(admits(1000, 5))   // admin uid
        XCTAssertTrue(admits(5, 2000))   // admin gid
        XCTAssertFalse(admits(5, 5))
        XCTAssertFalse(admits(PeerCredentials.overflowID, PeerCredentials.overflowID))
        XCTAssertFalse(policy.admits(.unknown))
        policy.allowedGIDs = []
        XCTAssertFalse(admits(5, 44))
        XCTAssertTrue(admits(33, 5))
    }

    // MARK: eviction

    func testTheConnectionIdleLongestIsChosen() {
        let t = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let connections: [(id: Int, activity: ConnectionActivity)] = [
            (1, .busy), (2, .idle(since: t + .seconds(5))), (3, .receiving(since: t)), (4, .idle(since: t + .seconds(2))), (5, .busy),
        ]
        XCTAssertEqual(Eviction.victim(among: connections), 4)
    }

    func testTiesGoToTheOlderConnection() {
        let t = NIODeadline.uptimeNanoseconds(7)
        XCTAssertEqual(Eviction.victim(among: [(id: 9, activity: .idle(since: t)), (id: 3, activity: .idle(since: t))]), 3)
    }

    func testWithoutIdleConnectionsTheLongestReceivingOneIsChosen() {
        let t = NIODeadline.uptimeNanoseconds(1_000)
        let connections: [(id: Int, activity: ConnectionActivity)] = [
            (1, .receiving(since: t + .seconds(1))), (2, .busy), (3, .receiving(since: t)),
        ]
        XCTAssertEqual(Eviction.victim(among: connections), 3)
    }

    func testBusyConnectionsAreNeverChosen() {
        XCTAssertNil(Eviction.victim(among: [(id: 1, activity: .busy), (id: 2, activity: .busy)]))
        XCTAssertNil(Eviction.victim(among: [(id: Int, activity: ConnectionActivity)]()))
    }

    func testTheRegistryEvictsToMakeRoomAndRefusesWhenAllAreBusy() {
        let registry = ConnectionRegistry()
        let t = NIODeadline.uptimeNanoseconds(0)
        let channels = (0..<5).map { _ in EmbeddedChannel() }
        guard case .admitted(let a, nil) = registry.admit(channels[0], limit: 2, now: t),
              case .admitted(let b, nil) = registry.admit(channels[1], limit: 2, now: t + .seconds(1)) else {
            return XCTFail("the first two fit")
        }
        XCTAssertTrue(registry.update(a, activity: .busy))
        guard case .admitted(let c, let evicted?) = registry.admit(channels[2], limit: 2, now: t + .seconds(2)) else {
            return XCTFail("the idle one makes room")
        }
        XCTAssertTrue(evicted.channel === channels[1])
        XCTAssertEqual(evicted.activity, .idle(since: t + .seconds(1)))
        XCTAssertFalse(registry.update(b, activity: .busy), "an evicted connection serves nothing more")
        XCTAssertNil(registry.activity(of: b))
        XCTAssertEqual(registry.count, 3, "counted until its close completes, but no longer against the limit")
        XCTAssertTrue(registry.update(c, activity: .busy))
        guard case .full = registry.admit(channels[3], limit: 2, now: t + .seconds(3)) else {
            return XCTFail("every connection is busy")
        }
        registry.remove(b)
        registry.remove(a)
        guard case .admitted(_, nil) = registry.admit(channels[4], limit: 2, now: t + .seconds(4)) else {
            return XCTFail("room again")
        }
        registry.beginShutdown()
        guard case .shuttingDown = registry.admit(channels[3], limit: 2, now: t + .seconds(5)) else {
            return XCTFail("no newcomers after shutdown began")
        }
    }

    func testShutdownClosesIdleConnectionsAndLetsBusyOnesFinish() throws {
        let registry = ConnectionRegistry()
        let t = NIODeadline.uptimeNanoseconds(0)
        let channels = (0..<2).map { _ in EmbeddedChannel() }
        for channel in channels { try channel.connect(to: SocketAddress(unixDomainSocketPath: "/tmp/x.sock")).wait() }
        guard case .admitted(let busy, nil) = registry.admit(channels[0], limit: 10, now: t),
              case .admitted(let idle, nil) = registry.admit(channels[1], limit: 10, now: t) else {
            return XCTFail("both fit")
        }
        XCTAssertTrue(registry.markBusy(busy))
        registry.beginShutdown()
        XCTAssertTrue(channels[0].isActive, "the busy connection finishes its request")
        XCTAssertFalse(channels[1].isActive, "the idle connection is closed at once")
        XCTAssertFalse(registry.markIdle(busy), "its reply is out: it should end now")
        XCTAssertFalse(registry.markBusy(busy), "no new request after shutdown began")
        XCTAssertFalse(registry.markBusy(idle))
        _ = try? channels[0].finish()
    }

    // MARK: lines

    func testTheFramerCutsRequestLinesAsTheProtocolDefinesThem() {
        var framer = LineFramer(limit: 16)
        /// Everything one read yields: request lines as text, "" for a blank line, and how it ended.
        func feed(_ text: String) -> (lines: [String], end: String) {
            var input = ByteBuffer(string: text)
            var lines: [String] = []
            while true {
                switch framer.next(from: &input) {
                case .line(let line): lines.append(String(buffer: line))
                case .blank: lines.append("")
                case .needMore:
                    XCTAssertEqual(input.readableBytes, 0, "the rest of a read is kept")
                    return (lines, "more")
                case .overflow: return (lines, "overflow")
                }
            }
        }
        XCTAssertTrue(feed("{\"op\"") == ([], "more"))
        XCTAssertTrue(framer.midLine)
        XCTAssertEqual(framer.partialLength, 5)
        XCTAssertTrue(feed(":1}\n") == (["{\"op\":1}"], "more"), "a line split across reads is joined")
        XCTAssertFalse(framer.midLine)
        XCTAssertTrue(feed("\n\r\n\r\r\n") == (["", "", ""], "more"), "blank lines get no reply")
        XCTAssertTrue(feed("\r\r\r\n") == (["\r\r"], "more"), "three carriage returns are a (bad) request; one is dropped")
        XCTAssertTrue(feed("a\r\n") == (["a"], "more"), "CRLF ends a line too")
        XCTAssertTrue(feed("\r") == ([], "more"))
        XCTAssertTrue(framer.midLine)
        XCTAssertTrue(feed("\r") == ([], "more"))
        XCTAssertTrue(feed("\n") == ([""], "more"), "blank across reads")
        XCTAssertTrue(feed("x\n\n{}\n{") == (["x", "", "{}"], "more"))
        XCTAssertEqual(framer.partialLength, 1)
        framer.discardPartialLine()
        XCTAssertFalse(framer.midLine)
        XCTAssertTrue(feed("") == ([], "more"))
        // The limit applies to a line that has not ended; a whole long line is the server's to refuse.
        XCTAssertTrue(feed(String(repeating: "x", count: 40) + "\n") == ([String(repeating: "x", count: 40)], "more"))
        XCTAssertTrue(feed(String(repeating: "y", count: 16)) == ([], "more"), "at the limit")
        XCTAssertTrue(feed("y") == ([], "overflow"), "one past the limit")
        framer.discardPartialLine()
        XCTAssertTrue(feed("{}\n" + String(repeating: "z", count: 17)) == (["{}"], "overflow"), "lines before the overflow are served")
    }

    func testALineFromOneReadIsASliceAndOnlyASplitLineIsCopied() {
        var framer = LineFramer(limit: 100)
        var input = ByteBuffer(string: "{\"id\":1}\n{\"id\"")
        guard case .line(let line) = framer.next(from: &input) else { return XCTFail("a line") }
        XCTAssertEqual(line.withVeryUnsafeBytes { $0.baseAddress }, input.withVeryUnsafeBytes { $0.baseAddress }, "same storage: no copy")
        guard case .needMore = framer.next(from: &input) else { return XCTFail("the rest is partial") }
        var more = ByteBuffer(string: ":2}\n")
        guard case .line(let joined) = framer.next(from: &more) else { return XCTFail("joined") }
        XCTAssertEqual(String(buffer: joined), "{\"id\":2}")
    }

    // MARK: log limiter

    func testTheLogLimiterWritesOneLineAnIntervalAndCountsTheRest() {
        var limiter = LogLimiter(interval: .seconds(1))
        func at(_ ms: Int64) -> NIODeadline { .uptimeNanoseconds(UInt64(10_000 + ms) * 1_000_000) }
        XCTAssertEqual(limiter.event(at: at(0)), .log(suppressedBefore: 0))
        XCTAssertEqual(limiter.event(at: at(500)), .suppress(flushAt: at(1_000)))
        XCTAssertEqual(limiter.event(at: at(700)), .suppress(flushAt: nil))
        XCTAssertEqual(limiter.flush(at: at(1_000)), .summary(2))
        XCTAssertEqual(limiter.event(at: at(1_500)), .suppress(flushAt: at(2_000)))
        // A line due anyway takes the count along; the flush then finds nothing.
        XCTAssertEqual(limiter.event(at: at(2_100)), .log(suppressedBefore: 1))
        XCTAssertEqual(limiter.event(at: at(2_200)), .suppress(flushAt: nil), "a flush is still pending")
        XCTAssertEqual(limiter.flush(at: at(2_100)), .later(at(3_100)))
        XCTAssertEqual(limiter.flush(at: at(3_100)), .summary(1))
        XCTAssertEqual(limiter.flush(at: at(3_200)), .nothing)
        XCTAssertEqual(limiter.event(at: at(4_200)), .log(suppressedBefore: 0))
    }

    // MARK: ConnectionGuard timers

    private struct Guarded {
        let channel: EmbeddedChannel
        let loop: EmbeddedEventLoop
        let registry: ConnectionRegistry
        let id: ConnectionRegistry.Slot

        /// Bytes arrive; then, as with autoRead, the server asks for more (the embedded channel
        /// ends every write with channelReadComplete).
        func send(_ text: String) throws {
            try channel.writeInbound(ByteBuffer(string: text))
            channel.read()
        }
        func reply(flush: Bool = true) {
            let line = ByteBuffer(string: "{\"id\":null,\"ok\":true,\"result\":{}}\n")
            if flush { channel.writeAndFlush(line, promise: nil) } else { channel.write(line, promise: nil) }
        }
        func advance(_ amount: TimeAmount) { loop.advanceTime(by: amount) }
        var isOpen: Bool { channel.isActive }
        var activity: ConnectionActivity? { registry.activity(of: id) }
        var start: NIODeadline { .uptimeNanoseconds(0) }
        func written() throws -> [String] {
            var lines: [String] = []
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { lines.append(String(buffer: buffer)) }
            return lines
        }
        func delivered() throws -> Int {
            var count = 0
            while try channel.readInbound(as: ByteBuffer.self) != nil { count += 1 }
            return count
        }
    }

    private func guarded(requestTimeout: Int64 = 10, idleTimeout: Int64 = 300, maxLineBytes: Int = 1024,
                         nearerTheSocket: (any ChannelHandler)? = nil, after: (any ChannelHandler)? = nil) throws -> Guarded {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        let registry = ConnectionRegistry()
        guard case .admitted(let id, _) = registry.admit(channel, limit: 10, now: loop.now) else { throw CancellationError() }
        var policy = ConnectionPolicy()
        policy.requestTimeout = .seconds(requestTimeout)
        policy.idleTimeout = .seconds(idleTimeout)
        try channel.pipeline.syncOperations.addHandler(ConnectionGuard(
            slot: id, registry: registry, policy: policy, peer: PeerCredentials(pid: 1, uid: 33, gid: 33),
            logs: ConnectionLogs(logger: Logger(label: "test")), maxLineBytes: maxLineBytes, now: loop.now, server: nil))
        if let nearerTheSocket { try channel.pipeline.syncOperations.addHandler(nearerTheSocket, position: .first) }
        if let after { try channel.pipeline.syncOperations.addHandler(after) }
        try channel.connect(to: SocketAddress(unixDomainSocketPath: "/tmp/x.sock")).wait()
        channel.read()  // as the server does once the connection is active
        addTeardownBlock { _ = try? channel.finish() }
        return Guarded(channel: channel, loop: loop, registry: registry, id: id)
    }

    func testAnIdleConnectionClosesAfterIdleTimeout() throws {
        let g = try guarded()
        XCTAssertEqual(g.activity, .idle(since: g.start))
        g.advance(.seconds(299))
        XCTAssertTrue(g.isOpen)
        g.advance(.seconds(1))
        XCTAssertFalse(g.isOpen)
        XCTAssertEqual(try g.written(), [], "closed without a word: the server never speaks first")
    }

    func testTheIdleClockStartsAgainAfterEachReply() throws {
        let g = try guarded()
        g.advance(.seconds(200))
        try g.send("{\"op\":\"hello\"}\n")
        XCTAssertEqual(try g.delivered(), 1)
        XCTAssertEqual(g.activity, .busy)
        g.advance(.seconds(400))
        XCTAssertTrue(g.isOpen, "a request in work is never idle")
        g.reply()
        XCTAssertEqual(g.activity, .idle(since: g.start + .seconds(600)))
        g.advance(.seconds(299))
        XCTAssertTrue(g.isOpen)
        g.advance(.seconds(1))
        XCTAssertFalse(g.isOpen)
    }

    func testBlankLinesDoNotKeepAConnectionAlive() throws {
        let g = try guarded()
        g.advance(.seconds(100))
        try g.send("\n\r\n")
        g.advance(.seconds(100))
        try g.send("\r")
        XCTAssertEqual(g.activity, .receiving(since: g.start + .seconds(200)))
        try g.send("\n")
        XCTAssertEqual(g.activity, .idle(since: g.start))
        g.advance(.seconds(100))
        XCTAssertFalse(g.isOpen)
    }

    func testAnUnfinishedLineIsAnsweredAndClosedAfterRequestTimeout() throws {
        let g = try guarded()
        g.advance(.seconds(5))
        try g.send("{\"op\"")
        XCTAssertEqual(g.activity, .receiving(since: g.start + .seconds(5)))
        g.advance(.seconds(4))
        try g.send(":")  // more bytes do not move the deadline
        XCTAssertEqual(try g.delivered(), 0, "an unfinished line is not handed on")
        g.advance(.milliseconds(5_999))
        XCTAssertTrue(g.isOpen)
        g.advance(.milliseconds(1))
        let written = try g.written()
        XCTAssertEqual(written.count, 1)
        XCTAssertTrue(written[0].contains(#""code":"invalid_request""#) && written[0].contains(#""reason":"request_timeout""#), written[0])
        XCTAssertTrue(written[0].hasPrefix(#"{"id":null,"#) && written[0].hasSuffix("}\n"), written[0])
        XCTAssertFalse(g.isOpen)
        try g.send("\"hello\"}\n")
        XCTAssertEqual(try g.delivered(), 0)
    }

    func testTheTimeoutReplyWaitsForTheAnswersBeforeIt() throws {
        let g = try guarded()
        try g.send("{\"op\":\"a\"}\n{\"op\":\"b\"}\n{\"op\"")
        XCTAssertEqual(try g.delivered(), 2, "one read: two request lines handed on, the start of a third kept")
        g.advance(.seconds(10))
        XCTAssertTrue(g.isOpen)
        XCTAssertEqual(try g.written(), [])
        g.reply()
        XCTAssertEqual(try g.written().count, 1)
        XCTAssertTrue(g.isOpen)
        g.reply()
        let written = try g.written()
        XCTAssertEqual(written.count, 2)
        XCTAssertTrue(written[1].contains("request_timeout"))
        XCTAssertFalse(g.isOpen)
    }

    func testTheLineClockStopsWhileTheServerIsNotReading() throws {
        let g = try guarded()
        try g.send("{\"op\":\"a\"}\n{\"op\"")
        g.channel.pipeline.fireChannelReadComplete()  // no new read requested: the server's queue is full
        g.advance(.seconds(60))
        XCTAssertTrue(g.isOpen)
        g.reply()
        g.advance(.seconds(60))
        XCTAssertTrue(g.isOpen)
        g.channel.read()  // reading again at t=120: the client has 10 s from now
        g.advance(.milliseconds(9_999))
        XCTAssertTrue(g.isOpen)
        g.advance(.milliseconds(1))
        XCTAssertFalse(g.isOpen)
    }

    func testAReplyTheClientDoesNotReadIsCutOff() throws {
        let g = try guarded()
        try g.send("{}\n")
        g.reply(flush: false)  // stays unwritten, as when the client's buffer is full
        g.advance(.milliseconds(9_999))
        XCTAssertTrue(g.isOpen)
        XCTAssertEqual(g.activity, .busy)
        g.advance(.milliseconds(1))
        XCTAssertFalse(g.isOpen)
    }

    func testALineThatNeverEndsIsReportedOnceAndNothingMoreIsHandedOn() throws {
        let g = try guarded(maxLineBytes: 20)
        try g.send("{\"op\":\"hello\"}\n{\"op\":")
        XCTAssertEqual(try g.delivered(), 1)
        XCTAssertThrowsError(try g.send(String(repeating: "x", count: 30))) { error in
            XCTAssertTrue(error is RequestLineTooLong, "\(error)")
        }
        try g.send("\n{\"op\":\"hello\"}\n")
        XCTAssertEqual(try g.delivered(), 0, "nothing after an over-long line is served")
        XCTAssertEqual(g.activity, .busy, "the request before it still waits for its reply")
        g.reply()
        XCTAssertEqual(g.activity, .busy, "and so does the over-long line's request_too_large")
        g.reply()
        XCTAssertEqual(g.activity, .idle(since: g.start))
    }

    func testRepliesAreCountedWrittenWhenTheFlushLeavesNothingBuffered() throws {
        let g = try guarded()
        try g.send("{\"op\":\"a\"}\n{\"op\":\"b\"}\n")
        XCTAssertEqual(try g.delivered(), 2)
        g.reply(flush: false)
        g.advance(.seconds(5))
        g.reply(flush: false)
        XCTAssertEqual(g.activity, .busy)
        g.channel.flush()
        XCTAssertEqual(try g.written().count, 2)
        XCTAssertEqual(g.activity, .idle(since: g.start + .seconds(5)), "both replies out at the flush")
        g.advance(.seconds(299))
        XCTAssertTrue(g.isOpen, "no write deadline is left behind")
        g.advance(.seconds(1))
        XCTAssertFalse(g.isOpen)
    }

    /// Holds every flush until told, as a socket whose client does not read leaves the replies
    /// buffered in the channel.
    private final class FlushHolder: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var holding = true
        private var context: ChannelHandlerContext?
        func handlerAdded(context: ChannelHandlerContext) { self.context = context }
        func flush(context: ChannelHandlerContext) { if !holding { context.flush() } }
        /// The client reads what is buffered so far.
        func release() { context?.flush() }
    }

    func testASlowClientsRepliesAreFollowedUntilTheyAreWritten() throws {
        let holder = FlushHolder()
        let g = try guarded(nearerTheSocket: holder)
        try g.send("{\"op\":\"a\"}\n{\"op\":\"b\"}\n{\"op\":\"c\"}\n")
        XCTAssertEqual(try g.delivered(), 3)
        g.reply()  // buffered: the guard follows it with an empty write that tells when it is out
        g.reply()  // and, while the client is slow, this one with a promise of its own
        XCTAssertEqual(g.activity, .busy)
        g.advance(.seconds(6))
        holder.release()
        XCTAssertEqual(try g.written().filter { !$0.isEmpty }.count, 2)
        XCTAssertEqual(g.activity, .busy, "one request is still unanswered")
        g.advance(.seconds(6))
        g.reply()
        XCTAssertEqual(g.activity, .busy, "its reply waits in the channel")
        g.advance(.seconds(6))
        XCTAssertTrue(g.isOpen, "writes made progress 6 s ago: within request_timeout")
        holder.release()
        XCTAssertEqual(g.activity, .idle(since: g.start + .seconds(18)))
        // Once drained, replies are counted at the flush again: no promise, nothing left behind.
        holder.holding = false
        try g.send("{\"op\":\"d\"}\n")
        _ = try g.delivered()
        g.advance(.seconds(1))
        g.reply()
        XCTAssertEqual(g.activity, .idle(since: g.start + .seconds(19)))
        g.advance(.seconds(299))
        XCTAssertTrue(g.isOpen)
        g.advance(.seconds(1))
        XCTAssertFalse(g.isOpen, "idle_timeout, not a stale write deadline")
    }

    func testASlowClientThatStopsReadingIsCutOff() throws {
        let holder = FlushHolder()
        let g = try guarded(nearerTheSocket: holder)
        try g.send("{}\n")
        g.reply()
        g.advance(.milliseconds(9_999))
        XCTAssertTrue(g.isOpen)
        g.advance(.milliseconds(1))
        XCTAssertFalse(g.isOpen, "no progress for request_timeout")
    }

    /// Answers each line at once and records what the registry says meanwhile.
    private final class ImmediateAnswers: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        var seen: [String] = []
        var activities: [ConnectionActivity?] = []
        var probe: () -> ConnectionActivity? = { nil }
        /// Bytes fed back into the pipeline from inside the first line (a re-entrant read).
        var reentrant: String?
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            seen.append(String(buffer: unwrapInboundIn(data)))
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "{\"ok\":true}\n")), promise: nil)
            activities.append(probe())  // the reply is out: what does a newcomer see now?
            if let bytes = reentrant {
                reentrant = nil
                context.pipeline.fireChannelRead(NIOAny(ByteBuffer(string: bytes)))
            }
        }
    }

    func testAConnectionStaysBusyUntilAWholeReadIsServed() throws {
        let answers = ImmediateAnswers()
        let g = try guarded(after: answers)
        let registry = g.registry, id = g.id
        answers.probe = { registry.activity(of: id) }
        try g.send("{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n")
        XCTAssertEqual(answers.seen.count, 3)
        XCTAssertEqual(answers.activities, [.busy, .busy, .busy], "never idle between pipelined lines: a newcomer could evict it")
        XCTAssertEqual(g.activity, .idle(since: g.start), "answered, once the read is served")
    }

    func testBytesReadReentrantlyWaitForTheRestOfTheRead() throws {
        let answers = ImmediateAnswers()
        answers.reentrant = "ne\"}\n{\"id\":4}\n"
        let g = try guarded(after: answers)
        try g.send("{\"id\":1}\n{\"id\":2}\n{\"id\":3,\"x\":\"li")
        XCTAssertEqual(answers.seen, [#"{"id":1}"#, #"{"id":2}"#, #"{"id":3,"x":"line"}"#, #"{"id":4}"#], "in order, the split line joined")
        XCTAssertEqual(g.activity, .idle(since: g.start))
    }

    func testAnOverLongLineKeepsTheConnectionBusyUntilItsReplyIsWritten() throws {
        let holder = FlushHolder()
        let g = try guarded(maxLineBytes: 20, nearerTheSocket: holder)
        XCTAssertThrowsError(try g.send(String(repeating: "x", count: 30))) { XCTAssertTrue($0 is RequestLineTooLong) }
        XCTAssertEqual(g.activity, .busy, "its request_too_large reply is owed")
        g.reply()
        XCTAssertEqual(g.activity, .busy, "the reply waits for the client")
        holder.release()
        XCTAssertEqual(g.activity, .idle(since: g.start))
    }

    func testAnEvictedConnectionDropsWhatArrives() throws {
        let g = try guarded()
        for _ in 0..<9 { _ = g.registry.admit(EmbeddedChannel(), limit: 10, now: g.loop.now + .seconds(1)) }
        guard case .admitted(_, let evicted?) = g.registry.admit(EmbeddedChannel(), limit: 10, now: g.loop.now + .seconds(2)) else {
            return XCTFail("the oldest idle connection makes room")
        }
        XCTAssertTrue(evicted.channel === g.channel)
        try g.send("{\"op\":\"hello\"}\n")
        XCTAssertEqual(try g.delivered(), 0, "never served")
    }

    // MARK: settings

    func testConnectionSettings() throws {
        let defaults = try Configuration.load(file: nil, environment: [:])
        XCTAssertEqual(defaults.allowedUIDs, [])
        XCTAssertEqual(defaults.allowedGIDs, [])
        XCTAssertEqual(defaults.maxConnections, 1_024)
        XCTAssertEqual(defaults.requestTimeout, 10)
        XCTAssertEqual(defaults.idleTimeout, 300)
        let c = try Configuration.load(file: nil, environment: [
            "MAGICLINKD_ALLOWED_UIDS": "33, 1000", "MAGICLINKD_ALLOWED_GIDS": "0",
            "MAGICLINKD_MAX_CONNECTIONS": "50", "MAGICLINKD_REQUEST_TIMEOUT": "3s", "MAGICLINKD_IDLE_TIMEOUT": "2m",
        ])
        XCTAssertEqual(c.allowedUIDs, [33, 1000])
        XCTAssertEqual(c.allowedGIDs, [0])
        let policy = ConnectionPolicy(c)
        XCTAssertEqual(policy.maxConnections, 50)
        XCTAssertEqual(policy.requestTimeout, .seconds(3))
        XCTAssertEqual(policy.idleTimeout, .seconds(120))
        for (name, value) in [("MAGICLINKD_ALLOWED_UIDS", "65534"), ("MAGICLINKD_ALLOWED_GIDS", "4294967295"),
                              ("MAGICLINKD_ALLOWED_UIDS", "nobody"), ("MAGICLINKD_MAX_CONNECTIONS", "0"),
                              ("MAGICLINKD_REQUEST_TIMEOUT", "0"), ("MAGICLINKD_IDLE_TIMEOUT", "1.5")] {
            XCTAssertThrowsError(try Configuration.load(file: nil, environment: [name: value]), "\(name)=\(value)") { error in
                XCTAssertTrue((error as? ConfigurationError)?.description.contains(name) ?? false, "\(error)")
            }
        }
        let keys = defaults.effectiveSettings.map(\.key)
        for key in ["allowed_uids", "allowed_gids", "max_connections", "event_loop_threads", "request_timeout", "idle_timeout"] {
            XCTAssertTrue(keys.contains(key), key)
        }
    }

    func testServingThreads() throws {
        XCTAssertEqual(try Configuration.load(file: nil, environment: [:]).eventLoopThreads, 0)
        XCTAssertEqual(try Configuration.load(file: nil, environment: ["MAGICLINKD_EVENT_LOOP_THREADS": "6"]).eventLoopThreads, 6)
        XCTAssertEqual(try Configuration.load(file: nil, environment: ["MAGICLINKD_EVENT_LOOP_THREADS": "0"]).eventLoopThreads, 0)
        XCTAssertEqual(try Configuration.load(file: nil, environment: ["MAGICLINKD_EVENT_LOOP_THREADS": "256"]).eventLoopThreads, 256)
        for value in ["-1", "257", "2.5", "many"] {
            XCTAssertThrowsError(try Configuration.load(file: nil, environment: ["MAGICLINKD_EVENT_LOOP_THREADS": value]), value)
        }
        // 0: half the cores, at least one; a setting wins whatever the cores.
        for (cores, expected) in [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (16, 8)] {
            XCTAssertEqual(servingThreads(configured: 0, cores: cores), expected, "\(cores) cores")
        }
        XCTAssertEqual(servingThreads(configured: 3, cores: 2), 3)
        XCTAssertEqual(servingThreads(configured: 1, cores: 64), 1)
    }
}
