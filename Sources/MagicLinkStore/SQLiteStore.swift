import CSQLite
import MagicLinkCore
#if canImport(Glibc)
import Glibc
#endif

/// magiclinkd's state in one SQLite file (WAL mode, synchronous=FULL so an acknowledged write
/// survives a crash or power loss). One writer connection serializes every write transaction;
/// readers use a small pool of their own connections and never block the writer.
/// Every method blocks (call them from a thread pool, never from an event loop) except
/// `write(suspending:)` and `cachedSession`.
public final class SQLiteStore: AuthStore, @unchecked Sendable {
    public let path: String
    private let writer: Connection
    private let writerLock = Lock()
    private let commits: GroupCommit
    private let readersLock = Lock()
    private var idleReaders: [Connection] = []
    private let maximumIdleReaders: Int
    /// Live sessions answered without the database (nil when disabled or the WAL index cannot
    /// be mapped); see `SessionCache` for why it is never behind the database.
    let sessionCache: SessionCache?
    /// Sessions and users this process changed since the last reconciliation (writer lock).
    private let changes = WriterChanges()
    /// The writer's last `PRAGMA data_version`: it moves only for other connections' commits.
    private var lastDataVersion: Int64?

    /// WAL pages past which the writer checkpoints (`PRAGMA wal_autocheckpoint`).
    static let walAutocheckpointPages = 4_000

    /// Opens (creating when missing) and migrates the database; restricts its files to mode 0600.
    /// `sessionCacheCapacity` bounds the live sessions kept in memory (0: none).
    public init(path: String, maximumIdleReaders: Int = 4, sessionCacheCapacity: Int = 1_000_000,
                now: Int64 = SystemTime().now()) throws {
        self.path = path
        self.maximumIdleReaders = maximumIdleReaders
        writer = try Connection(path: path)
        let journalMode = try writer.queryFirst("PRAGMA journal_mode = WAL") { $0.text(0) }
        try writer.execute("PRAGMA synchronous = FULL")
        // The writer checkpoints after the commit that takes the WAL past this many pages, and
        // every commit waits meanwhile (the copy into the database file, and its fsync). At
        // 4,000 pages (16 MiB of WAL) instead of SQLite's 1,000, hot pages are copied once
        // instead of four times and the fsync comes a quarter as often: `start` c=32 about a
        // fifth faster on the benchmark's database, its p99 17 -> 29 ms (README, Performance).
        try writer.execute("PRAGMA wal_autocheckpoint = \(Self.walAutocheckpointPages)")
        try writer.execute("PRAGMA foreign_keys = ON")
        _ = try Migrations.run(on: writer, now: now)
        commits = GroupCommit(connection: writer, connectionLock: writerLock)
        try Self.restrictPermissions(of: path)
        // Only a WAL index moves with every commit; without one the cache stays off.
        if sessionCacheCapacity > 0, journalMode?.lowercased() == "wal", let counter = WALCommitCounter(connection: writer) {
            sessionCache = SessionCache(counter: counter, capacity: sessionCacheCapacity)
            changes.install(on: writer)
            lastDataVersion = try writer.queryFirst("PRAGMA data_version") { $0.int64(0) }
            commits.afterBatch = { [unowned self] in reconcileSessionCache() }
        } else {
            sessionCache = nil
        }
    }

    deinit {
        // The hook's context is `changes`, which may go before the writer does.
        WriterChanges.uninstall(from: writer)
    }

    public func cachedSession(hash: SecretHash, usable: (CachedSession) -> Bool) -> CachedSession? {
        sessionCache?.lookup(hash, usable: usable)
    }

    public func withCachedSession(hash: SecretHash, usable: (CachedSessionTimes) -> Bool, answer: (CachedSessionBytes) -> Void) -> Bool {
        sessionCache?.withSession(hash, usable: usable, answer: answer) ?? false
    }

