import Foundation
import Logging
import MagicLinkCore
@testable import MagicLinkServer
import MagicLinkStore
import NIOCore
import NIOEmbedded
import NIOPosix
import XCTest

/// The guard and its request server together, as the daemon wires them (change 25: one
/// channel handler, which calls the server directly), on an embedded channel with a real
/// dispatcher: lines reach the server and nothing else, replies go out through the guard's
/// accounting, the server's holds on reading reach the socket, and a half-closed connection
/// closes once its replies are out.
final class ConnectionServingTests: XCTestCase {
    /// Counts the reads that reach the socket (it sits nearest to it).
    private final class ReadCounter: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var count = 0
        func read(context: ChannelHandlerContext) {
            count += 1
            context.read()
        }
    }

    private func lines(_ channel: EmbeddedChannel) throws -> [String] {
        var out: [String] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            if buffer.readableBytes > 0 { out.append(String(buffer: buffer)) }
        }
        return out
    }

    private struct Served {
        let channel: EmbeddedChannel
        let loop: EmbeddedEventLoop
        let registry: ConnectionRegistry
        let slot: ConnectionRegistry.Slot
        weak var server: RequestServer?
    }

    /// A guard with its server, wired as `SocketServer` does, over a real dispatcher and store;
    /// `nearerTheSocket` goes in front of the guard.
    private func served(maximumQueued: Int = 128, nearerTheSocket: (any ChannelHandler)? = nil) async throws -> Served {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("magiclinkd-serving-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let store = try SQLiteStore(path: directory.appendingPathComponent("s.sqlite").path)
        let authenticator = Authenticator(policy: AuthPolicy(callbackURL: "https://app.example.com/cb", redirects: try RedirectPolicy(allowedOrigins: [])),
                                          store: store, sealer: TokenSealer(keyBytes: SystemRandom().bytes(32))!)
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        addTeardownBlock {
            try await pool.shutdownGracefully()
            try? FileManager.default.removeItem(at: directory)
        }
        let dispatcher = Dispatcher(apps: AppDirectory([(id: "default", authenticator: authenticator)]), blockingPool: pool, maxLineBytes: 1_024,
                                    logger: Logger(label: "test"), mailWakeup: MailWakeup())
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        let registry = ConnectionRegistry()
        guard case .admitted(let slot, _) = registry.admit(channel, limit: 10, now: loop.now) else { throw CancellationError() }
        let peer = PeerCredentials(pid: 1, uid: 33, gid: 33)
        let server = RequestServer(slot: slot, peer: peer, dispatcher: dispatcher, registry: registry, logger: Logger(label: "test"),
                                   eventLoop: loop, maximumQueued: maximumQueued)
        try channel.pipeline.syncOperations.addHandler(ConnectionGuard(
            slot: slot, registry: registry, policy: ConnectionPolicy(), peer: peer, logs: ConnectionLogs(logger: Logger(label: "test")),
            maxLineBytes: 1_024, now: loop.now, server: server))
        if let nearerTheSocket { try channel.pipeline.syncOperations.addHandler(nearerTheSocket, position: .first) }
        try await channel.connect(to: SocketAddress(unixDomainSocketPath: "/tmp/x.sock")).get()
        channel.read()  // as the server does once the connection is active
        return Served(channel: channel, loop: loop, registry: registry, slot: slot, server: server)
    }

    func testTheGuardServesLinesThroughItsServer() async throws {
        let reads = ReadCounter()
        let served = try await served(maximumQueued: 2, nearerTheSocket: reads)
        let (channel, loop, registry, slot) = (served.channel, served.loop, served.registry, served.slot)
        XCTAssertEqual(reads.count, 1)

        // One line, one reply, through the guard's accounting: the connection is idle again.
        try channel.writeInbound(ByteBuffer(string: "{\"id\":1,\"op\":\"hello\"}\n"))
        var written = try lines(channel)
        XCTAssertEqual(written.count, 1)
        XCTAssertTrue(written[0].hasPrefix(#"{"id":1,"ok":true,"#) && written[0].hasSuffix("\n"), written[0])
        XCTAssertEqual(registry.activity(of: slot), .idle(since: loop.now))
        XCTAssertNil(try channel.readInbound(as: ByteBuffer.self), "the server takes the lines: nothing passes on")
        channel.read()
        XCTAssertEqual(reads.count, 2)

        // While the channel is not writable, lines wait, the connection is busy, and the server
        // holds reading; once writable, the waiting lines are answered in order and the held
        // read goes out.
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        try channel.writeInbound(ByteBuffer(string: "{\"id\":2,\"op\":\"hello\"}\n{\"id\":3,\"op\":\"hello\"}\n"))
        XCTAssertEqual(try lines(channel), [])
        XCTAssertEqual(registry.activity(of: slot), .busy)
        channel.read()
        XCTAssertEqual(reads.count, 2, "held: replies wait for the client")
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        written = try lines(channel)
        XCTAssertEqual(written.count, 2)
        XCTAssertTrue(written[0].hasPrefix(#"{"id":2,"#) && written[1].hasPrefix(#"{"id":3,"#), "\(written)")
        XCTAssertEqual(reads.count, 3, "the held read goes out")
        XCTAssertEqual(registry.activity(of: slot), .idle(since: loop.now))

        // An over-long line is answered request_too_large, and the connection closes after it.
        XCTAssertTrue(channel.isActive)
        try channel.writeInbound(ByteBuffer(string: "{\"id\":4,\"op\":\"hello\"}\n" + String(repeating: "x", count: 2_000)))
        loop.run()
        written = try lines(channel)
        XCTAssertEqual(written.count, 2, "\(written)")
        XCTAssertTrue(written[0].hasPrefix(#"{"id":4,"ok":true"#), written[0])
        XCTAssertTrue(written[1].contains(#""code":"request_too_large""#), written[1])
        XCTAssertFalse(channel.isActive)
    }

    func testAHalfClosedConnectionClosesOnceItsRepliesAreOut() async throws {
        let served = try await served()
        let (channel, loop) = (served.channel, served.loop)

        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        try channel.writeInbound(ByteBuffer(string: "{\"id\":1,\"op\":\"hello\"}\n"))
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        loop.run()
        XCTAssertTrue(channel.isActive, "a line is still unanswered")
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        loop.run()
        let written = try lines(channel)
        XCTAssertEqual(written.count, 1)
        XCTAssertTrue(written[0].hasPrefix(#"{"id":1,"ok":true"#), "\(written)")
        XCTAssertFalse(channel.isActive, "closed once the reply is out")
    }

    private struct SocketFailed: Error {}

    func testAnErrorFromTheSocketClosesTheConnectionAfterItsReplies() async throws {
        let served = try await served()
        let (channel, loop) = (served.channel, served.loop)
        try channel.writeInbound(ByteBuffer(string: "{\"id\":1,\"op\":\"hello\"}\n"))
        XCTAssertEqual(try lines(channel).count, 1)
        channel.pipeline.fireErrorCaught(SocketFailed())
        loop.run()
        XCTAssertFalse(channel.isActive)
    }

    func testLinesWaitingWhenTheConnectionClosesAreDroppedAndTheServerIsLetGo() async throws {
        let served = try await served()
        let (channel, loop) = (served.channel, served.loop)
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        try channel.writeInbound(ByteBuffer(string: "{\"id\":1,\"op\":\"hello\"}\n"))
        XCTAssertNotNil(served.server)
        try await channel.close().get()
        loop.run()
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        XCTAssertEqual(try lines(channel), [], "nothing is answered on a closed connection")
        XCTAssertNil(served.server, "guard and server no longer hold each other once the guard is removed")
    }
}
