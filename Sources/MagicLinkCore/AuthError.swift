/// Why a request was refused, in domain terms. The server maps these to wire error codes in one place.
public enum AuthError: Error, Sendable, Equatable {
    public enum TokenRejection: String, Sendable {
        case unknown, expired, used
    }

    case invalidEmail(reason: String)
    case redirectNotAllowed(reason: String)
    case invalidField(field: String, reason: String)
    case rateLimited(retryAfterSeconds: Int64)
    case invalidToken(TokenRejection)
    case invalidSession
    /// The durable mail queue holds as many messages as it may; nothing was queued.
    case mailQueueFull
}