    /// The session cache's figures, for `admin_status` (all 0 when it is off).
    public var sessionCacheStatistics: SessionCacheStatistics {
        sessionCache?.statistics ?? SessionCacheStatistics(capacity: 0, entries: 0, hits: 0, misses: 0)
    }

    /// Brings the session cache up to the database after this process's commits (and notices
    /// anyone else's). Holds the writer lock, with no transaction open.
    private func reconcileSessionCache() {
        guard let sessionCache, !writer.inTransaction else { return }
        // The state first: a commit after this read moves it again and is caught next time.
        let state = sessionCache.counterState
        let version = try? writer.queryFirst("PRAGMA data_version") { $0.int64(0) }
        let external = version == nil || version != lastDataVersion
        lastDataVersion = version
        sessionCache.reconcile(state: state, external: external, everything: changes.everything,
                               changed: changes.sessions)
        changes.reset()
    }

    /// The names of all migrations applied to this database, in order.
    public func appliedMigrations() throws -> [String] {
        try writerLock.withLock {
            try writer.query("SELECT name FROM schema_migrations ORDER BY name") { $0.text(0) }
        }
    }

    static func restrictPermissions(of path: String) throws {
        for file in [path, path + "-wal", path + "-shm"] {
            var info = stat()
            guard stat(file, &info) == 0 else { continue }
            if info.st_mode & 0o777 != 0o600, chmod(file, 0o600) != 0 {
                throw StoreError.filePermissions(path: file, errno: errno)
            }
        }
    }

    // MARK: transactions

    /// Write transactions from concurrent callers share commits (see `GroupCommit`).
    public func write<T>(_ body: (any AuthTransaction) throws -> T) throws -> T {
        do {
            return try commits.perform { try body(Transaction(connection: $0, sessionFill: nil)) }
        } catch {
            throw classify(error)
        }
    }

    /// The same as `write`, suspending: the batch's leader runs `body` on its own thread.
    public func write<T: Sendable>(suspending body: @escaping @Sendable (any AuthTransaction) throws -> T) async throws -> T {
        do {
            return try await commits.perform { try body(Transaction(connection: $0, sessionFill: nil)) }
        } catch {
            throw classify(error)
        }
    }

    public func read<T>(_ body: (any AuthReadTransaction) throws -> T) throws -> T {
        var fill: Transaction.SessionFill?
        if let sessionCache {
            // A commit the writer has not reconciled (another process's, while ours is idle)
            // keeps the cache shut until someone does; the writer does it after its batches.
            if sessionCache.isBehind { writerLock.ifAvailable { reconcileSessionCache() } }
            fill = (sessionCache, sessionCache.fillGeneration())  // before the snapshot
        }
        let connection = try checkOutReader()
        defer { checkIn(connection) }
        do {
            // Prepared once per connection, like every other statement.
            try connection.run("BEGIN")
            defer { _ = try? connection.run("COMMIT") }
            return try body(Transaction(connection: connection, sessionFill: fill))
        } catch {
            throw classify(error)
        }
    }

    private func checkOutReader() throws -> Connection {
        if let idle = readersLock.withLock({ idleReaders.popLast() }) { return idle }
        do {
            let connection = try Connection(path: path)
            try connection.execute("PRAGMA query_only = ON")
            return connection
        } catch {
            throw classify(error)
        }
    }

    private func checkIn(_ connection: Connection) {
        // A reader left inside a transaction would refuse every later BEGIN and pin an old
        // WAL snapshot (checkpoints could not finish): end it, or drop the connection.
        try? connection.rollbackIfOpen()
        guard !connection.inTransaction else { return }
        readersLock.withLock {
            if idleReaders.count < maximumIdleReaders { idleReaders.append(connection) }
        }
    }

    // MARK: mail queue

    /// Hands back messages claimed by a process that died before confirming them.
    @discardableResult
    public func releaseClaimedMail() throws -> Int {
        try writeRaw { try $0.run("UPDATE mail_queue SET state = 'queued', claimed_at = NULL WHERE state = 'sending'") }
    }

