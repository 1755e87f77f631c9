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
    /// A wrong code; `attemptsLeft` 0 means the flow's code is dead.
    case invalidCode(attemptsLeft: Int)
    /// The link was opened without its flow (another browser or device, or a link someone else
    /// requested): the token is untouched, and only the same callback with `confirm` completes it.
    case confirmationRequired(emailMasked: String, requestedAt: Int64)
    /// Strict flow binding: a link only works in the browser that asked for it.
    case flowMismatch
}
