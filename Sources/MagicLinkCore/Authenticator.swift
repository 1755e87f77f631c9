/// A sliding-window limit: at most `maximum` events per `window` seconds.
public struct RateLimit: Sendable, Equatable {
    public var maximum: Int
    public var window: Int64
    public init(maximum: Int, window: Int64) {
        self.maximum = maximum
        self.window = window
    }
}

/// What the login mail carries.
public enum SendMode: String, Sendable, CaseIterable {
    case link, code, both
    public var sendsLink: Bool { self != .code }
    public var sendsCode: Bool { self != .link }
}

/// What `callback` does with a link opened without its flow (another browser or device).
public enum FlowBinding: String, Sendable, CaseIterable {
    /// Refuse with `confirmation_required`; the same callback with `confirm` completes it.
    case confirm
    /// Refuse, confirmed or not: a link only works where it was asked for.
    case strict
}

/// Who may get a login mail.
public enum SignupPolicy: Sendable, Equatable {
    /// Any address; its user is created at its first login.
    case open
    /// Only addresses at these domains (lower-case, IDNA ASCII form, exact match).
    case domains([String])
    /// Only users that already exist (created with the `admin_create_user` op).
    case existing

    func allows(_ email: EmailAddress, isExistingUser: Bool) -> Bool {
        switch self {
        case .open: return true
        case .domains(let domains): return domains.contains(email.domain)
        case .existing: return isExistingUser
        }
    }
}

/// The policies the authenticator enforces. Defaults are the documented ones.
public struct AuthPolicy: Sendable {
    /// Wrong codes a flow survives; the next wrong one kills its code.
    public static let codeAttempts = 3
    /// The app of a single-app configuration (and of everything stored before apps existed).
    public static let defaultAppID = "default"
    /// Which app this policy is for: users, tokens, sessions and limits are its own.
    public var appID = AuthPolicy.defaultAppID
    public var flowBinding = FlowBinding.confirm
    public var signup = SignupPolicy.open
    public var callbackURL: String
    public var redirects: RedirectPolicy
    public var tokenTTL: Int64 = 600
    public var sessionTTL: Int64 = 30 * 86_400
    public var sessionIdleTTL: Int64 = 7 * 86_400
    /// Minimum seconds between two writes of a session's idle expiry.
    public var sessionTouchInterval: Int64 = 60
    public var startPerIP = RateLimit(maximum: 50, window: 3_600)
    /// The hourly cap per address.
    public var startPerAddress = RateLimit(maximum: 5, window: 3_600)
    /// Least seconds between two `start`s for one address (0: none).
    public var addressCooldown: Int64 = 60
    /// Login mails the whole daemon may queue per window, whoever asks.
    public var globalSendBudget = RateLimit(maximum: 5_000, window: 3_600)
    /// Failed `callback`/`verify_code`/`session` calls per client IP before that IP is slowed down.
    public var failuresPerIP = RateLimit(maximum: 30, window: 900)
    /// Right-hand side of generated Message-IDs.
    public var messageIDDomain: String = "localhost"
    /// Most messages waiting to be sent; `start` refuses (retryably) beyond it.
    public var mailQueueLimit = 10_000

    public init(callbackURL: String, redirects: RedirectPolicy) {
        self.callbackURL = callbackURL
        self.redirects = redirects
    }

    /// The link mailed for `token`: built from configuration only, never from request data.
    public func link(for token: String) -> String {
        callbackURL + (callbackURL.contains("?") ? "&" : "?") + "token=" + token
    }
}

public struct StartRequest: Sendable {
    public var email: String
    public var redirect: String?
    public var ip: String?
    public var userAgent: String?
    /// Normalized BCP 47 tag for the mail's language (validated by the caller).
    public var locale: String?
    public var send: SendMode
    public init(email: String, redirect: String? = nil, ip: String? = nil, userAgent: String? = nil, locale: String? = nil,
                send: SendMode = .link) {
        self.send = send
        self.email = email
        self.redirect = redirect
        self.ip = ip
        self.userAgent = userAgent
        self.locale = locale
    }
}

public struct StartResult: Sendable, Equatable {
    public var expiresAt: Int64
    /// The flow secret for the browser that asked (a cookie); only its hash is stored.
    public var flow: String
    /// For logs only (masked address, message id): never the token.
    public var maskedEmail: String
    public var messageID: String
    /// False when the signup policy refused the address (the reply does not say so).
    public var mailed: Bool
}