    /// Claims up to `limit` due messages for delivery (state `sending`, attempts + 1).
    public func claimDueMail(now: Int64, limit: Int) throws -> [QueuedMail] {
        try writeRaw { connection in
            try connection.query("""
                UPDATE mail_queue SET state = 'sending', claimed_at = ?1, last_attempt_at = ?1, attempts = attempts + 1
                WHERE message_id IN (
                    SELECT message_id FROM mail_queue
                    WHERE state = 'queued' AND next_attempt_at <= ?1
                    ORDER BY next_attempt_at LIMIT ?2)
                RETURNING message_id, kind, recipient, sealed_token, created_at, expires_at, attempts, locale, app_id
                """, [.integer(now), .integer(Int64(limit))]) { row in
                QueuedMail(messageID: row.text(0), kind: QueuedMail.Kind(rawValue: row.text(1)) ?? .login,
                           recipient: row.text(2), sealedToken: row.blob(3), createdAt: row.int64(4),
                           expiresAt: row.int64(5), attempts: Int(row.int64(6)), locale: row.optionalText(7),
                           appID: row.text(8))
            }
        }
    }

    /// Whether the login token with this hash can still be used: not consumed, not replaced by a
    /// newer `start`, not expired. Mail for a dead link is not worth sending.
    public func isTokenLive(hash: [UInt8], now: Int64) throws -> Bool {
        try read { tx in
            guard let token = try tx.token(hash: hash) else { return false }
            return token.usedAt == nil && token.supersededAt == nil && now < token.expiresAt
        }
    }

    /// The earliest time a queued message becomes due, if any.
    public func nextMailDue() throws -> Int64? {
        let connection = try checkOutReader()
        defer { checkIn(connection) }
        do {
            return try connection.queryFirst("SELECT min(next_attempt_at) FROM mail_queue WHERE state = 'queued'") { $0.optionalInt64(0) } ?? nil
        } catch {
            throw classify(error)
        }
    }

    public enum MailOutcome: Sendable {
        case sent
        /// The link inside expired (or was replaced) before it could be sent; the reason is kept.
        case expired(reason: String)
        case failedPermanently(reason: String)
        case retry(at: Int64, reason: String)
    }

    /// What became of one claimed message, and when.
    public typealias FinishedMail = (messageID: String, outcome: MailOutcome, at: Int64)

    /// Records what became of a claimed message. Finished messages lose their sealed token.
    public func finishMail(messageID: String, outcome: MailOutcome, now: Int64) throws {
        try finishMail([(messageID, outcome, now)])
    }

    /// Records several outcomes in one transaction (all or none).
    public func finishMail(_ outcomes: [FinishedMail]) throws {
        guard !outcomes.isEmpty else { return }
        _ = try writeRaw { connection in
            for (messageID, outcome, now) in outcomes {
                try Self.record(outcome, of: messageID, at: now, on: connection)
            }
        }
    }

    private static func record(_ outcome: MailOutcome, of messageID: String, at now: Int64, on connection: Connection) throws {
        switch outcome {
        case .sent:
            try connection.run("UPDATE mail_queue SET state = 'sent', finished_at = ?2, sealed_token = NULL, last_error = NULL WHERE message_id = ?1",
                               [.text(messageID), .integer(now)])
        case .expired(let reason):
            try connection.run("UPDATE mail_queue SET state = 'expired', finished_at = ?2, sealed_token = NULL, last_error = coalesce(last_error || ' / ', '') || ?3 WHERE message_id = ?1",
                               [.text(messageID), .integer(now), .text(reason)])
        case .failedPermanently(let reason):
            // The sealed token stays until the link expires, so an admin can retry the
            // message after fixing the cause (purge drops it with the row's other data).
            try connection.run("UPDATE mail_queue SET state = 'failed', finished_at = ?2, last_error = ?3 WHERE message_id = ?1",
                               [.text(messageID), .integer(now), .text(reason)])
        case .retry(let at, let reason):
            try connection.run("UPDATE mail_queue SET state = 'queued', claimed_at = NULL, next_attempt_at = ?2, last_error = ?3 WHERE message_id = ?1",
                               [.text(messageID), .integer(at), .text(reason)])
        }
    }

