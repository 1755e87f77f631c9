/// What the store keeps about a login token. `hash` is SHA-256 of the token text.
public struct LoginTokenRecord: Sendable, Equatable {
    public var hash: [UInt8]
    /// The app whose `start` made it; it works only there.
    public var appID: String
    public var email: String
    public var emailKey: String
    public var redirect: String
    public var createdAt: Int64
    public var expiresAt: Int64
    public var usedAt: Int64?
    public var supersededAt: Int64?
    public var ip: String?
    public var userAgent: String?
    /// SHA-256 of the flow secret handed to the browser that asked (nil for tokens from before flows).
    public var flowHash: [UInt8]?
    /// SHA-256 over the flow secret and the code (nil when no code was sent): without the flow
    /// text, which only the browser has, the hash cannot be brute-forced from the database.
    public var codeHash: [UInt8]?
    /// Wrong codes tried for this flow.
    public var codeFailures: Int
    /// Times the link was looked at with `peek` (scanners, previews, the app's own GET page).
    public var peeks: Int

    public init(hash: [UInt8], email: String, emailKey: String, redirect: String, createdAt: Int64,
                expiresAt: Int64, usedAt: Int64? = nil, supersededAt: Int64? = nil,
                ip: String? = nil, userAgent: String? = nil, flowHash: [UInt8]? = nil, codeHash: [UInt8]? = nil,
                codeFailures: Int = 0, peeks: Int = 0, appID: String = AuthPolicy.defaultAppID) {
        self.appID = appID
        self.flowHash = flowHash
        self.codeHash = codeHash
        self.codeFailures = codeFailures
        self.peeks = peeks
        self.hash = hash
        self.email = email
        self.emailKey = emailKey
        self.redirect = redirect
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.usedAt = usedAt
        self.supersededAt = supersededAt
        self.ip = ip
        self.userAgent = userAgent
    }
}

/// A message waiting in the durable queue. The token is sealed (see `TokenSealer`), never plain.
public struct QueuedMail: Sendable, Equatable {
    public enum Kind: String, Sendable { case login }

    public var messageID: String
    public var kind: Kind
    /// Whose templates, sender and callback URL the message uses.
    public var appID: String
    public var recipient: String
    public var sealedToken: [UInt8]
    public var createdAt: Int64
    /// After this the link inside is dead, so the message is not worth sending.
    public var expiresAt: Int64
    public var attempts: Int
    /// Normalized BCP 47 tag the message is written in; nil for the default language.
    public var locale: String?

    public init(messageID: String, kind: Kind, recipient: String, sealedToken: [UInt8],
                createdAt: Int64, expiresAt: Int64, attempts: Int = 0, locale: String? = nil,
                appID: String = AuthPolicy.defaultAppID) {
        self.appID = appID
        self.messageID = messageID
        self.kind = kind
        self.recipient = recipient
        self.sealedToken = sealedToken
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.attempts = attempts
        self.locale = locale
    }
}

public struct UserRecord: Sendable, Equatable {
    public var id: String
    /// Users belong to one app: the same address in two apps is two users.
    public var appID: String
    public var email: String
    public var emailKey: String
    public var createdAt: Int64

    public init(id: String, email: String, emailKey: String, createdAt: Int64, appID: String = AuthPolicy.defaultAppID) {
        self.appID = appID
        self.id = id
        self.email = email
        self.emailKey = emailKey
        self.createdAt = createdAt
    }
}

/// What the store keeps about a session. `hash` is SHA-256 of the session id text.
public struct SessionRecord: Sendable, Equatable {
    public var hash: [UInt8]
    public var userID: String
    public var createdAt: Int64
    public var expiresAt: Int64
    public var idleExpiresAt: Int64
    /// When `idleExpiresAt` was last written; bounds how often `session` writes.
    public var touchedAt: Int64
    public var ip: String?
    public var userAgent: String?

    public init(hash: [UInt8], userID: String, createdAt: Int64, expiresAt: Int64, idleExpiresAt: Int64,
                touchedAt: Int64, ip: String? = nil, userAgent: String? = nil) {
        self.hash = hash
        self.userID = userID
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.idleExpiresAt = idleExpiresAt
        self.touchedAt = touchedAt
        self.ip = ip
        self.userAgent = userAgent
    }

    public func isLive(at now: Int64) -> Bool { now < expiresAt && now < idleExpiresAt }
}
