import MagicLinkCore
import MagicLinkProtocol

/// The one place where domain and infrastructure errors become wire errors. Anything not
/// recognized is `internal_error` with a message that reveals nothing.
enum ErrorMapping {
    static func wireError(for error: any Error) -> WireError {
        switch error {
        case let wire as WireError:
            return wire
        case let auth as AuthError:
            return wireError(for: auth)
        case is TransientFailure:
            return WireError(.unavailable, "The daemon cannot serve this request right now; try again shortly.")
        case is ShuttingDown:
            return WireError(.unavailable, "The daemon is shutting down; try again shortly.")
        default:
            return WireError(.internalError, "Internal error; the daemon's log has the details.")
        }
    }


    static func wireError(for error: AuthError) -> WireError {
        switch error {
        case .invalidEmail:
            return WireError(.invalidEmail, "The email address is not one plain address we can send to.")
        case .redirectNotAllowed:
            return WireError(.redirectNotAllowed, "The redirect must be a local path or a URL on an allowed origin.")
        case .invalidField(let field, let reason):
            return .invalidField(field, reason + ".")
        case .rateLimited(let retryAfter):
            return WireError(.rateLimited, "Too many sign-in requests; try again in \(retryAfter) s.",
                             details: ["retry_after_s": .integer(retryAfter)])
        case .invalidToken(let reason):
            let message: String
            switch reason {
            case .unknown: message = "This sign-in link is not valid."
            case .expired: message = "This sign-in link has expired."
            case .used: message = "This sign-in link has already been used."
            }
            return WireError(.invalidToken, message, details: ["reason": .string(reason.rawValue)])
        case .invalidSession:
            return WireError(.invalidSession, "The session is not valid.")
        case .mailQueueFull:
            return WireError(.unavailable, "The mail queue is full; try again later.", details: ["reason": "mail_queue_full"])
        case .invalidCode(let left):
            return WireError(.invalidCode, left > 0 ? "The code is not right." : "The code can no longer be used; ask for a new one.",
                             details: ["attempts_left": .integer(Int64(left))])
        case .confirmationRequired(let masked, let requestedAt):
            return WireError(.confirmationRequired,
                             "This link was opened in another browser than the one that asked for it; confirm to sign in here.",
                             details: ["email_masked": .string(masked), "requested_at": .integer(requestedAt)])
        case .flowMismatch:
            return WireError(.flowMismatch, "This link only works in the browser that asked for it.")
        }
    }
}

/// Raised when work is refused because the daemon is stopping.
struct ShuttingDown: Error {}