    /// Counts of queue rows by state, for status and tests.
    public func mailCounts() throws -> [String: Int] {
        let connection = try checkOutReader()
        defer { checkIn(connection) }
        let pairs = try connection.query("SELECT state, count(*) FROM mail_queue GROUP BY state") { ($0.text(0), Int($0.int64(1))) }
        return Dictionary(uniqueKeysWithValues: pairs)
    }

    // MARK: administration

    public struct Status: Sendable {
        public var mail: [String: Int]
        public var liveSessions: Int
        public var users: Int
        /// Links looked at with `peek` and never used before they expired or were replaced: mail
        /// scanners and link previews, or people who gave up. Over the links still kept (a day).
        public var peekedNeverUsed: Int
        /// Links looked at with `peek` and then used.
        public var peekedThenUsed: Int
    }

    public func status(now: Int64) throws -> Status {
        try readRaw { connection in
            let mail = try connection.query("SELECT state, count(*) FROM mail_queue GROUP BY state") { ($0.text(0), Int($0.int64(1))) }
            let live = try connection.queryFirst("SELECT count(*) FROM sessions WHERE expires_at > ?1 AND idle_expires_at > ?1", [.integer(now)]) { Int($0.int64(0)) } ?? 0
            let users = try connection.queryFirst("SELECT count(*) FROM users") { Int($0.int64(0)) } ?? 0
            let peeks = try connection.queryFirst("""
                SELECT count(*) FILTER (WHERE used_at IS NULL AND (superseded_at IS NOT NULL OR expires_at <= ?1)),
                       count(*) FILTER (WHERE used_at IS NOT NULL)
                FROM login_tokens WHERE peeks > 0
                """, [.integer(now)]) { (Int($0.int64(0)), Int($0.int64(1))) } ?? (0, 0)
            return Status(mail: Dictionary(uniqueKeysWithValues: mail), liveSessions: live, users: users,
                          peekedNeverUsed: peeks.0, peekedThenUsed: peeks.1)
        }
    }

    public struct SessionListing: Sendable {
        /// First 16 hex digits of the session id's hash: enough to name it, useless to use it.
        public var handle: String
        public var session: SessionRecord
        public var user: UserRecord
    }

    /// Live sessions of one user (by id, or by address matched as `user_key`), newest first.
    public func liveSessions(userID: String?, appID: String? = nil, emailKey: String?, now: Int64, limit: Int = 1_000) throws -> [SessionListing] {
        try readRaw { connection in
            try connection.query("""
                SELECT s.id_hash, s.user_id, s.created_at, s.expires_at, s.idle_expires_at, s.touched_at, s.ip, s.user_agent,
                       u.email, u.email_key, u.created_at
                FROM sessions s JOIN users u ON u.id = s.user_id
                WHERE (?1 IS NULL OR u.id = ?1) AND (?2 IS NULL OR u.email_key = ?2) AND (?5 IS NULL OR u.app_id = ?5)
                  AND s.expires_at > ?3 AND s.idle_expires_at > ?3
                ORDER BY s.created_at DESC LIMIT ?4
                """, [SQLValue(userID), SQLValue(emailKey), .integer(now), .integer(Int64(limit)), SQLValue(appID)]) { row in
                let hash = row.blob(0)
                return SessionListing(
                    handle: hex(hash.prefix(8)),
                    session: SessionRecord(hash: hash, userID: row.text(1), createdAt: row.int64(2), expiresAt: row.int64(3),
                                           idleExpiresAt: row.int64(4), touchedAt: row.int64(5), ip: row.optionalText(6),
                                           userAgent: row.optionalText(7)),
                    user: UserRecord(id: row.text(1), email: row.text(8), emailKey: row.text(9), createdAt: row.int64(10)))
            }
        }
    }