public struct UserInfo: Sendable, Equatable {
    public var id: String
    public var email: String
}

public struct LoginResult: Sendable {
    public var session: String
    public var expiresAt: Int64
    public var idleExpiresAt: Int64
    public var user: UserInfo
    public var redirect: String
    public var createdUser: Bool
}

/// What `peek` tells about a link without consuming it.
public struct PeekResult: Sendable, Equatable {
    public var valid: Bool
    /// Why not valid.
    public var reason: AuthError.TokenRejection?
    public var flowMatches: Bool
    /// Only for links that exist.
    public var emailMasked: String?
    public var expiresAt: Int64?
}

public struct SessionInfo: Sendable, Equatable {
    public var user: UserInfo
    public var expiresAt: Int64
    public var idleExpiresAt: Int64
}

/// The login state machine: start → callback → session → logout. No I/O of its own: storage,
/// clock and randomness are injected. The synchronous methods block on the store, so callers
/// run them off any event loop; the `async` ones (start, callback, verifyCode) suspend instead
/// and may run on one.
public final class Authenticator: Sendable {
    public static let maxUserAgentBytes = 1024
    public static let maxRedirectBytes = 2048

    public let policy: AuthPolicy
    private let store: any AuthStore
    private let sealer: TokenSealer
    private let time: any TimeSource
    private let random: any RandomSource
    private let failures: FailureThrottle

    public init(policy: AuthPolicy, store: any AuthStore, sealer: TokenSealer,
                time: any TimeSource = SystemTime(), random: any RandomSource = SystemRandom()) {
        self.policy = policy
        self.store = store
        self.sealer = sealer
        self.time = time
        self.random = random
        self.failures = FailureThrottle(limit: policy.failuresPerIP, time: time)
    }

    /// Runs a login or session check for a client IP: refused while the IP is throttled, and
    /// its failures (wrong, used or expired tokens and codes, dead sessions) count.
    private func throttled<T>(ip: String?, _ body: () throws -> T) throws -> T {
        guard let ip else { return try body() }
        let key = try Self.rateKey(forIP: ip)
        if let retry = failures.retryAfter(key) { throw AuthError.rateLimited(retryAfterSeconds: retry) }
        do {
            return try body()
        } catch let error as AuthError {
            switch error {
            case .invalidToken, .invalidCode, .invalidSession: failures.recordFailure(key)
            default: break
            }
            throw error
        }
    }

    /// `throttled` for suspending work.
    private func throttled<T>(ip: String?, _ body: () async throws -> T) async throws -> T {
        guard let ip else { return try await body() }
        let key = try Self.rateKey(forIP: ip)
        if let retry = failures.retryAfter(key) { throw AuthError.rateLimited(retryAfterSeconds: retry) }
        do {
            return try await body()
        } catch let error as AuthError {
            switch error {
            case .invalidToken, .invalidCode, .invalidSession: failures.recordFailure(key)
            default: break
            }
            throw error
        }
    }

    /// An operation's transaction, with what it makes of the committed outcome: prepared once,
    /// run by the blocking or the suspending entry point alike.
    struct PreparedWrite<Committed: Sendable, Result> {
        let transaction: @Sendable (any AuthTransaction) throws -> Committed
        let finish: (Committed) throws -> Result
    }

    private func commit<Committed, Result>(_ prepared: PreparedWrite<Committed, Result>) throws -> Result {
        try prepared.finish(try store.write(prepared.transaction))
    }

    private func commit<Committed, Result>(_ prepared: PreparedWrite<Committed, Result>) async throws -> Result {
        try prepared.finish(try await store.write(suspending: prepared.transaction))
    }

    // MARK: start

    /// Creates a login token and queues its mail in one transaction. The answer does not depend
    /// on whether the address is known.
    public func start(_ request: StartRequest) throws -> StartResult {
        try commit(prepareStart(request))
    }

    /// `start` for callers that must not block (an event loop): the same work, suspending.
    public func start(_ request: StartRequest) async throws -> StartResult {
        try await commit(prepareStart(request))
    }

