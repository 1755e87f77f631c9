/// The storage the authenticator needs. Every `write` runs its body in one transaction that is
/// committed durably when the body returns and rolled back when it throws; writes are
/// serialized, which is what makes a token's consumption atomic.
public protocol AuthStore: Sendable {
    func write<T>(_ body: (any AuthTransaction) throws -> T) throws -> T
    /// `write` for callers on an event loop or in a task: it holds no thread while the
    /// transaction waits for its commit, and runs `body` on one of the store's own.
    func write<T: Sendable>(suspending body: @escaping @Sendable (any AuthTransaction) throws -> T) async throws -> T
    func read<T>(_ body: (any AuthReadTransaction) throws -> T) throws -> T
    /// A session the store holds in memory and can vouch for: its row and user as of the last
    /// commit to the database, by anyone. Never blocks and never does I/O (it runs on event
    /// loops); nil when only the database can answer.
    /// `usable` decides whether the entry answers (live, no touch due); the store counts hits.
    func cachedSession(hash: SecretHash, usable: (CachedSession) -> Bool) -> CachedSession?
    /// The same for the cached `session` path, without making strings: `answer` gets the user's
    /// id and email as UTF-8 bytes that are valid only during the call. Both closures may run
    /// under a lock of the store: they must be quick and must not call the store. Returns
    /// whether `answer` ran.
    func withCachedSession(hash: SecretHash, usable: (CachedSessionTimes) -> Bool, answer: (CachedSessionBytes) -> Void) -> Bool
}

extension AuthStore {
    public func cachedSession(hash: SecretHash, usable: (CachedSession) -> Bool) -> CachedSession? { nil }

    /// Built on `cachedSession(hash:usable:)`, for stores that hold strings.
    public func withCachedSession(hash: SecretHash, usable: (CachedSessionTimes) -> Bool, answer: (CachedSessionBytes) -> Void) -> Bool {
        guard let session = cachedSession(hash: hash, usable: { session in
            usable(CachedSessionTimes(appID: session.appID, expiresAt: session.expiresAt, idleExpiresAt: session.idleExpiresAt,
                                      touchedAt: session.touchedAt))
        }) else { return false }
        var (id, email) = (session.userID, session.email)
        id.withUTF8 { id in
            email.withUTF8 { email in
                answer(CachedSessionBytes(userID: UnsafeRawBufferPointer(id), email: UnsafeRawBufferPointer(email),
                                          expiresAt: session.expiresAt, idleExpiresAt: session.idleExpiresAt))
            }
        }
        return true
    }
}

/// What decides whether a held session answers: its app and its times.
public struct CachedSessionTimes {
    public var appID: String
    public var expiresAt: Int64
    public var idleExpiresAt: Int64
    public var touchedAt: Int64

    public init(appID: String, expiresAt: Int64, idleExpiresAt: Int64, touchedAt: Int64) {
        self.appID = appID
        self.expiresAt = expiresAt
        self.idleExpiresAt = idleExpiresAt
        self.touchedAt = touchedAt
    }
}

/// A held session's answer as bytes borrowed from the store (valid only inside the closure
/// that receives them).
public struct CachedSessionBytes {
    public var userID: UnsafeRawBufferPointer
    public var email: UnsafeRawBufferPointer
    public var expiresAt: Int64
    public var idleExpiresAt: Int64

    public init(userID: UnsafeRawBufferPointer, email: UnsafeRawBufferPointer, expiresAt: Int64, idleExpiresAt: Int64) {
        self.userID = userID
        self.email = email
        self.expiresAt = expiresAt
        self.idleExpiresAt = idleExpiresAt
    }
}

/// What `session` needs of a session row and its user, held in memory.
public struct CachedSession: Sendable, Equatable {
    public var userID: String
    public var email: String
    public var appID: String
    public var expiresAt: Int64
    public var idleExpiresAt: Int64
    public var touchedAt: Int64

    public init(userID: String, email: String, appID: String, expiresAt: Int64, idleExpiresAt: Int64, touchedAt: Int64) {
        self.userID = userID
        self.email = email
        self.appID = appID
        self.expiresAt = expiresAt
        self.idleExpiresAt = idleExpiresAt
        self.touchedAt = touchedAt
    }

    public init(_ record: SessionRecord, _ user: UserRecord) {
        self.init(userID: user.id, email: user.email, appID: user.appID, expiresAt: record.expiresAt,
                  idleExpiresAt: record.idleExpiresAt, touchedAt: record.touchedAt)
    }
}

/// What one rate limit needs of its window.
public struct RateWindow: Sendable, Equatable {
    /// The `maximum`-th newest event: while it is in the window the limit is reached, and one
    /// more fits when it leaves. Nil while the window holds fewer than `maximum` events.
    public var blocking: Int64?
    /// The newest event (for the per-address cooldown).
    public var newest: Int64?

    public init(blocking: Int64?, newest: Int64?) {
        self.blocking = blocking
        self.newest = newest
    }

    /// The window of a list of event times (in any order).
    public init(times: [Int64], maximum: Int) {
        let descending = times.sorted(by: >)
        let position = max(maximum, 1) - 1
        self.init(blocking: position < descending.count ? descending[position] : nil, newest: descending.first)
    }
}

public protocol AuthReadTransaction {
    func token(hash: [UInt8]) throws -> LoginTokenRecord?
    func token(flowHash: [UInt8]) throws -> LoginTokenRecord?
    func user(appID: String, emailKey: String) throws -> UserRecord?
    func session(hash: [UInt8]) throws -> (SessionRecord, UserRecord)?
    /// The events under `key` at or after `since` that a limit of `maximum` needs to know of,
    /// found without reading the whole window (it may hold thousands of events). Events dated
    /// after `now` (the clock stepped back since) count as `now`: a clock that ran ahead for a
    /// while must not hold a limit shut for longer than its window.
    func rateWindow(key: String, since: Int64, maximum: Int, now: Int64) throws -> RateWindow
    /// Messages queued or being sent.
    func pendingMailCount() throws -> Int
}

public protocol AuthTransaction: AuthReadTransaction {
    func recordRateEvent(key: String, at: Int64) throws
    /// Marks every unused, unsuperseded token of the address in the app as superseded.
    func supersedeTokens(appID: String, emailKey: String, at: Int64) throws
    func insertToken(_ token: LoginTokenRecord) throws
    /// Returns false when the token was already used (or does not exist).
    func markTokenUsed(hash: [UInt8], at: Int64) throws -> Bool
    /// Counts one more wrong code for the token; returns the new count.
    func recordCodeFailure(hash: [UInt8]) throws -> Int
    /// Counts one more `peek` of the token.
    func recordPeek(hash: [UInt8]) throws
    func enqueueMail(_ mail: QueuedMail) throws
    /// Removes a message queued in the same transaction (a refused signup's stand-in).
    func withdrawMail(messageID: String) throws
    func insertUser(_ user: UserRecord) throws
    func insertSession(_ session: SessionRecord) throws
    func touchSession(hash: [UInt8], idleExpiresAt: Int64, touchedAt: Int64) throws
    func deleteSession(appID: String, hash: [UInt8]) throws
    /// Deletes all sessions of the app's user; returns those of them that were live at `now`.
    func deleteSessions(appID: String, userID: String, liveAt now: Int64) throws -> Int
}

/// Marks store failures that may go away by themselves (database busy or locked, disk full):
/// the wire reports them as `unavailable`, retryable.
public protocol TransientFailure: Error {}
