import Logging
import MagicLinkProtocol
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// Serves the line protocol on a Unix domain socket: a `ConnectionGuard` and its `RequestServer` for each connection, requests of
/// a connection answered in order. Before a connection is served, its peer is checked against
/// the allow lists and a place is found for it (`max_connections`: the connection idle longest
/// makes room); a `ConnectionGuard` then enforces the request and idle timeouts on the event
/// loop. On graceful shutdown it stops accepting, lets each busy connection finish the request
/// in hand, closes idle ones, and removes the socket file it made (never one it inherited from
/// systemd).
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
    let policy: ConnectionPolicy
    /// Upper bound for in-flight requests to finish after shutdown begins.
    let drainTimeout: Duration
    private let connections = ConnectionRegistry()
    private let readiness = Readiness()
    private let logs: ConnectionLogs

    /// What the accept path decided; the pipeline does the rest either way.
    enum Accepted: Sendable {
        /// A `RequestServer` serves it.
        case served
        /// Not served; its pipeline closes it (after a reply, when there is one).
        case refused
    }

    init(listener: Listener, dispatcher: Dispatcher, group: any EventLoopGroup, logger: Logger,
         policy: ConnectionPolicy = ConnectionPolicy(), drainTimeout: Duration = .seconds(10)) {
        self.listener = listener
        self.dispatcher = dispatcher
        self.group = group
        self.logger = logger
        self.policy = policy
        self.drainTimeout = drainTimeout
        self.logs = ConnectionLogs(logger: logger)
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
                // On the connection's event loop, before it is registered: nothing is read yet.
                PeerCredentials.future(of: channel).flatMapThrowing { peer in
                    do {
                        return try self.accept(channel, peer: peer, maxLine: maxLine)
                    } catch {
                        // NIO never registers a connection whose set-up failed: close it here
                        // (which also frees its place).
                        channel.close(promise: nil)
                        throw error
                    }
                }
            }
        // Adopting a socket makes NIO listen again with its default backlog (128); raise it back
        // so a burst of connections waits in the queue instead of failing with EAGAIN. An
        // inherited socket gets the kernel's maximum, as systemd's Backlog= default intends.
        listen(descriptor, owned == nil ? SOMAXCONN : 256)
        logger.info("listening", metadata: ["socket": "\(description)"])
        readiness.settle(true)

        try await withGracefulShutdownHandler {
            try await server.executeThenClose { inbound in
                // Each accepted connection is served by its own pipeline (ConnectionGuard and RequestServer).
                for try await _ in inbound {}
            }
            // Not accepting any more: close idle connections, give busy ones a bounded time.
            await self.drain()
            connections.closeAll()
        } onGracefulShutdown: {
            self.logger.info("shutting down: no longer accepting connections")
            if let owned { removeSocketFile(at: owned.path, ifStill: owned.socket) }
            server.channel.close(promise: nil)
        }
    }

    /// Decides, on the new connection's event loop, whether it is served, and builds its pipeline.
    private func accept(_ channel: any Channel, peer: PeerCredentials, maxLine: Int) throws -> Accepted {
        let pipeline = channel.pipeline.syncOperations
        guard policy.admits(peer) else {
            logs.refused.log("connection refused: the peer is not in allowed_uids or allowed_gids",
                             metadata: ["peer_uid": "\(peer.uid)", "peer_gid": "\(peer.gid)", "peer_pid": "\(peer.pid)"],
                             on: channel.eventLoop)
            try pipeline.addHandler(RefusedConnectionHandler(reply: nil))
            return .refused
        }
        let now = channel.eventLoop.now
        switch connections.admit(channel, limit: policy.maxConnections, now: now) {
        case .shuttingDown:
            try pipeline.addHandler(RefusedConnectionHandler(reply: nil))
            return .refused
        case .full:
            logs.full.log("connection refused: max_connections reached and every connection is busy",
                          metadata: ["max_connections": "\(policy.maxConnections)", "peer_uid": "\(peer.uid)", "peer_pid": "\(peer.pid)"],
                          on: channel.eventLoop)
            let reply = Envelope.failure(id: .null, error: WireError(
                .unavailable, "The daemon has max_connections open connections, all busy; try again shortly.",
                details: ["reason": "too_many_connections"]))
            try pipeline.addHandler(RefusedConnectionHandler(reply: reply))
            return .refused
        case .admitted(let slot, let evicted):
            if let evicted {
                evicted.channel.close(promise: nil)
                var metadata: Logger.Metadata = ["max_connections": "\(policy.maxConnections)"]
                switch evicted.activity {
                case .idle(let since): metadata["idle_ms"] = "\((now - since).nanoseconds / 1_000_000)"
                case .receiving(let since): metadata["receiving_ms"] = "\((now - since).nanoseconds / 1_000_000)"
                case .busy: break
                }
                logs.evicted.log("max_connections reached: closed the connection idle longest to make room", metadata: metadata,
                                 on: channel.eventLoop)
            }
            let registry = connections
            channel.closeFuture.whenComplete { _ in registry.remove(slot) }
            // The guard cuts off a line that never ends; `RequestServer` checks each complete line
            // too (a whole over-long line can arrive in one read). The guard must stay the
            // outbound handler nearest the socket: it reads the channel's buffered byte count to
            // learn that replies are written, which a handler buffering writes below it would hide.
            let server = RequestServer(slot: slot, peer: peer, dispatcher: dispatcher, registry: registry, logger: logger,
                                       eventLoop: channel.eventLoop)
            try pipeline.addHandler(ConnectionGuard(slot: slot, registry: registry, policy: policy, peer: peer, logs: logs,
                                                    maxLineBytes: maxLine, now: now, server: server))
            return .served
        }
    }

    private func drain() async {
        connections.beginShutdown()
        let deadline = ContinuousClock.now + drainTimeout
        while connections.count > 0 || connections.inFlight > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        if connections.count > 0 || connections.inFlight > 0 {
            logger.warning("closing connections still busy after the drain timeout", metadata: ["connections": "\(connections.count)", "requests": "\(connections.inFlight)"])
        }
    }
}

