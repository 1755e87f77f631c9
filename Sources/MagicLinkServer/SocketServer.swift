import Logging
import MagicLinkProtocol
import NIOConcurrencyHelpers
import NIOCore
import NIOExtras
import NIOPosix
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// Serves the line protocol on a Unix domain socket: one child task per connection, requests of
/// a connection answered in order. On graceful shutdown it stops accepting, lets each busy
/// connection finish the request in hand, closes idle ones, and removes the socket file it made
/// (never one it inherited from systemd).
final class SocketServer: Service, Sendable, CustomStringConvertible {
    /// Where connections come from.
    enum Listener: Sendable {
        /// Bind this path with this file mode.
        case path(String, mode: UInt32)
        /// A listening socket inherited from systemd (socket activation).
        case inherited(descriptor: Int32, path: String)
    }

    let listener: Listener
    let dispatcher: Dispatcher
    let group: any EventLoopGroup
    let logger: Logger
    /// Upper bound for in-flight requests to finish after shutdown begins.
    let drainTimeout: Duration
    private let connections = ConnectionRegistry()
    private let readiness = Readiness()

    init(listener: Listener, dispatcher: Dispatcher, group: any EventLoopGroup, logger: Logger,
         drainTimeout: Duration = .seconds(10)) {
        self.listener = listener
        self.dispatcher = dispatcher
        self.group = group
        self.logger = logger
        self.drainTimeout = drainTimeout
    }

    /// Returns true once the socket is bound and accepting, false when serving failed before
    /// that or the waiting task was cancelled (so nobody waits forever on a server that died).
    func waitUntilReady() async -> Bool { await readiness.wait() }

    var description: String {
        switch listener {
        case .path(let path, _): return path
        case .inherited(let fd, let path): return "\(path) (fd \(fd) from systemd)"
        }
    }

    func run() async throws {
        // Whatever ends this function before the socket is served releases the waiters.
        defer { readiness.settle(false) }
        let maxLine = dispatcher.maxLineBytes
        let descriptor: Int32
        // Only a socket we made ourselves is ours to remove.
        let owned: (path: String, socket: ListeningSocket)?
        switch listener {
        case .path(let path, let mode):
            try prepareSocketPath(path)
            let listening = try listenOnUnixSocket(path: path, mode: mode)
            owned = (path, listening)
            descriptor = listening.descriptor
        case .inherited(let fd, _):
            owned = nil
            descriptor = fd
        }
        defer { if let owned { removeSocketFile(at: owned.path, ifStill: owned.socket) } }
        let server = try await ServerBootstrap(group: group)
            // A client may shut down its sending side after its last request and still read the replies.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .bind(descriptor) { channel in
                channel.eventLoop.makeCompletedFuture {
                    // The buffer limit cuts off a line that never ends; `serve` checks each
                    // complete line too (a whole over-long line can arrive in one read).
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(LineBasedFrameDecoder(), maximumBufferSize: maxLine + 1))
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        // Adopting a socket makes NIO listen again with its default backlog (128); raise it back
        // so a burst of connections waits in the queue instead of failing with EAGAIN. An
        // inherited socket gets the kernel's maximum, as systemd's Backlog= default intends.
        listen(descriptor, owned == nil ? SOMAXCONN : 256)
        logger.info("listening", metadata: ["socket": "\(description)"])
        readiness.settle(true)

        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { tasks in
                try await server.executeThenClose { inbound in
                    for try await connection in inbound {
                        tasks.addTask { await self.serve(connection) }
                    }
                }
                // Not accepting any more: close idle connections, give busy ones a bounded time.
                await self.drain()
                tasks.cancelAll()
            }
        } onGracefulShutdown: {
            self.logger.info("shutting down: no longer accepting connections")
            if let owned { removeSocketFile(at: owned.path, ifStill: owned.socket) }
            server.channel.close(promise: nil)
        }
    }

    private func drain() async {
        connections.beginShutdown()
        let deadline = ContinuousClock.now + drainTimeout
        while connections.count > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        if connections.count > 0 {
            logger.warning("closing connections still busy after the drain timeout", metadata: ["connections": "\(connections.count)"])
        }
    }

    private func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async {
        let id = connections.add(connection.channel)
        defer { connections.remove(id) }
        let peer = await PeerCredentials.of(connection.channel)
        do {
            try await connection.executeThenClose { inbound, outbound in
                do {
                    for try await line in inbound {
                        guard connections.markBusy(id) else {
                            // Read but not started when shutdown began: say so, then close.
                            let reply = Envelope.failure(id: .null, error: WireError(.unavailable, "The daemon is shutting down; try again shortly."))
                            try await outbound.write(ByteBuffer(bytes: reply))
                            return
                        }
                        if line.readableBytes > dispatcher.maxLineBytes {
                            try await outbound.write(ByteBuffer(bytes: dispatcher.tooLargeReply()))
                            return
                        }
                        if line.readableBytes == 0 || (line.readableBytes == 1 && line.getInteger(at: line.readerIndex, as: UInt8.self) == 13) {
                            guard connections.markIdle(id) else { return }
                            continue
                        }
                        let reply = await dispatcher.reply(to: line, peer: peer)
                        try await outbound.write(ByteBuffer(bytes: reply))
                        guard connections.markIdle(id) else { return }
                    }
                } catch is ByteToMessageDecoderError.PayloadTooLargeError {
                    try await outbound.write(ByteBuffer(bytes: dispatcher.tooLargeReply()))
                } catch is NIOExtrasErrors.LeftOverBytesError {
                    // The client closed after an unterminated line: not a request (section 1).
                }
            }
        } catch {
            logger.debug("connection ended with an error", metadata: ["error": "\(error)"])
        }
    }
}