    /// Everything `start` does before and after its transaction, and the transaction itself.
    private func prepareStart(_ request: StartRequest) throws -> PreparedWrite<Bool, StartResult> {
        let email: EmailAddress
        do {
            email = try EmailAddress(parsing: request.email)
        } catch {
            throw AuthError.invalidEmail(reason: error.reason)
        }
        let redirect = request.redirect ?? "/"
        guard redirect.utf8.count <= Self.maxRedirectBytes else {
            throw AuthError.redirectNotAllowed(reason: "longer than \(Self.maxRedirectBytes) bytes")
        }
        do {
            _ = try policy.redirects.check(redirect)
        } catch {
            throw AuthError.redirectNotAllowed(reason: error.reason)
        }
        let ipKey = try request.ip.map(Self.rateKey(forIP:))

        let now = time.now()
        let token = Secret.generate(using: random)
        let flow = Secret.generate(using: random)
        let code = request.send.sendsCode ? Self.generateCode(using: random) : nil
        let messageID = Self.messageIDLocalPart(atMicroseconds: max(now * 1_000_000, time.nowMicroseconds()), random: random.bytes(8))
            + "@" + policy.messageIDDomain
        // Stand-ins for a refused signup: hashes of nothing anyone holds.
        let decoyHashes = (token: Secret.generate(using: random).hash, code: Secret.generate(using: random).hash)
        let sealed = try sealer.seal(MailSecrets(token: token.text, code: code, send: request.send).payload, messageID: messageID)
        let expiresAt = now + policy.tokenTTL

        let app = policy.appID + "|"
        let addressKey = app + "email:" + email.matchKey
        var limits: [(key: String, limit: RateLimit)] = [(addressKey, policy.startPerAddress), (app + "global", policy.globalSendBudget)]
        if let ipKey { limits.append((app + "ip:" + ipKey, policy.startPerIP)) }

        let policy = policy
        return PreparedWrite(transaction: { [limits] tx in
            var retryAfter: Int64 = 0
            for (key, limit) in limits {
                let window = try tx.rateWindow(key: key, since: now - limit.window + 1, maximum: limit.maximum, now: now)
                if let blocking = window.blocking {
                    // The event that must leave the window before one more fits.
                    retryAfter = max(retryAfter, blocking + limit.window - now)
                }
                if key == addressKey, policy.addressCooldown > 0, let last = window.newest, now - last < policy.addressCooldown {
                    retryAfter = max(retryAfter, last + policy.addressCooldown - now)
                }
            }
            if retryAfter > 0 { throw AuthError.rateLimited(retryAfterSeconds: max(1, retryAfter)) }
            if try tx.pendingMailCount() >= policy.mailQueueLimit { throw AuthError.mailQueueFull }

            let isExistingUser = try tx.user(appID: policy.appID, emailKey: email.matchKey) != nil
            // A refused address (signup policy) takes the same path with the same statements,
            // so neither the reply, the limits, older flows (superseded either way) nor the work
            // done tell it apart; only its token hash and code hash match nothing, and its mail
            // is withdrawn before the commit.
            let allowed = policy.signup.allows(email, isExistingUser: isExistingUser)
            try tx.supersedeTokens(appID: policy.appID, emailKey: email.matchKey, at: now)
            try tx.insertToken(LoginTokenRecord(
                hash: allowed ? token.hash : decoyHashes.token, email: email.address, emailKey: email.matchKey,
                redirect: redirect, createdAt: now, expiresAt: expiresAt, ip: request.ip,
                userAgent: request.userAgent.map(Self.clipUserAgent), flowHash: flow.hash,
                codeHash: code.map { allowed ? Self.codeHash(flow: flow.text, code: $0) : decoyHashes.code }, appID: policy.appID))
            try tx.enqueueMail(QueuedMail(
                messageID: messageID, kind: .login, recipient: email.address, sealedToken: sealed,
                createdAt: now, expiresAt: expiresAt, locale: request.locale, appID: policy.appID))
            if !allowed { try tx.withdrawMail(messageID: messageID) }
            for (key, _) in limits { try tx.recordRateEvent(key: key, at: now) }
            return allowed
        }, finish: { mailed in
            StartResult(expiresAt: expiresAt, flow: flow.text, maskedEmail: email.masked, messageID: messageID, mailed: mailed)
        })
    }

