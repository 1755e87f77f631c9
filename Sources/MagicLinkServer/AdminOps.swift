import Logging
import MagicLinkCore
import MagicLinkProtocol
import MagicLinkStore
import NIOPosix

/// The operations an administrator runs on the host (through `magiclinkd status`, `sessions`,
/// `revoke`, `dead-letters`, `retry`, `purge`). Only peers that SO_PEERCRED shows to be root or a
/// configured admin uid/gid may call them; everyone else gets `permission_denied`.
struct AdminOps: Sendable {
    static let ops = ["admin_status", "admin_sessions", "admin_revoke", "admin_dead_letters", "admin_retry", "admin_purge",
                      "admin_create_user"]

    let store: SQLiteStore
    let apps: AppDirectory
    let blockingPool: NIOThreadPool
    let adminUIDs: [UInt32]
    let adminGIDs: [UInt32]
    let startedAt: Int64
    let rateWindow: Int64
    let mailWakeup: MailWakeup
    let time: any TimeSource
    let logger: Logger

    private static func sessionCacheFigures(_ figures: SessionCacheStatistics) -> JSONObject {
        let cap = { (value: UInt64) in JSONValue.integer(Int64(min(value, UInt64(Envelope.maximumSafeInteger)))) }
        return ["capacity": .integer(Int64(figures.capacity)), "entries": .integer(Int64(figures.entries)),
                "hits": cap(figures.hits), "misses": cap(figures.misses)]
    }