/// The open connections and whether each is in the middle of a request, so shutdown can close
/// the idle ones at once and wait only for the busy ones.
final class ConnectionRegistry: Sendable {
    private struct State {
        var nextID = 0
        var channels: [Int: (channel: any Channel, busy: Bool)] = [:]
        var shuttingDown = false
    }

    private let state = NIOLockedValueBox(State())

    var count: Int { state.withLockedValue { $0.channels.count } }

    func add(_ channel: any Channel) -> Int {
        state.withLockedValue { state in
            state.nextID += 1
            state.channels[state.nextID] = (channel, false)
            if state.shuttingDown { channel.close(promise: nil) }
            return state.nextID
        }
    }

    func remove(_ id: Int) {
        state.withLockedValue { _ = $0.channels.removeValue(forKey: id) }
    }

    /// False when shutdown has begun: the connection should stop instead of taking a request.
    func markBusy(_ id: Int) -> Bool {
        state.withLockedValue { state in
            guard !state.shuttingDown else { return false }
            state.channels[id]?.busy = true
            return true
        }
    }

    /// False when shutdown has begun: the reply is out, the connection should end now.
    func markIdle(_ id: Int) -> Bool {
        state.withLockedValue { state in
            state.channels[id]?.busy = false
            return !state.shuttingDown
        }
    }

    func beginShutdown() {
        state.withLockedValue { state in
            state.shuttingDown = true
            for (_, entry) in state.channels where !entry.busy {
                entry.channel.close(promise: nil)
            }
        }
    }
}

/// A one-shot "is the server up?" flag that tasks can wait on: settled once (true: serving,
/// false: failed first), and a cancelled waiter leaves with false instead of hanging.
final class Readiness: Sendable {
    private enum State {
        case waiting([Int: CheckedContinuation<Bool, Never>], nextID: Int)
        case settled(Bool)
    }
    private let state = NIOLockedValueBox(State.waiting([:], nextID: 0))

    func wait() async -> Bool {
        let id = NIOLockedValueBox<Int?>(nil)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let settled: Bool? = state.withLockedValue { state in
                    switch state {
                    case .settled(let value):
                        return value
                    case .waiting(var waiters, let next):
                        if Task.isCancelled { return false }
                        waiters[next] = continuation
                        state = .waiting(waiters, nextID: next + 1)
                        id.withLockedValue { $0 = next }
                        return nil
                    }
                }
                if let settled { continuation.resume(returning: settled) }
            }
        } onCancel: {
            let waiter: CheckedContinuation<Bool, Never>? = state.withLockedValue { state in
                guard case .waiting(var waiters, let next) = state, let key = id.withLockedValue({ $0 }) else { return nil }
                let found = waiters.removeValue(forKey: key)
                state = .waiting(waiters, nextID: next)
                return found
            }
            waiter?.resume(returning: false)
        }
    }

    /// The first call decides; later calls change nothing.
    func settle(_ value: Bool) {
        let waiters: [CheckedContinuation<Bool, Never>] = state.withLockedValue { state in
            guard case .waiting(let waiters, _) = state else { return [] }
            state = .settled(value)
            return Array(waiters.values)
        }
        for waiter in waiters { waiter.resume(returning: value) }
    }
}