/// The open connections: whether each is in the middle of a request (so shutdown can close the
/// idle ones at once and wait only for the busy ones) and what its `ConnectionGuard` last said
/// it was doing (so a newcomer at `max_connections` can replace the connection idle longest).
/// Each connection keeps its own state behind its own lock (`Slot`), so the per-request updates
/// of two event loops never meet on one lock; the registry's lock guards the set of slots. Lock
/// order: registry, then slot; a slot's methods never take the registry's lock.
/// Channels are only ever closed outside the locks: a close can run its callbacks (which come
/// back here) at once.
final class ConnectionRegistry: Sendable {
    /// One connection's place: what it is doing, whether it was chosen to make room, and whether
    /// shutdown has begun (copied here so a request does not need the registry's lock).
    final class Slot: Sendable, Hashable {
        fileprivate struct State {
            /// The request handler has taken a request and not yet written its reply.
            var busy = false
            var activity: ConnectionActivity
            /// Chosen to make room; its close is on the way and it no longer counts.
            var evicted = false
            var shuttingDown = false
        }

        let id: Int
        let channel: any Channel
        fileprivate let state: NIOLockedValueBox<State>

        fileprivate init(id: Int, channel: any Channel, activity: ConnectionActivity) {
            self.id = id
            self.channel = channel
            self.state = NIOLockedValueBox(State(activity: activity))
        }

        static func == (a: Slot, b: Slot) -> Bool { a === b }
        func hash(into hasher: inout Hasher) { hasher.combine(id) }
    }

    private struct State {
        var nextID = 0
        var slots: [Int: Slot] = [:]
        var evicted = 0
        var shuttingDown = false
        /// Requests handed to the dispatcher whose reply has not come back, whether or not
        /// their connection is still open: shutdown waits for them before the pools stop.
        var inFlight = 0
    }

    enum Admission {
        /// Served in `slot`; `evicted` (already marked) must be closed by the caller.
        case admitted(slot: Slot, evicted: (channel: any Channel, activity: ConnectionActivity)?)
        /// At the limit and every connection busy.
        case full
        case shuttingDown
    }

    private let state = NIOLockedValueBox(State())