    func perform(_ op: String, _ params: Params, peer: PeerCredentials) async throws -> JSONObject {
        guard peer.isAdministrator(uids: adminUIDs, gids: adminGIDs) else {
            logger.warning("admin op refused", metadata: ["event": "admin_refused", "op": "\(op)", "peer_uid": "\(peer.uid)", "peer_pid": "\(peer.pid)"])
            throw WireError(.permissionDenied, "This op is for administrators: run it as root or as a configured admin uid/gid.")
        }
        let now = time.now()
        switch op {
        case "admin_status":
            let status = try await blocking { try self.store.status(now: now) }
            let states = ["queued", "sending", "sent", "failed", "expired"]
            return [
                "version": .string(MagicLinkVersion.string),
                "started_at": .integer(startedAt),
                "uptime_s": .integer(now - startedAt),
                "users": .integer(Int64(status.users)),
                "live_sessions": .integer(Int64(status.liveSessions)),
                "mail": .object(JSONObject(states.map { ($0, .integer(Int64(status.mail[$0] ?? 0))) })),
                "links": .object(["peeked_never_used": .integer(Int64(status.peekedNeverUsed)),
                                  "peeked_then_used": .integer(Int64(status.peekedThenUsed))]),
                "session_cache": .object(Self.sessionCacheFigures(store.sessionCacheStatistics)),
            ]

        case "admin_sessions":
            let userID = try params.optionalString("user_id")
            let emailText = try params.optionalString("email")
            guard (userID == nil) != (emailText == nil) else {
                throw WireError.invalidField("params.user_id", "or params.email is required (exactly one of them).")
            }
            let emailKey = try emailText.map { text -> String in
                guard let email = try? EmailAddress(parsing: text) else {
                    throw WireError(.invalidEmail, "The email address is not one plain address.")
                }
                return email.matchKey
            }
            // An address names a user per app; a user id names one user whatever the app.
            let appID = emailKey == nil ? nil : try apps.resolve(params).policy.appID
            let sessions = try await blocking { try self.store.liveSessions(userID: userID, appID: appID, emailKey: emailKey, now: now) }
            return ["sessions": .array(sessions.map { listing in
                var entry: JSONObject = [
                    "handle": .string(listing.handle),
                    "user_id": .string(listing.user.id),
                    "email": .string(listing.user.email),
                    "created_at": .integer(listing.session.createdAt),
                    "expires_at": .integer(listing.session.expiresAt),
                    "idle_expires_at": .integer(listing.session.idleExpiresAt),
                ]
                entry["ip"] = listing.session.ip.map(JSONValue.string)
                entry["user_agent"] = listing.session.userAgent.map(JSONValue.string)
                return .object(entry)
            })]

        case "admin_revoke":
            if let handle = try params.optionalString("handle") {
                guard handle.utf8.count >= 8, handle.utf8.count <= 64, handle.utf8.allSatisfy(\.isHexDigit) else {
                    throw WireError.invalidField("params.handle", "must be at least 8 hex digits of a session handle.")
                }
                let outcome = try await blocking { try self.store.revokeSession(handle: handle, liveAt: now) }
                switch outcome {
                case .revoked:
                    logger.notice("session revoked by an administrator", metadata: ["event": "admin_revoke", "handle": "\(handle.prefix(16))", "peer_uid": "\(peer.uid)"])
                    return ["revoked": 1]
                case .notFound:
                    return ["revoked": 0]
                case .ambiguous(let count):
                    throw WireError(.invalidRequest, "That handle matches \(count) sessions; give more digits.",
                                    details: ["field": "params.handle", "matches": .integer(Int64(count))])
                }
            }
            let userID = try params.requiredString("user_id")
            let authenticator = try apps.resolve(params)
            let revoked = try await blocking { try authenticator.logoutAll(userID: userID) }
            logger.notice("all sessions of a user revoked by an administrator", metadata: ["event": "admin_revoke", "user_id": "\(userID)", "revoked": "\(revoked)", "peer_uid": "\(peer.uid)"])
            return ["revoked": .integer(Int64(revoked))]

        case "admin_dead_letters":
            var limit = 100
            if let given = params.object["limit"], given != .null {
                guard case .integer(let n) = given, n >= 1, n <= 10_000 else {
                    throw WireError.invalidField("params.limit", "must be an integer from 1 to 10000.")
                }
                limit = Int(n)
            }
            let count = limit
            let letters = try await blocking { try self.store.deadLetters(limit: count) }
            return ["messages": .array(letters.map { letter in
                var entry: JSONObject = [
                    "message_id": .string(letter.messageID),
                    "recipient": .string(letter.recipient),
                    "state": .string(letter.state),
                    "attempts": .integer(Int64(letter.attempts)),
                    "created_at": .integer(letter.createdAt),
                    "expires_at": .integer(letter.expiresAt),
                ]
                entry["finished_at"] = letter.finishedAt.map(JSONValue.integer)
                entry["last_error"] = letter.lastError.map(JSONValue.string)
                return .object(entry)
            })]

        case "admin_retry":
            let messageID = try params.requiredString("message_id")
            let outcome = try await blocking { try self.store.retryDeadLetter(messageID: messageID, now: now) }
            if outcome == .queued { mailWakeup.signal() }
            logger.notice("dead letter retry requested", metadata: ["event": "admin_retry", "message_id": "\(messageID)", "outcome": "\(outcome.rawValue)"])
            var result: JSONObject = ["retried": .bool(outcome == .queued)]
            if outcome != .queued { result["reason"] = .string(outcome.rawValue) }
            return result

        case "admin_purge":
            let removed = try await blocking { try self.store.purge(now: now, rateWindow: self.rateWindow) }
            logger.notice("expired rows purged by an administrator", metadata: ["event": "admin_purge", "rows": "\(removed)"])
            return ["removed": .integer(Int64(removed))]

        case "admin_create_user":
            let email = try params.requiredString("email")
            let authenticator = try apps.resolve(params)
            let (user, created) = try await blocking { try authenticator.createUser(email: email) }
            if created {
                logger.notice("user created by an administrator", metadata: ["event": "admin_create_user", "user_id": "\(user.id)", "peer_uid": "\(peer.uid)"])
            }
            return ["user": .object(["id": .string(user.id), "email": .string(user.email)]), "created": .bool(created)]

        default:
            throw WireError(.unknownOp, "Unknown op.", details: ["op": .string(op)])
        }
    }

    private func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        do {
            return try await blockingPool.runIfActive(work)
        } catch is NIOThreadPoolError.ThreadPoolInactive {
            throw ShuttingDown()
        }
    }
}

extension UInt8 {
    var isHexDigit: Bool {
        (0x30...0x39).contains(self) || (0x41...0x46).contains(self) || (0x61...0x66).contains(self)
    }
}