    public enum RevokeOutcome: Sendable, Equatable { case revoked, notFound, ambiguous(Int) }

    /// Ends the one live session whose hash starts with `handle` (hex, at least 8 digits).
    public func revokeSession(handle: String, liveAt now: Int64) throws -> RevokeOutcome {
        let pattern = handle.uppercased() + "%"
        return try writeRaw { connection in
            let matches = try connection.query(
                "SELECT id_hash FROM sessions WHERE hex(id_hash) LIKE ?1 AND expires_at > ?2 AND idle_expires_at > ?2",
                [.text(pattern), .integer(now)]) { $0.blob(0) }
            guard matches.count == 1 else { return matches.isEmpty ? .notFound : .ambiguous(matches.count) }
            try connection.run("DELETE FROM sessions WHERE id_hash = ?", [.blob(matches[0])])
            return .revoked
        }
    }

    public struct DeadLetter: Sendable {
        public var messageID: String
        public var recipient: String
        public var state: String
        public var attempts: Int
        public var createdAt: Int64
        public var expiresAt: Int64
        public var finishedAt: Int64?
        public var lastError: String?
    }

    /// Messages that failed permanently or expired unsent, newest first.
    public func deadLetters(limit: Int) throws -> [DeadLetter] {
        try readRaw { connection in
            try connection.query("""
                SELECT message_id, recipient, state, attempts, created_at, expires_at, finished_at, last_error
                FROM mail_queue WHERE state IN ('failed', 'expired') ORDER BY created_at DESC LIMIT ?
                """, [.integer(Int64(limit))]) { row in
                DeadLetter(messageID: row.text(0), recipient: row.text(1), state: row.text(2), attempts: Int(row.int64(3)),
                           createdAt: row.int64(4), expiresAt: row.int64(5), finishedAt: row.optionalInt64(6),
                           lastError: row.optionalText(7))
            }
        }
    }

    public enum RetryOutcome: String, Sendable { case queued, notFound = "not_found", notDead = "not_a_dead_letter", linkExpired = "link_expired" }

    /// Puts a dead letter back in the queue, if its link can still be used.
    public func retryDeadLetter(messageID: String, now: Int64) throws -> RetryOutcome {
        try writeRaw { connection in
            guard let (state, expiresAt, hasToken) = try connection.queryFirst(
                "SELECT state, expires_at, sealed_token IS NOT NULL FROM mail_queue WHERE message_id = ?", [.text(messageID)],
                row: { ($0.text(0), $0.int64(1), $0.int64(2) != 0) })
            else { return .notFound }
            guard state == "failed" || state == "expired" else { return .notDead }
            guard hasToken, now < expiresAt else { return .linkExpired }
            try connection.run("UPDATE mail_queue SET state = 'queued', next_attempt_at = ?2, finished_at = NULL WHERE message_id = ?1",
                               [.text(messageID), .integer(now)])
            return .queued
        }
    }

    private func readRaw<T>(_ body: (Connection) throws -> T) throws -> T {
        let connection = try checkOutReader()
        defer { checkIn(connection) }
        do {
            return try body(connection)
        } catch {
            throw classify(error)
        }
    }

    // MARK: housekeeping

    /// Deletes rows nobody needs any more: dead sessions, tokens a day past expiry (kept that
    /// long so a late click still hears "expired" or "used"), old rate events, delivered mail
    /// after a week. Returns the number of rows removed.
    @discardableResult
    public func purge(now: Int64, rateWindow: Int64) throws -> Int {
        try writeRaw { connection in
            var removed = 0
            removed += try connection.run("DELETE FROM sessions WHERE expires_at <= ?1 OR idle_expires_at <= ?1", [.integer(now)])
            removed += try connection.run("DELETE FROM login_tokens WHERE expires_at <= ?1", [.integer(now - 86_400)])
            removed += try connection.run("DELETE FROM rate_counts WHERE at <= ?1", [.integer(now - rateWindow)])
            removed += try connection.run("DELETE FROM mail_queue WHERE state IN ('sent', 'expired') AND finished_at <= ?1", [.integer(now - 7 * 86_400)])
            // Dead letters stay for the admin, but a sealed token whose link expired is useless.
            try connection.run("UPDATE mail_queue SET sealed_token = NULL WHERE state = 'failed' AND sealed_token IS NOT NULL AND expires_at <= ?1", [.integer(now)])
            return removed
        }
    }