    /// Connections not yet closed (evicted ones included until their close completes).
    var count: Int { state.withLockedValue { $0.slots.count } }

    /// Takes a place for a new connection, choosing one to evict when `limit` are open.
    func admit(_ channel: any Channel, limit: Int, now: NIODeadline) -> Admission {
        state.withLockedValue { state in
            guard !state.shuttingDown else { return .shuttingDown }
            var evicted: (channel: any Channel, activity: ConnectionActivity)?
            if state.slots.count - state.evicted >= limit {
                // The slots' activities are read one lock at a time, so the chosen one may have
                // taken a request meanwhile (on another event loop): it is marked only if it is
                // still doing what it was chosen for, else the choice is made again.
                var chosen: (slot: Slot, activity: ConnectionActivity)?
                for _ in 0..<4 where chosen == nil {
                    let candidates = state.slots.values.compactMap { slot in
                        slot.state.withLockedValue { $0.evicted ? nil : (id: slot.id, activity: $0.activity) }
                    }
                    guard let victim = Eviction.victim(among: candidates), let slot = state.slots[victim],
                          let seen = candidates.first(where: { $0.id == victim })?.activity else { return .full }
                    let marked = slot.state.withLockedValue { slotState in
                        guard !slotState.evicted, slotState.activity == seen else { return false }
                        slotState.evicted = true
                        return true
                    }
                    if marked { chosen = (slot, seen) }
                }
                // Still changing under us after four tries: every connection is busy enough.
                guard let chosen else { return .full }
                state.evicted += 1
                evicted = (chosen.slot.channel, chosen.activity)
            }
            state.nextID += 1
            let slot = Slot(id: state.nextID, channel: channel, activity: .idle(since: now))
            state.slots[slot.id] = slot
            return .admitted(slot: slot, evicted: evicted)
        }
    }

    func remove(_ slot: Slot) {
        state.withLockedValue { state in
            guard state.slots.removeValue(forKey: slot.id) != nil else { return }
            if slot.state.withLockedValue({ $0.evicted }) { state.evicted -= 1 }
        }
    }

    /// Records what the connection is doing; false when it was evicted: then it must not serve
    /// anything more. Runs twice per request, on the connection's own lock only. (After its
    /// close has removed it, this still answers true; nothing is served on a closed channel.)
    func update(_ slot: Slot, activity: ConnectionActivity) -> Bool {
        slot.state.withLockedValue { state in
            guard !state.evicted else { return false }
            state.activity = activity
            return true
        }
    }

    /// What the connection last said it was doing (nil: gone or evicted).
    func activity(of slot: Slot) -> ConnectionActivity? {
        guard state.withLockedValue({ $0.slots[slot.id] != nil }) else { return nil }
        return slot.state.withLockedValue { $0.evicted ? nil : $0.activity }
    }

    /// False when shutdown has begun: the connection should stop instead of taking a request.
    func markBusy(_ slot: Slot) -> Bool {
        slot.state.withLockedValue { state in
            guard !state.shuttingDown else { return false }
            state.busy = true
            return true
        }
    }

    var inFlight: Int { state.withLockedValue { $0.inFlight } }
    func requestStarted() { state.withLockedValue { $0.inFlight += 1 } }
    func requestEnded() { state.withLockedValue { $0.inFlight -= 1 } }

    /// False when shutdown has begun: the reply is out, the connection should end now.
    @discardableResult
    func markIdle(_ slot: Slot) -> Bool {
        slot.state.withLockedValue { state in
            state.busy = false
            return !state.shuttingDown
        }
    }

    /// Closes every connection still open (after the drain timeout).
    func closeAll() {
        let open: [any Channel] = state.withLockedValue { state in state.slots.values.map(\.channel) }
        for channel in open { channel.close(promise: nil) }
    }

    /// From here on no connection takes a new request; the idle ones are closed now.
    func beginShutdown() {
        let idle: [any Channel] = state.withLockedValue { state in
            state.shuttingDown = true
            return state.slots.values.compactMap { slot in
                slot.state.withLockedValue { slotState in
                    slotState.shuttingDown = true
                    return slotState.busy ? nil : slot.channel
                }
            }
        }
        for channel in idle { channel.close(promise: nil) }
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