    /// 32 hex digits: the microsecond, then 64 random bits. Ids that grow with time land at the
    /// end of the queue's message_id index instead of on a random page of it: with whole
    /// seconds, a second's thousands of ids still spread over dozens of pages, one page write
    /// each. (A Message-ID is not a secret; its Date header tells the same time.)
    static func messageIDLocalPart(atMicroseconds now: Int64, random: [UInt8]) -> String {
        let micros = UInt64(clamping: max(0, now))
        return hex((0..<8).map { UInt8(truncatingIfNeeded: micros >> (56 - 8 * $0)) }) + hex(random)
    }

    // MARK: callback

    /// Consumes the token and opens a session in one transaction: of concurrent callers with the
    /// same token exactly one gets a session. A link opened without the flow of the browser that
    /// asked for it never logs in silently (see `FlowBinding`); refusing leaves the token as it was.
    public func callback(token: String, flow: String? = nil, confirm: Bool = false,
                         ip: String? = nil, userAgent: String? = nil) throws -> LoginResult {
        try throttled(ip: ip) { try commit(prepareCallback(token: token, flow: flow, confirm: confirm, ip: ip, userAgent: userAgent)) }
    }

    /// `callback` for callers that must not block (an event loop): the same work, suspending.
    public func callback(token: String, flow: String? = nil, confirm: Bool = false,
                         ip: String? = nil, userAgent: String? = nil) async throws -> LoginResult {
        try await throttled(ip: ip) { try await commit(prepareCallback(token: token, flow: flow, confirm: confirm, ip: ip, userAgent: userAgent)) }
    }

    private func prepareCallback(token: String, flow: String?, confirm: Bool, ip: String?, userAgent: String?) throws -> PreparedWrite<LoginResult, LoginResult> {
        guard Secret.isWellFormed(token) else { throw AuthError.invalidToken(.unknown) }
        let tokenHash = Secret.hash(of: token)
        let flowHash = flow.flatMap { Secret.isWellFormed($0) ? Secret.hash(of: $0) : nil }
        let now = time.now()
        let session = Secret.generate(using: random)
        let newUserID = Self.uuid(random.bytes(16))

        let policy = policy
        return PreparedWrite(transaction: { tx in
            guard let record = try tx.token(hash: tokenHash), record.appID == policy.appID else { throw AuthError.invalidToken(.unknown) }
            if let rejection = Self.rejection(of: record, at: now) { throw AuthError.invalidToken(rejection) }
            // A token from before flows existed has no flow: no browser can match it.
            if record.flowHash == nil || flowHash != record.flowHash {
                if policy.flowBinding == .strict { throw AuthError.flowMismatch }
                if !confirm {
                    throw AuthError.confirmationRequired(emailMasked: Self.masked(record.email), requestedAt: record.createdAt)
                }
            }
            return try self.openSession(tx, for: record, now: now, session: session, newUserID: newUserID, ip: ip, userAgent: userAgent)
        }, finish: { $0 })
    }

    // MARK: code

    /// Logs in with the code mailed for `flow`. A code only counts with its own flow; the
    /// flow's code dies after `AuthPolicy.codeAttempts` wrong ones (its link stays valid).
    public func verifyCode(flow: String, code: String, ip: String? = nil, userAgent: String? = nil) throws -> LoginResult {
        if let ip { _ = try Self.rateKey(forIP: ip) }
        guard Self.normalizedCode(code) != nil else {
            throw AuthError.invalidField(field: "params.code", reason: "must be the 6 digits from the mail")
        }
        return try throttled(ip: ip) { try commit(prepareVerifyCode(flow: flow, code: code, ip: ip, userAgent: userAgent)) }
    }

    /// `verifyCode` for callers that must not block (an event loop): the same work, suspending.
    public func verifyCode(flow: String, code: String, ip: String? = nil, userAgent: String? = nil) async throws -> LoginResult {
        if let ip { _ = try Self.rateKey(forIP: ip) }
        guard Self.normalizedCode(code) != nil else {
            throw AuthError.invalidField(field: "params.code", reason: "must be the 6 digits from the mail")
        }
        return try await throttled(ip: ip) { try await commit(prepareVerifyCode(flow: flow, code: code, ip: ip, userAgent: userAgent)) }
    }