    /// A trivial read, to show the database still answers (for the systemd watchdog).
    public func ping() throws {
        _ = try read { tx in try tx.rateWindow(key: "", since: Int64.max, maximum: 1, now: 0) }
    }

    /// Returns once every queued write has committed (or failed); called on shutdown, after
    /// the connections are closed, so that no login is still waiting in a batch.
    public func waitForWrites() {
        commits.waitUntilIdle()
    }

    /// Checkpoints the WAL; called on clean shutdown so the database file stands alone.
    public func checkpoint() {
        writerLock.withLock { _ = try? writer.execute("PRAGMA wal_checkpoint(TRUNCATE)") }
    }

    private func writeRaw<T>(_ body: (Connection) throws -> T) throws -> T {
        do {
            return try commits.perform(body)
        } catch {
            throw classify(error)
        }
    }
}

/// The SQL behind `AuthTransaction`, on whichever connection the transaction holds.
struct Transaction: AuthTransaction {
    typealias SessionFill = (cache: SessionCache, generation: UInt64)
    let connection: Connection
    /// Set in read transactions: sessions they read are offered to the cache.
    let sessionFill: SessionFill?

    private static let tokenColumns = "hash, email, email_key, redirect, created_at, expires_at, used_at, superseded_at, ip, user_agent, flow_hash, code_hash, code_failures, peeks, app_id"

    private static func tokenRecord(_ row: Statement) -> LoginTokenRecord {
        LoginTokenRecord(hash: row.blob(0), email: row.text(1), emailKey: row.text(2), redirect: row.text(3),
                         createdAt: row.int64(4), expiresAt: row.int64(5), usedAt: row.optionalInt64(6),
                         supersededAt: row.optionalInt64(7), ip: row.optionalText(8), userAgent: row.optionalText(9),
                         flowHash: row.optionalBlob(10), codeHash: row.optionalBlob(11), codeFailures: Int(row.int64(12)),
                         peeks: Int(row.int64(13)), appID: row.text(14))
    }

    func token(hash: [UInt8]) throws -> LoginTokenRecord? {
        try connection.queryFirst("SELECT \(Self.tokenColumns) FROM login_tokens WHERE hash = ?", [.blob(hash)], row: Self.tokenRecord)
    }

    func token(flowHash: [UInt8]) throws -> LoginTokenRecord? {
        try connection.queryFirst("SELECT \(Self.tokenColumns) FROM login_tokens WHERE flow_hash = ?", [.blob(flowHash)], row: Self.tokenRecord)
    }

    func user(appID: String, emailKey: String) throws -> UserRecord? {
        try connection.queryFirst("SELECT id, email, email_key, created_at, app_id FROM users WHERE app_id = ? AND email_key = ?",
                                  [.text(appID), .text(emailKey)]) { row in
            UserRecord(id: row.text(0), email: row.text(1), emailKey: row.text(2), createdAt: row.int64(3), appID: row.text(4))
        }
    }

    func session(hash: [UInt8]) throws -> (SessionRecord, UserRecord)? {
        let found = try connection.queryFirst("""
            SELECT s.id_hash, s.user_id, s.created_at, s.expires_at, s.idle_expires_at, s.touched_at, s.ip, s.user_agent,
                   u.email, u.email_key, u.created_at, u.app_id
            FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?
            """, [.blob(hash)]) { row in
            (SessionRecord(hash: row.blob(0), userID: row.text(1), createdAt: row.int64(2), expiresAt: row.int64(3),
                           idleExpiresAt: row.int64(4), touchedAt: row.int64(5), ip: row.optionalText(6),
                           userAgent: row.optionalText(7)),
             UserRecord(id: row.text(1), email: row.text(8), emailKey: row.text(9), createdAt: row.int64(10), appID: row.text(11)))
        }
        if let found, let sessionFill {
            sessionFill.cache.fill(hash, CachedSession(found.0, found.1), generation: sessionFill.generation)
        }
        return found
    }

