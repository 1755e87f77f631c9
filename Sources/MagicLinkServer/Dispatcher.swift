import Logging
import MagicLinkCore
import MagicLinkMail
import MagicLinkProtocol
import NIOCore
import NIOPosix

/// Turns one request line into one reply line. Decoding and encoding happen on the caller's
/// task; database work runs on `blockingPool` or `sessionPool`, never on an event loop, except
/// that logins hand their transaction to the store's group commit and suspend until it commits.
final class Dispatcher: Sendable {
    static let ops = ["hello", "start", "callback", "verify_code", "peek", "session", "logout", "logout_all"] + AdminOps.ops
    static let knownOps = Set(ops)

    let apps: AppDirectory
    let blockingPool: NIOThreadPool
    /// `session`, the op every page of every app calls, runs on a pool of its own with as many
    /// threads as cores: measured at 32 connections, 2 threads served 1.3-2× the sessions of 8
    /// (fewer wake-ups, more work per wake-up).
    let sessionPool: NIOThreadPool
    let maxLineBytes: Int
    let logger: Logger
    let mailWakeup: MailWakeup
    /// Nil in tests that exercise only the app ops.
    let admin: AdminOps?

    init(apps: AppDirectory, blockingPool: NIOThreadPool, sessionPool: NIOThreadPool? = nil, maxLineBytes: Int, logger: Logger,
         mailWakeup: MailWakeup, admin: AdminOps? = nil) {
        self.admin = admin
        self.apps = apps
        self.blockingPool = blockingPool
        self.sessionPool = sessionPool ?? blockingPool
        self.maxLineBytes = maxLineBytes
        self.logger = logger
        self.mailWakeup = mailWakeup
        helloResultBytes = JSONValue.object(Self.helloResult(apps: apps, maxLineBytes: maxLineBytes)).serialized()
    }

    /// The channels' allocator (the daemon never sets another): replies are written into its buffers.
    let allocator = ByteBufferAllocator()

    /// `hello`'s result, serialized once: apps and limits only change with a restart.
    private let helloResultBytes: [UInt8]

    /// A request line, decoded as far as it can be without waiting.
    enum Prepared {
        /// Answered already: a line that is not a request, `hello`, or a cached live session.
        case answered(ByteBuffer)
        /// `session`: `replySession` answers it without a task.
        case session(Request)
        case request(Request)
    }

    /// Decodes a line; answers at once what needs no database.
    func prepare(_ line: ByteBuffer) -> Prepared {
        var cacheAsked = false
        if let answer = line.withUnsafeReadableBytes({ answerFromCache($0, asked: &cacheAsked) }) {
            return .answered(answer)
        }
        func answered(_ reply: [UInt8]) -> Prepared { .answered(allocator.buffer(bytes: reply)) }
        switch line.withUnsafeReadableBytes({ Envelope.decode($0, knownOps: Self.knownOps) }) {
        case .success(let request):
            switch request.op {
            case "hello": return answered(Envelope.success(id: request.id, serializedResult: helloResultBytes))
            case "session":
                // A live session the store holds and vouches for: answered here, on the loop.
                if !cacheAsked, let arguments = try? sessionArguments(Params(request.params)),
                   let info = arguments.authenticator.cachedSession(arguments.session, ip: arguments.ip) {
                    return answered(Envelope.success(id: request.id, sessionResult: Self.sessionResult(info)))
                }
                return .session(request)
            default: return .request(request)
            }
        case .failure(let failure):
            logger.debug("request refused", metadata: ["code": "\(failure.error.code)", "why": "\(failure.error.message)"])
            return answered(Envelope.failure(id: failure.id, error: failure.error))
        }
    }