    /// What a code check's transaction decided; a wrong code is counted in a committed
    /// transaction, so its error is thrown after it.
    enum CodeOutcome: Sendable { case login(LoginResult), wrong(attemptsLeft: Int) }

    private func prepareVerifyCode(flow: String, code: String, ip: String?, userAgent: String?) throws -> PreparedWrite<CodeOutcome, LoginResult> {
        guard let digits = Self.normalizedCode(code) else {
            throw AuthError.invalidField(field: "params.code", reason: "must be the 6 digits from the mail")
        }
        guard Secret.isWellFormed(flow) else { throw AuthError.invalidToken(.unknown) }
        let flowHash = Secret.hash(of: flow)
        let offered = Self.codeHash(flow: flow, code: digits)
        let now = time.now()
        let session = Secret.generate(using: random)
        let newUserID = Self.uuid(random.bytes(16))

        let policy = policy
        return PreparedWrite(transaction: { tx -> CodeOutcome in
            guard let record = try tx.token(flowHash: flowHash), record.appID == policy.appID else { throw AuthError.invalidToken(.unknown) }
            if let rejection = Self.rejection(of: record, at: now) { throw AuthError.invalidToken(rejection) }
            guard let expected = record.codeHash, record.codeFailures < AuthPolicy.codeAttempts else {
                return .wrong(attemptsLeft: 0)
            }
            guard constantTimeEqual(expected, offered) else {
                let failures = try tx.recordCodeFailure(hash: record.hash)
                return .wrong(attemptsLeft: max(0, AuthPolicy.codeAttempts - failures))
            }
            return .login(try self.openSession(tx, for: record, now: now, session: session, newUserID: newUserID, ip: ip, userAgent: userAgent))
        }, finish: { outcome in
            switch outcome {
            case .login(let result): return result
            case .wrong(let left): throw AuthError.invalidCode(attemptsLeft: left)
            }
        })
    }

    // MARK: peek

    /// Looks at a link without consuming it, for the app's GET page (mail scanners open links
    /// before people do). Every look at an existing link is counted for the admin.
    public func peek(token: String, flow: String? = nil) throws -> PeekResult {
        let unknown = PeekResult(valid: false, reason: .unknown, flowMatches: false, emailMasked: nil, expiresAt: nil)
        guard Secret.isWellFormed(token) else { return unknown }
        let tokenHash = Secret.hash(of: token)
        let flowHash = flow.flatMap { Secret.isWellFormed($0) ? Secret.hash(of: $0) : nil }
        let now = time.now()
        // Unknown tokens (guesses, junk) only cost a read; a look at a real link is counted.
        guard try store.read({ try $0.token(hash: tokenHash) }).map({ $0.appID == policy.appID }) == true else { return unknown }
        return try store.write { tx in
            guard let record = try tx.token(hash: tokenHash), record.appID == policy.appID else { return unknown }
            try tx.recordPeek(hash: tokenHash)
            let rejection = Self.rejection(of: record, at: now)
            return PeekResult(valid: rejection == nil, reason: rejection,
                              flowMatches: record.flowHash != nil && record.flowHash == flowHash,
                              emailMasked: Self.masked(record.email), expiresAt: record.expiresAt)
        }
    }

    /// The user (created on first login) and a new session for a token that checked out.
    private func openSession(_ tx: any AuthTransaction, for record: LoginTokenRecord, now: Int64, session: Secret,
                             newUserID: String, ip: String?, userAgent: String?) throws -> LoginResult {
        guard try tx.markTokenUsed(hash: record.hash, at: now) else { throw AuthError.invalidToken(.used) }
        var createdUser = false
        let user: UserRecord
        if let existing = try tx.user(appID: policy.appID, emailKey: record.emailKey) {
            user = existing
        } else {
            user = UserRecord(id: newUserID, email: record.email, emailKey: record.emailKey, createdAt: now, appID: policy.appID)
            try tx.insertUser(user)
            createdUser = true
        }
        let expiresAt = now + policy.sessionTTL
        let idleExpiresAt = min(now + policy.sessionIdleTTL, expiresAt)
        try tx.insertSession(SessionRecord(
            hash: session.hash, userID: user.id, createdAt: now, expiresAt: expiresAt,
            idleExpiresAt: idleExpiresAt, touchedAt: now, ip: ip,
            userAgent: userAgent.map(Self.clipUserAgent)))
        return LoginResult(session: session.text, expiresAt: expiresAt, idleExpiresAt: idleExpiresAt,
                           user: UserInfo(id: user.id, email: user.email), redirect: record.redirect,
                           createdUser: createdUser)
    }