    /// Two lookups in the primary key, whatever the window holds: the key's newest second, then
    /// the second that holds its `maximum`-th newest event (numbered by `total`, see migration
    /// 0006). Seconds after `now` count as `now` (see `AuthReadTransaction`).
    func rateWindow(key: String, since: Int64, maximum: Int, now: Int64) throws -> RateWindow {
        guard let newest = try connection.queryFirst("SELECT at, total FROM rate_counts WHERE key = ?1 ORDER BY total DESC LIMIT 1",
                                                     [.text(key)], row: { (at: min($0.int64(0), now), total: $0.int64(1)) }),
              newest.at >= since else { return RateWindow(blocking: nil, newest: nil) }
        let wanted = newest.total - Int64(max(maximum, 1)) + 1
        guard wanted >= 1 else { return RateWindow(blocking: nil, newest: newest.at) }
        // The first second whose running total reaches `wanted` holds that event, unless the
        // event was purged (older than every window): then that second starts after it.
        let holder = try connection.queryFirst("SELECT at, total - n FROM rate_counts WHERE key = ?1 AND total >= ?2 ORDER BY total LIMIT 1",
                                               [.text(key), .integer(wanted)]) { (at: min($0.int64(0), now), before: $0.int64(1)) }
        guard let holder, holder.before < wanted, holder.at >= since else { return RateWindow(blocking: nil, newest: newest.at) }
        return RateWindow(blocking: holder.at, newest: newest.at)
    }

    func pendingMailCount() throws -> Int {
        // Kept by triggers (migration 0005): one row, whatever the backlog.
        Int(try connection.queryFirst("SELECT n FROM mail_queue_pending_count") { $0.int64(0) } ?? 0)
    }

    /// Counts one event in its second. Seconds dated after `at` (the clock stepped back) are
    /// folded into `at` with it: every event still counts, `at` keeps rising with `total`, and
    /// a clock that ran ahead for a while leaves nothing dated in the future behind.
    func recordRateEvent(key: String, at: Int64) throws {
        let newest = try connection.queryFirst("SELECT at, total FROM rate_counts WHERE key = ?1 ORDER BY total DESC LIMIT 1",
                                               [.text(key)]) { (at: $0.int64(0), total: $0.int64(1)) }
        if let newest, newest.at == at {
            try connection.run("UPDATE rate_counts SET n = n + 1, total = total + 1 WHERE key = ?1 AND total = ?2",
                               [.text(key), .integer(newest.total)])
            return
        }
        var folded: Int64 = 0
        if let newest, newest.at > at {
            folded = try connection.queryFirst("SELECT coalesce(sum(n), 0) FROM rate_counts WHERE key = ?1 AND at >= ?2",
                                               [.text(key), .integer(at)]) { $0.int64(0) } ?? 0
            try connection.run("DELETE FROM rate_counts WHERE key = ?1 AND at >= ?2", [.text(key), .integer(at)])
        }
        try connection.run("INSERT INTO rate_counts (key, total, at, n) VALUES (?1, ?2, ?3, ?4)",
                           [.text(key), .integer((newest?.total ?? 0) + 1), .integer(at), .integer(folded + 1)])
    }

    func supersedeTokens(appID: String, emailKey: String, at: Int64) throws {
        try connection.run("UPDATE login_tokens SET superseded_at = ? WHERE app_id = ? AND email_key = ? AND used_at IS NULL AND superseded_at IS NULL",
                           [.integer(at), .text(appID), .text(emailKey)])
    }