    /// The reply to a plain `session` line (`PlainSessionRequest`) whose session the store holds
    /// and vouches for, made from the line's own bytes: no JSON tree, no strings of the session
    /// or the ip. Nil for any other line, and when the cache has no answer (`asked` then says
    /// that it was asked, so the general path does not ask again). The general path gives the
    /// same answer to such a line, only slower.
    private func answerFromCache(_ line: UnsafeRawBufferPointer, asked: inout Bool) -> ByteBuffer? {
        guard let request = PlainSessionRequest.scan(line),
              let authenticator = apps.authenticator(app: request.app.map { UnsafeRawBufferPointer(rebasing: line[$0]) })
        else { return nil }
        asked = true
        var reply: ByteBuffer?
        let id = request.id
        // The reply is written from the cache's own bytes, under its lock (about 100 ns),
        // straight into the buffer it is sent from.
        _ = authenticator.withCachedSession(bytes: UnsafeRawBufferPointer(rebasing: line[request.session]),
                                            ip: request.ip.map { UnsafeRawBufferPointer(rebasing: line[$0]) }) { held in
            let capacity = Envelope.sessionSuccessCapacity(id: id, userIDCount: held.userID.count, emailCount: held.email.count)
            var buffer = allocator.buffer(capacity: capacity)
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: capacity) { free in
                Envelope.writeSessionSuccess(id: id, sessionUserID: held.userID, email: held.email, expiresAt: held.expiresAt,
                                             idleExpiresAt: held.idleExpiresAt, into: free)
            }
            reply = buffer
        }
        return reply
    }

    /// The reply (with its line feed) to one request line.
    func reply(to line: ByteBuffer, peer: PeerCredentials = .unknown) async -> [UInt8] {
        switch prepare(line) {
        case .answered(let reply): return Array(reply.readableBytesView)
        case .session(let request), .request(let request): return await reply(to: request, peer: peer)
        }
    }

    /// The reply to a decoded request.
    func reply(to request: Request, peer: PeerCredentials = .unknown) async -> [UInt8] {
        do {
            let result = try await perform(request, peer: peer)
            return Envelope.success(id: request.id, result: result)
        } catch {
            return failureReply(to: request, error)
        }
    }

    /// `session`, the op every page of every app calls, without a task: the check runs on the
    /// session pool and `completion` gets the reply on that pool's thread.
    func replySession(_ request: Request, completion: @escaping @Sendable ([UInt8]) -> Void) {
        let arguments: SessionArguments
        do {
            arguments = try sessionArguments(Params(request.params))
        } catch {
            completion(failureReply(to: request, error))
            return
        }
        sessionPool.submit { state in
            guard case .active = state else {
                completion(self.failureReply(to: request, ShuttingDown()))
                return
            }
            do {
                let info = try arguments.authenticator.session(arguments.session, ip: arguments.ip)
                completion(Envelope.success(id: request.id, sessionResult: Self.sessionResult(info)))
            } catch {
                completion(self.failureReply(to: request, error))
            }
        }
    }

    private func failureReply(to request: Request, _ error: any Error) -> [UInt8] {
        let wire = ErrorMapping.wireError(for: error)
        if wire.code == .internalError {
            logger.error("internal error", metadata: ["op": "\(request.op)", "error": "\(String(reflecting: error))"])
        }
        return Envelope.failure(id: request.id, error: wire)
    }

    private var helloResult: JSONObject { Self.helloResult(apps: apps, maxLineBytes: maxLineBytes) }

    private static func helloResult(apps: AppDirectory, maxLineBytes: Int) -> JSONObject {
        [
            "server": "magiclinkd",
            "version": .string(MagicLinkVersion.string),
            "protocol": 1,
            "ops": .array(Self.ops.map { .string($0) }),
            "max_line_bytes": .integer(Int64(maxLineBytes)),
            "apps": .array(apps.ids.map { .string($0) }),
        ]
    }

    private typealias SessionArguments = (authenticator: Authenticator, session: String, ip: String?)

    private func sessionArguments(_ params: Params) throws -> SessionArguments {
        (try apps.resolve(params), try params.requiredString("session"), try params.optionalString("ip"))
    }

    private static func sessionResult(_ info: SessionInfo) -> SessionResult {
        SessionResult(userID: info.user.id, email: info.user.email, expiresAt: info.expiresAt, idleExpiresAt: info.idleExpiresAt)
    }

    /// The reply sent before closing a connection whose line is over the limit.
    func tooLargeReply() -> [UInt8] {
        Envelope.failure(id: .null, error: WireError(
            .requestTooLarge, "The request line is longer than \(maxLineBytes) bytes.",
            details: ["max_line_bytes": .integer(Int64(maxLineBytes))]))
    }

    private func perform(_ request: Request, peer: PeerCredentials) async throws -> JSONObject {
        let params = Params(request.params)
        if request.op.hasPrefix("admin_"), let admin {
            return try await admin.perform(request.op, params, peer: peer)
        }
        if request.op == "hello" {
            return helloResult
        }
        // Every other op works on one app's users, links and sessions.
        let authenticator = try apps.resolve(params)
        switch request.op {
        case "start":
            var locale: String?
            if let tag = try params.optionalString("locale") {
                guard let normalized = TemplateCatalog.normalizedLocale(tag) else {
                    throw WireError.invalidField("params.locale", "must be a BCP 47 language tag such as pt-BR.")
                }
                locale = normalized
            }
            var send = SendMode.link
            if let text = try params.optionalString("send") {
                guard let mode = SendMode(rawValue: text) else {
                    throw WireError.invalidField("params.send", "must be \"link\", \"code\" or \"both\".")
                }
                send = mode
            }
            let start = StartRequest(email: try params.requiredString("email"),
                                     redirect: try params.optionalString("redirect"),
                                     ip: try params.optionalString("ip"),
                                     userAgent: try params.optionalString("user_agent"),
                                     locale: locale, send: send)
            do {
                let result = try await authenticator.start(start)
                // Woken either way: a refused signup must not be quicker to answer.
                mailWakeup.signal()
                if result.mailed {
                    logger.info("login requested", metadata: ["event": "start", "email": "\(result.maskedEmail)", "message_id": "\(result.messageID)"])
                } else {
                    logger.info("login refused by the signup policy; answered as usual, no mail", metadata: ["event": "start_refused", "reason": "signup_policy", "email": "\(result.maskedEmail)"])
                }
                return ["expires_at": .integer(result.expiresAt), "flow": .string(result.flow)]
            } catch let error as AuthError {
                if case .rateLimited(let retry) = error {
                    logger.notice("login request rate limited", metadata: ["event": "start_refused", "retry_after_s": "\(retry)"])
                } else if case .mailQueueFull = error {
                    logger.error("mail queue full: start refused (is the mail server reachable?)", metadata: ["event": "start_refused", "reason": "mail_queue_full"])
                }
                throw error
            }

        case "callback":
            let token = try params.requiredString("token")
            let flow = try params.optionalString("flow")
            let confirm = try params.optionalBool("confirm")
            let ip = try params.optionalString("ip")
            let userAgent = try params.optionalString("user_agent")
            return try await login(via: "link") {
                try await authenticator.callback(token: token, flow: flow, confirm: confirm, ip: ip, userAgent: userAgent)
            }

        case "verify_code":
            let flow = try params.requiredString("flow")
            let code = try params.requiredString("code")
            let ip = try params.optionalString("ip")
            let userAgent = try params.optionalString("user_agent")
            return try await login(via: "code") {
                try await authenticator.verifyCode(flow: flow, code: code, ip: ip, userAgent: userAgent)
            }

        case "peek":
            let token = try params.requiredString("token")
            let flow = try params.optionalString("flow")
            let peek = try await blocking { try authenticator.peek(token: token, flow: flow) }
            var result: JSONObject = ["valid": .bool(peek.valid), "flow_matches": .bool(peek.flowMatches)]
            result["reason"] = peek.reason.map { .string($0.rawValue) }
            result["email_masked"] = peek.emailMasked.map(JSONValue.string)
            result["expires_at"] = peek.expiresAt.map(JSONValue.integer)
            return result

        case "session":
            let arguments = try sessionArguments(params)
            let info = try await blocking(on: sessionPool) { try arguments.authenticator.session(arguments.session, ip: arguments.ip) }
            return Self.sessionResult(info).object

        case "logout":
            let session = try params.requiredString("session")
            try await blocking { try authenticator.logout(session) }
            logger.info("logout", metadata: ["event": "logout", "session": "\(Secret.logHandle(of: session))"])
            return [:]

        case "logout_all":
            let userID = try params.requiredString("user_id")
            let revoked = try await blocking { try authenticator.logoutAll(userID: userID) }
            logger.info("logout of all sessions", metadata: ["event": "logout_all", "user_id": "\(userID)", "revoked": "\(revoked)"])
            return ["revoked": .integer(Int64(revoked))]

        default:
            throw WireError(.unknownOp, "Unknown op.", details: ["op": .string(request.op)])
        }
    }

    /// A login by link or code: the session for the reply, a log line either way (never a secret).
    private func login(via method: String, _ work: () async throws -> LoginResult) async throws -> JSONObject {
        do {
            let login = try await work()
            logger.info("login succeeded", metadata: [
                "event": "login", "via": "\(method)", "user_id": "\(login.user.id)", "new_user": "\(login.createdUser)",
                "session": "\(Secret.logHandle(of: login.session))",
            ])
            return [
                "session": .string(login.session),
                "expires_at": .integer(login.expiresAt),
                "idle_expires_at": .integer(login.idleExpiresAt),
                "user": .object(["id": .string(login.user.id), "email": .string(login.user.email)]),
                "redirect": .string(login.redirect),
            ]
        } catch let error as AuthError {
            switch error {
            case .invalidToken(let reason):
                logger.notice("login refused", metadata: ["event": "login_refused", "via": "\(method)", "reason": "\(reason.rawValue)"])
            case .invalidCode(let left):
                logger.notice("login refused", metadata: ["event": "login_refused", "via": "code", "reason": "wrong_code", "attempts_left": "\(left)"])
            case .confirmationRequired:
                logger.info("login needs confirmation", metadata: ["event": "login_unconfirmed", "reason": "flow_missing_or_different"])
            case .flowMismatch:
                logger.notice("login refused", metadata: ["event": "login_refused", "via": "\(method)", "reason": "flow_mismatch"])
            default:
                break
            }
            throw error
        }
    }

    /// Runs database work on the blocking pool (or the one given).
    private func blocking<T: Sendable>(on pool: NIOThreadPool? = nil, _ work: @escaping @Sendable () throws -> T) async throws -> T {
        do {
            return try await (pool ?? blockingPool).runIfActive(work)
        } catch is NIOThreadPoolError.ThreadPoolInactive {
            throw ShuttingDown()
        }
    }
}

public enum MagicLinkVersion {
    public static let string = "0.1.0"
}
