// niofloor --socket PATH
//
// A SwiftNIO server on a Unix socket that answers every request line with the same fixed reply
// (as long as a `session` reply, with "ok":true so the load generator counts it), from one
// handler, on one event loop (the daemon's default on 2 cores). It parses nothing, keeps no
// state, has no timers: `Benchmarks/run` measures it next to the daemon's `hello` and Redis's
// `PING` to show how much of the daemon's per-request cost is SwiftNIO's own.
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

let reply = Array(#"{"id":1,"ok":true,"result":{"user":{"id":"0b6c9a8e-3f7d-4c1e-9a52-6d2f8e41b7c3","email":"user42@bench.example"},"expires_at":1798761600,"idle_expires_at":1796083200}}"#.utf8) + [0x0A]

/// Every line feed read gets one reply; the replies of one read go out in one flush.
final class FixedReplyHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = unwrapInboundIn(data)
        var replies = 0
        while let newline = input.readableBytesView.firstIndex(of: 0x0A) {
            input.moveReaderIndex(to: newline + 1)
            replies += 1
        }
        guard replies > 0 else { return }
        for _ in 0..<replies {
            var buffer = context.channel.allocator.buffer(capacity: reply.count)
            buffer.writeBytes(reply)
            context.write(wrapOutboundOut(buffer), promise: nil)
        }
        context.flush()
    }
}

var arguments = CommandLine.arguments.dropFirst()
guard arguments.count == 2, arguments.removeFirst() == "--socket", let path = arguments.first else {
    fputs("usage: niofloor --socket PATH\n", stderr)
    exit(2)
}
unlink(path)
signal(SIGPIPE, SIG_IGN)
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let server = try ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 256)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(FixedReplyHandler()) }
    }
    .bind(unixDomainSocketPath: path)
    .wait()
try server.closeFuture.wait()
