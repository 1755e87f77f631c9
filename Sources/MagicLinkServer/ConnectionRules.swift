import NIOCore

/// Who may connect and how long a connection may take: the rules of Protocol/README.md
/// section 1, from `allowed_uids`, `allowed_gids`, `max_connections`, `request_timeout` and
/// `idle_timeout`. Pure values; the socket server applies them.
struct ConnectionPolicy: Sendable {
    var allowedUIDs: [UInt32] = []
    var allowedGIDs: [UInt32] = []
    /// Administrators may always connect, so the admin CLI works whatever the allow lists say.
    var adminUIDs: [UInt32] = []
    var adminGIDs: [UInt32] = []
    var maxConnections = 1024
    /// From the first byte of a request line to its line feed; also how long a reply may wait
    /// for the client to read it.
    var requestTimeout: TimeAmount = .seconds(10)
    /// No request (and nothing being received or answered) for this long closes the connection.
    var idleTimeout: TimeAmount = .seconds(300)

    init() {}

    init(_ configuration: Configuration) {
        allowedUIDs = configuration.allowedUIDs
        allowedGIDs = configuration.allowedGIDs
        adminUIDs = configuration.adminUIDs
        adminGIDs = configuration.adminGIDs
        maxConnections = configuration.maxConnections
        requestTimeout = .seconds(configuration.requestTimeout)
        idleTimeout = .seconds(configuration.idleTimeout)
    }

    /// Whether the allow lists restrict anything (both empty: whoever can open the socket file).
    var restrictsPeers: Bool { !allowedUIDs.isEmpty || !allowedGIDs.isEmpty }

    /// Root and the administrators always; otherwise a listed uid or a listed primary gid. A peer
    /// whose credentials could not be read (`PeerCredentials.unknown`) or that shows up as the
    /// overflow id never matches a list.
    func admits(_ peer: PeerCredentials) -> Bool {
        guard restrictsPeers else { return true }
        return peer.isAdministrator(uids: adminUIDs, gids: adminGIDs) || peer.matches(uids: allowedUIDs, gids: allowedGIDs)
    }
}

/// What a connection is doing, as the capacity rule sees it.
enum ConnectionActivity: Sendable, Equatable {
    /// Every request read has been answered and written, and no line is being received.
    case idle(since: NIODeadline)
    /// Part of a request line has arrived (and nothing is in flight).
    case receiving(since: NIODeadline)
    /// A request is being worked on, or its reply is still being written.
    case busy
}

enum Eviction {
    /// The connection to close when a new one arrives and `max_connections` are open: the one
    /// idle longest; when none is idle, the one that has been receiving its request line the
    /// longest (a slow sender, cut off by `request_timeout` soon anyway); never a busy one.
    /// Nil when every connection is busy: the newcomer is refused instead.
    static func victim<S: Sequence>(among connections: S) -> Int? where S.Element == (id: Int, activity: ConnectionActivity) {
        var idle: (id: Int, since: NIODeadline)?
        var receiving: (id: Int, since: NIODeadline)?
        for (id, activity) in connections {
            switch activity {
            case .idle(let since):
                if idle.map({ since < $0.since || (since == $0.since && id < $0.id) }) ?? true { idle = (id, since) }
            case .receiving(let since):
                if receiving.map({ since < $0.since || (since == $0.since && id < $0.id) }) ?? true { receiving = (id, since) }
            case .busy:
                break
            }
        }
        return idle?.id ?? receiving?.id
    }
}

/// Follows the request lines in a connection's byte stream the way the line decoder and the
/// server see them: a line ends at a line feed; a line whose bytes before the line feed are
/// empty or only one or two carriage returns is blank (the decoder drops one `\r` before `\n`,
/// the server ignores an empty line and a lone `\r`) and gets no reply.
struct LineScanner {
    /// Bytes of the line that has begun and not yet ended.
    private(set) var partialLength = 0
    private var partialIsBlank = true

    /// Part of a line has arrived.
    var midLine: Bool { partialLength > 0 }

    /// Takes the next bytes of the stream: how many lines ended in them, and how many of those
    /// are requests (not blank).
    mutating func consume(_ bytes: UnsafeRawBufferPointer) -> (lines: Int, requests: Int) {
        var lines = 0
        var requests = 0
        var start = 0
        let count = bytes.count
        while start < count {
            var end = start
            while end < count && bytes[end] != 0x0A { end += 1 }
            take(bytes, start, end)
            guard end < count else { break }
            lines += 1
            if !(partialIsBlank && partialLength <= 2) { requests += 1 }
            partialLength = 0
            partialIsBlank = true
            start = end + 1
        }
        return (lines, requests)
    }

    /// Forgets a partial line (the client closed its sending side: it never becomes a request).
    mutating func discardPartialLine() {
        partialLength = 0
        partialIsBlank = true
    }

    private mutating func take(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) {
        guard end > start else { return }
        if partialIsBlank {
            if partialLength + (end - start) > 2 {
                partialIsBlank = false
            } else {
                for i in start..<end where bytes[i] != 0x0D { partialIsBlank = false }
            }
        }
        partialLength += end - start
    }
}

/// At most one log line per `interval` for one kind of event; the events in between are counted
/// and reported by the next line, or by a summary line when the interval ends (so a burst that
/// stops is still accounted for).
struct LogLimiter {
    enum Decision: Equatable {
        /// Write the line, saying how many were left out before it.
        case log(suppressedBefore: Int)
        /// Leave it out; when a time is given, call `flush` then.
        case suppress(flushAt: NIODeadline?)
    }

    let interval: TimeAmount
    private var nextAllowed = NIODeadline.uptimeNanoseconds(0)
    private(set) var suppressed = 0
    private var flushScheduled = false

    init(interval: TimeAmount) { self.interval = interval }

    mutating func event(at now: NIODeadline) -> Decision {
        if now >= nextAllowed {
            let left = suppressed
            suppressed = 0
            nextAllowed = now + interval
            return .log(suppressedBefore: left)
        }
        suppressed += 1
        guard !flushScheduled else { return .suppress(flushAt: nil) }
        flushScheduled = true
        return .suppress(flushAt: nextAllowed)
    }

    enum Flush: Equatable {
        /// Nothing was left out.
        case nothing
        /// Write one summary line for this many left-out events.
        case summary(Int)
        /// Too early for another line: call `flush` again then.
        case later(NIODeadline)
    }

    /// Called at the time `event` asked for. A summary line counts as a line: the next one
    /// comes an interval later at the earliest.
    mutating func flush(at now: NIODeadline) -> Flush {
        guard suppressed > 0 else {
            flushScheduled = false
            return .nothing
        }
        guard now >= nextAllowed else { return .later(nextAllowed) }
        flushScheduled = false
        let left = suppressed
        suppressed = 0
        nextAllowed = now + interval
        return .summary(left)
    }
}