    func insertToken(_ token: LoginTokenRecord) throws {
        try connection.run("INSERT INTO login_tokens (\(Self.tokenColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            .blob(token.hash), .text(token.email), .text(token.emailKey), .text(token.redirect),
            .integer(token.createdAt), .integer(token.expiresAt), SQLValue(token.usedAt), SQLValue(token.supersededAt),
            SQLValue(token.ip), SQLValue(token.userAgent), SQLValue(token.flowHash),
            SQLValue(token.codeHash), .integer(Int64(token.codeFailures)), .integer(Int64(token.peeks)), .text(token.appID),
        ])
    }

    func recordCodeFailure(hash: [UInt8]) throws -> Int {
        let counts = try connection.query("UPDATE login_tokens SET code_failures = code_failures + 1 WHERE hash = ? RETURNING code_failures",
                                          [.blob(hash)]) { $0.int64(0) }
        return Int(counts.first ?? 0)
    }

    func recordPeek(hash: [UInt8]) throws {
        try connection.run("UPDATE login_tokens SET peeks = peeks + 1 WHERE hash = ?", [.blob(hash)])
    }

    func markTokenUsed(hash: [UInt8], at: Int64) throws -> Bool {
        try connection.run("UPDATE login_tokens SET used_at = ? WHERE hash = ? AND used_at IS NULL", [.integer(at), .blob(hash)]) == 1
    }

    func withdrawMail(messageID: String) throws {
        try connection.run("DELETE FROM mail_queue WHERE message_id = ? AND state = 'queued'", [.text(messageID)])
    }

    func enqueueMail(_ mail: QueuedMail) throws {
        try connection.run("""
            INSERT INTO mail_queue (message_id, kind, recipient, sealed_token, created_at, expires_at, next_attempt_at, locale, app_id)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, [.text(mail.messageID), .text(mail.kind.rawValue), .text(mail.recipient), .blob(mail.sealedToken),
                  .integer(mail.createdAt), .integer(mail.expiresAt), .integer(mail.createdAt), SQLValue(mail.locale), .text(mail.appID)])
    }

    func insertUser(_ user: UserRecord) throws {
        try connection.run("INSERT INTO users (id, email, email_key, created_at, app_id) VALUES (?, ?, ?, ?, ?)",
                           [.text(user.id), .text(user.email), .text(user.emailKey), .integer(user.createdAt), .text(user.appID)])
    }

    func insertSession(_ session: SessionRecord) throws {
        try connection.run("""
            INSERT INTO sessions (id_hash, user_id, created_at, expires_at, idle_expires_at, touched_at, ip, user_agent)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """, [.blob(session.hash), .text(session.userID), .integer(session.createdAt), .integer(session.expiresAt),
                  .integer(session.idleExpiresAt), .integer(session.touchedAt), SQLValue(session.ip), SQLValue(session.userAgent)])
    }

    func touchSession(hash: [UInt8], idleExpiresAt: Int64, touchedAt: Int64) throws {
        try connection.run("UPDATE sessions SET idle_expires_at = ?, touched_at = ? WHERE id_hash = ?",
                           [.integer(idleExpiresAt), .integer(touchedAt), .blob(hash)])
    }

    func deleteSession(appID: String, hash: [UInt8]) throws {
        try connection.run("DELETE FROM sessions WHERE id_hash = ? AND user_id IN (SELECT id FROM users WHERE app_id = ?)",
                           [.blob(hash), .text(appID)])
    }

    func deleteSessions(appID: String, userID: String, liveAt now: Int64) throws -> Int {
        let ended = try connection.query("""
            DELETE FROM sessions WHERE user_id = ? AND user_id IN (SELECT id FROM users WHERE app_id = ?)
            RETURNING expires_at, idle_expires_at
            """, [.text(userID), .text(appID)]) { ($0.int64(0), $0.int64(1)) }
        return ended.filter { now < $0.0 && now < $0.1 }.count
    }
}
