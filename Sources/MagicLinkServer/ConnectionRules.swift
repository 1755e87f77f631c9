import NIOCore

#if canImport(Glibc)
import Glibc
#endif

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

/// Cuts a connection's byte stream into request lines (Protocol/README.md section 1): a line
/// ends at a line feed, one carriage return before it is dropped, and a line that is then empty
/// or a lone carriage return is blank (no request, no reply). A line that grows past `limit`
/// bytes without ending overflows; the caller answers it and stops reading.
///
/// Lines that arrive whole are slices of the read buffer (no copy); only a line split across
/// reads is gathered in a buffer of its own.
struct LineFramer {
    /// What the stream holds next.
    enum Next {
        /// A complete request line, without its line ending.
        case line(ByteBuffer)
        /// A blank line: the caller skips it.
        case blank
        /// Nothing complete: the rest of the read is kept as the start of a line.
        case needMore
        /// The line being received passed `limit` bytes without ending.
        case overflow
    }

    let limit: Int
    /// The start of a line split across reads.
    private var partial: ByteBuffer?

    init(limit: Int) { self.limit = limit }

    /// Bytes of the line that has begun and not yet ended.
    var partialLength: Int { partial?.readableBytes ?? 0 }

    /// Part of a line has arrived.
    var midLine: Bool { partialLength > 0 }

    /// Takes the next line out of `input`; call again until it says `needMore` (or `overflow`).
    mutating func next(from input: inout ByteBuffer) -> Next {
        let length = input.withUnsafeReadableBytes { bytes -> Int? in
            guard let base = bytes.baseAddress, let found = memchr(base, 0x0A, bytes.count) else { return nil }
            return base.distance(to: UnsafeRawPointer(found))
        }
        guard let length else {
            if input.readableBytes > 0 {
                if partial == nil { partial = ByteBuffer() }
                partial!.writeBuffer(&input)
            }
            return partialLength > limit ? .overflow : .needMore
        }
        var line: ByteBuffer
        if var start = partial {
            partial = nil
            start.writeBytes(input.readableBytesView.prefix(length))
            input.moveReaderIndex(forwardBy: length + 1)
            line = start
        } else {
            line = input.readSlice(length: length)!
            input.moveReaderIndex(forwardBy: 1)
        }
        if line.readableBytes > 0, line.getInteger(at: line.writerIndex - 1, as: UInt8.self) == 0x0D {
            line.moveWriterIndex(to: line.writerIndex - 1)
        }
        if line.readableBytes == 0 || (line.readableBytes == 1 && line.getInteger(at: line.readerIndex, as: UInt8.self) == 0x0D) {
            return .blank
        }
        return .line(line)
    }

    /// Forgets a partial line (the client closed its sending side: it never becomes a request).
    mutating func discardPartialLine() {
        partial = nil
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