    static func rejection(of record: LoginTokenRecord, at now: Int64) -> AuthError.TokenRejection? {
        if record.usedAt != nil { return .used }
        if record.supersededAt != nil || now >= record.expiresAt { return .expired }
        return nil
    }

    // MARK: session

    /// Checks a session and slides its idle expiry, writing at most once per touch interval.
    /// With the client's `ip`, failures count towards that IP's throttle.
    /// A valid session is always answered, even from a throttled IP (one client behind a shared
    /// NAT must not sign out everyone else there); failures count, and once the IP is throttled
    /// its failed checks get `rate_limited` instead of `invalid_session`.
    public func session(_ text: String, ip: String? = nil) throws -> SessionInfo {
        guard let ip else { return try sessionUnthrottled(text) }
        let key = try Self.rateKey(forIP: ip)
        do {
            return try sessionUnthrottled(text)
        } catch AuthError.invalidSession {
            if let retry = failures.retryAfter(key) { throw AuthError.rateLimited(retryAfterSeconds: retry) }
            failures.recordFailure(key)
            throw AuthError.invalidSession
        }
    }

    /// `session` answered from the store's memory, without I/O, so it may run on an event loop.
    /// Nil when only `session(_:ip:)` can answer: a session the store does not hold or cannot
    /// vouch for, one that is not live, or one due for its idle-expiry touch (a write).
    /// Failures never come from here, so the failure throttle sees every one of them.
    public func cachedSession(_ text: String, ip: String? = nil) -> SessionInfo? {
        var text = text
        guard var ip else { return text.withUTF8 { cachedSession(bytes: UnsafeRawBufferPointer($0), ip: nil) } }
        return text.withUTF8 { text in ip.withUTF8 { ip in cachedSession(bytes: UnsafeRawBufferPointer(text), ip: UnsafeRawBufferPointer(ip)) } }
    }

    /// The same for the UTF-8 bytes of `session` and `ip`.
    public func cachedSession(bytes text: UnsafeRawBufferPointer, ip: UnsafeRawBufferPointer?) -> SessionInfo? {
        var info: SessionInfo?
        _ = withCachedSession(bytes: text, ip: ip) { held in
            info = SessionInfo(user: UserInfo(id: String(decoding: held.userID, as: UTF8.self), email: String(decoding: held.email, as: UTF8.self)),
                               expiresAt: held.expiresAt, idleExpiresAt: held.idleExpiresAt)
        }
        return info
    }

    /// The cached answer without strings, from the UTF-8 bytes of `session` and `ip` (the
    /// request line's own): `answer` gets the user's id and email as bytes valid only during
    /// the call, and runs under the store's lock (so: quick, and no calls to the store). False
    /// when only `session(_:ip:)` can answer, as for `cachedSession`.
    public func withCachedSession(bytes text: UnsafeRawBufferPointer, ip: UnsafeRawBufferPointer?,
                                  answer: (CachedSessionBytes) -> Void) -> Bool {
        // A malformed `ip` is refused by `session(_:ip:)`, whatever the session.
        guard Secret.isWellFormed(text), ip.map(IPAddress.isAddress) ?? true else { return false }
        let now = time.now()
        let (appID, touchInterval) = (policy.appID, policy.sessionTouchInterval)
        return store.withCachedSession(hash: SecretHash(ofText: text), usable: { held in
            held.appID == appID && now < held.expiresAt && now < held.idleExpiresAt && now - held.touchedAt < touchInterval
        }, answer: answer)
    }

    private func sessionUnthrottled(_ text: String) throws -> SessionInfo {
        guard Secret.isWellFormed(text) else { throw AuthError.invalidSession }
        let hash = Secret.hash(of: text)
        let now = time.now()
        guard let (record, user) = try store.read({ try $0.session(hash: hash) }), user.appID == policy.appID, record.isLive(at: now) else {
            throw AuthError.invalidSession
        }
        var idleExpiresAt = record.idleExpiresAt
        if now - record.touchedAt >= policy.sessionTouchInterval {
            idleExpiresAt = min(now + policy.sessionIdleTTL, record.expiresAt)
            try store.write { try $0.touchSession(hash: hash, idleExpiresAt: idleExpiresAt, touchedAt: now) }
        }
        return SessionInfo(user: UserInfo(id: user.id, email: user.email), expiresAt: record.expiresAt,
                           idleExpiresAt: idleExpiresAt)
    }

