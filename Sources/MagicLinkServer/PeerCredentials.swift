import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// Who is on the other end of a Unix socket connection, from SO_PEERCRED (set by the kernel at
/// connect time; the peer cannot lie about it).
struct PeerCredentials: Sendable, Equatable {
    /// Laid out as Linux's `struct ucred`, which Glibc does not import.
    struct Raw {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
    }

    var pid: Int32
    var uid: UInt32
    var gid: UInt32

    /// Unknown peers (no credentials available) are never administrators.
    static let unknown = PeerCredentials(pid: 0, uid: UInt32.max, gid: UInt32.max)

    /// Completes at once when called on the channel's event loop (the socket is asked
    /// directly); never fails: unreadable credentials are `.unknown`.
    static func future(of channel: any Channel) -> EventLoopFuture<PeerCredentials> {
        guard let provider = channel as? SocketOptionProvider else { return channel.eventLoop.makeSucceededFuture(.unknown) }
        let raw: EventLoopFuture<Raw> = provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        return raw.map { PeerCredentials(pid: $0.pid, uid: $0.uid, gid: $0.gid) }.recover { _ in .unknown }
    }

    /// The overflow id: under user namespaces (systemd's PrivateUsers=) every unmapped peer
    /// shows up as 65534, so it can never identify an administrator.
    static let overflowID: UInt32 = 65_534

    /// Root, or a configured admin uid, or a process whose primary gid is a configured admin gid.
    func isAdministrator(uids: [UInt32], gids: [UInt32]) -> Bool {
        uid == 0 || matches(uids: uids, gids: gids)
    }

    /// The uid is one of `uids` or the primary gid one of `gids`. The overflow id never matches;
    /// nor do unknown credentials (4294967295, which the configuration refuses in a list).
    func matches(uids: [UInt32], gids: [UInt32]) -> Bool {
        (uid != Self.overflowID && uids.contains(uid)) || (gid != Self.overflowID && gids.contains(gid))
    }
}
