/// A wire error code. An open set: new codes can be added without breaking callers that switch
/// over the known ones (compare with `==`, always keep a default branch).
public struct ErrorCode: Hashable, Sendable, CustomStringConvertible {
    private enum Known: String, Sendable {
        case invalidRequest = "invalid_request"
        case unknownOp = "unknown_op"
        case requestTooLarge = "request_too_large"
        case invalidEmail = "invalid_email"
        case redirectNotAllowed = "redirect_not_allowed"
        case rateLimited = "rate_limited"
        case invalidToken = "invalid_token"
        case invalidSession = "invalid_session"
        case invalidCode = "invalid_code"
        case confirmationRequired = "confirmation_required"
        case flowMismatch = "flow_mismatch"
        case permissionDenied = "permission_denied"
        case unavailable = "unavailable"
        case internalError = "internal_error"
    }

    private let known: Known

    private init(_ known: Known) { self.known = known }

    /// The code as written on the wire.
    public var rawValue: String { known.rawValue }
    public var description: String { rawValue }

    /// Whether the same request may succeed later unchanged.
    public var isRetryable: Bool { self == .rateLimited || self == .unavailable }

    public static let invalidRequest = ErrorCode(.invalidRequest)
    public static let unknownOp = ErrorCode(.unknownOp)
    public static let requestTooLarge = ErrorCode(.requestTooLarge)
    public static let invalidEmail = ErrorCode(.invalidEmail)
    public static let redirectNotAllowed = ErrorCode(.redirectNotAllowed)
    public static let rateLimited = ErrorCode(.rateLimited)
    public static let invalidToken = ErrorCode(.invalidToken)
    public static let invalidSession = ErrorCode(.invalidSession)
    public static let invalidCode = ErrorCode(.invalidCode)
    public static let confirmationRequired = ErrorCode(.confirmationRequired)
    public static let flowMismatch = ErrorCode(.flowMismatch)
    public static let permissionDenied = ErrorCode(.permissionDenied)
    public static let unavailable = ErrorCode(.unavailable)
    public static let internalError = ErrorCode(.internalError)
}

/// A refused request, ready to be written as an error reply.
public struct WireError: Error, Sendable {
    public var code: ErrorCode
    public var message: String
    public var details: JSONObject

    public init(_ code: ErrorCode, _ message: String, details: JSONObject = JSONObject()) {
        self.code = code
        self.message = message
        self.details = details
    }

    /// `invalid_request` blaming one member, named as a path like `params.email`.
    public static func invalidField(_ field: String, _ problem: String) -> WireError {
        WireError(.invalidRequest, "\(field) \(problem)", details: ["field": .string(field)])
    }
}