    // MARK: users

    /// Creates the user of an address ahead of its first login (for the `existing` signup
    /// policy). Returns the user and whether it is new.
    public func createUser(email text: String) throws -> (UserInfo, created: Bool) {
        let email: EmailAddress
        do {
            email = try EmailAddress(parsing: text)
        } catch {
            throw AuthError.invalidEmail(reason: error.reason)
        }
        let now = time.now()
        let newID = Self.uuid(random.bytes(16))
        return try store.write { tx in
            if let existing = try tx.user(appID: policy.appID, emailKey: email.matchKey) {
                return (UserInfo(id: existing.id, email: existing.email), false)
            }
            try tx.insertUser(UserRecord(id: newID, email: email.address, emailKey: email.matchKey, createdAt: now, appID: policy.appID))
            return (UserInfo(id: newID, email: email.address), true)
        }
    }

    // MARK: logout

    /// Ends one session. Idempotent: unknown sessions are fine.
    public func logout(_ text: String) throws {
        guard Secret.isWellFormed(text) else { return }
        let hash = Secret.hash(of: text)
        try store.write { try $0.deleteSession(appID: policy.appID, hash: hash) }
    }

    /// Ends every session of a user; returns how many were live.
    public func logoutAll(userID: String) throws -> Int {
        let now = time.now()
        return try store.write { try $0.deleteSessions(appID: policy.appID, userID: userID, liveAt: now) }
    }

    // MARK: helpers

    /// Six decimal digits, uniform: a 32-bit draw below the largest multiple of 10^6 that fits.
    static func generateCode(using random: some RandomSource) -> String {
        while true {
            let bytes = random.bytes(4)
            let value = bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            guard value < 4_294_000_000 else { continue }
            let digits = String(value % 1_000_000)
            return String(repeating: "0", count: 6 - digits.count) + digits
        }
    }

    /// The code as people type it: spaces and hyphens between the digits are fine.
    static func normalizedCode(_ text: String) -> String? {
        let kept = text.unicodeScalars.filter { $0 != " " && $0 != "-" }
        guard kept.count == 6, kept.allSatisfy({ ("0"..."9").contains($0) }) else { return nil }
        return String(String.UnicodeScalarView(kept))
    }

    static func codeHash(flow: String, code: String) -> [UInt8] {
        Secret.hash(of: flow + ":" + code)
    }

    static func masked(_ address: String) -> String {
        (try? EmailAddress(parsing: address).masked) ?? "***"
    }

    static func rateKey(forIP ip: String) throws -> String {
        guard let key = IPAddress.rateLimitKey(ip) else {
            throw AuthError.invalidField(field: "params.ip", reason: "not an IPv4 or IPv6 address")
        }
        return key
    }

    static func clipUserAgent(_ value: String) -> String {
        guard value.utf8.count > maxUserAgentBytes else { return value }
        var out = ""
        var used = 0
        for character in value {
            let size = character.utf8.count
            if used + size > maxUserAgentBytes { break }
            out.append(character)
            used += size
        }
        return out
    }

    /// An RFC 4122 version 4 UUID from 16 random bytes.
    static func uuid(_ raw: [UInt8]) -> String {
        var bytes = raw
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        // 8-4-4-4-12 hex digits, written as bytes (this runs for every login).
        let digits: StaticString = "0123456789abcdef"
        var text: [UInt8] = []
        text.reserveCapacity(36)
        digits.withUTF8Buffer { digits in
            for (index, byte) in bytes.prefix(16).enumerated() {
                if index == 4 || index == 6 || index == 8 || index == 10 { text.append(UInt8(ascii: "-")) }
                text.append(digits[Int(byte >> 4)])
                text.append(digits[Int(byte & 0x0F)])
            }
        }
        return String(decoding: text, as: UTF8.self)
    }
}

/// Equality whose time does not depend on where the first difference is.
func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for index in a.indices { difference |= a[index] ^ b[index] }
    return difference == 0
}
