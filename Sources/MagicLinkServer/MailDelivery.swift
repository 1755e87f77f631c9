import Logging
import MagicLinkCore
import MagicLinkMail
import MagicLinkStore
import NIOConcurrencyHelpers
import NIOPosix
import ServiceLifecycle

/// Wakes the delivery worker when a `start` has queued mail, so delivery does not wait for the
/// next poll. Signals are not counted: one wake-up drains everything due.
final class MailWakeup: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state = NIOLockedValueBox(State())

    func signal() {
        let waiter = state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.pending = true
            return nil
        }
        waiter?.resume()
    }

    /// Returns on a signal or after `timeout`, whichever comes first.
    func wait(upTo timeout: Duration) async {
        let timer = Task { [weak self] in
            // Only a timer that ran out wakes the waiter; a cancelled one must not leave a
            // pending signal behind (that would make the next wait return at once, forever).
            do { try await Task.sleep(for: timeout) } catch { return }
            self?.signal()
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLockedValue { state -> Bool in
                    if state.pending {
                        state.pending = false
                        return true
                    }
                    state.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            signal()
        }
        timer.cancel()
    }
}

/// Sends queued mail. Claims due messages in batches, renders each (the sealed token is opened
/// only here), hands it to the transport, and records the outcome. Messages claimed by a
/// process that died are handed back at start; failures are retried with exponential backoff
/// and jitter; a message whose link has expired (or was replaced by a newer one) is marked
/// expired instead of sent. Database work runs on the blocking pool; the transport's network
/// I/O is asynchronous.
final class MailDeliveryService: Service, Sendable {
    let store: SQLiteStore
    let transport: any MailTransport
    let composer: MailComposer
    let blockingPool: NIOThreadPool
    let wakeup: MailWakeup
    let logger: Logger
    let time: any TimeSource
    let pollInterval: Duration
    let batchSize: Int
    let retryDelays: ClosedRange<Int64>
    /// How long a delivery in progress may go on once shutdown has begun.
    let shutdownGrace: Duration = .seconds(3)
    private let shutdown = ShutdownGate()

    init(store: SQLiteStore, transport: any MailTransport, composer: MailComposer, blockingPool: NIOThreadPool,
         wakeup: MailWakeup, logger: Logger, time: any TimeSource = SystemTime(),
         pollInterval: Duration = .seconds(5), batchSize: Int = 16, retryDelays: ClosedRange<Int64> = 5...300) {
        self.retryDelays = retryDelays
        self.store = store
        self.transport = transport
        self.composer = composer
        self.blockingPool = blockingPool
        self.wakeup = wakeup
        self.logger = logger
        self.time = time
        self.pollInterval = pollInterval
        self.batchSize = batchSize
    }

    func run() async throws {
        let released = try await blockingPool.runIfActive { try self.store.releaseClaimedMail() }
        if released > 0 {
            logger.notice("mail claimed before a crash handed back to the queue", metadata: ["event": "mail_requeued", "messages": "\(released)"])
        }
        await withGracefulShutdownHandler {
            while !shutdown.hasBegun && !Task.isCancelled {
                let handled: Int
                do {
                    handled = try await deliverDueBatch { self.shutdown.hasBegun }
                } catch is CancellationError {
                    break
                } catch {
                    logger.error("mail queue unavailable", metadata: ["error": "\(error)"])
                    handled = 0
                }
                if handled == 0 { await wakeup.wait(upTo: await idleWait()) }
            }
        } onGracefulShutdown: {
            self.shutdown.begin()
            self.wakeup.signal()
        }
        // Whatever is still claimed (a batch cut short by shutdown) goes back to the queue.
        _ = try? await blockingPool.runIfActive { try self.store.releaseClaimedMail() }
        let transport = self.transport
        _ = await shutdown.bounded(by: shutdownGrace) { await transport.shutdown() }
    }

    /// How long to sleep when nothing is due: until the next retry is due, at most the poll interval.
    private func idleWait() async -> Duration {
        guard let due = try? await blockingPool.runIfActive({ try self.store.nextMailDue() }) else { return pollInterval }
        let seconds = max(0, due - time.now())
        return min(pollInterval, .seconds(seconds) + .milliseconds(50))
    }

    /// Claims one batch and delivers it; returns how many messages it claimed. One message's
    /// failure never holds up the others; stops early (leaving the rest claimed) when asked.
    /// Messages go out one after another; their outcomes are recorded while the next ones are
    /// on their way, one write at a time: whatever finished while a write was committing goes
    /// in the next one. A slow transport has each outcome written at once; a fast one has a
    /// write (one blocking thread, one group-commit entry) carry many, instead of a write per
    /// message holding a blocking thread each. The batch ends when all are written.
    func deliverDueBatch(stop: @Sendable () -> Bool = { false }) async throws -> Int {
        let now = time.now()
        let limit = batchSize
        let batch = try await blockingPool.runIfActive { try self.store.claimDueMail(now: now, limit: limit) }
        let outcomes = OutcomeQueue()
        let unrecorded = await withTaskGroup(of: Bool.self) { recordings in
            for mail in batch {
                if stop() { break }
                let outcome = await deliver(mail)
                if outcomes.add((messageID: mail.messageID, outcome: outcome, at: time.now())) {
                    // Nobody is writing: this task writes until the queue is empty. (`addTask`,
                    // not `addTaskUnlessCancelled`: the queue now counts on a writer.)
                    recordings.addTask {
                        var recorded = true
                        while let chunk = outcomes.takeAll() {
                            if !(await self.record(chunk)) { recorded = false }
                        }
                        return recorded
                    }
                }
            }
            var unrecorded = false
            for await recorded in recordings where !recorded { unrecorded = true }
            return unrecorded
        }
        if unrecorded {
            // Outcomes we could not write stay claimed; hand them back now rather than at the
            // next restart (delivery is at least once).
            _ = try? await blockingPool.runIfActive { try self.store.releaseClaimedMail() }
        }
        return batch.count
    }

    /// Writes deliveries' outcomes in one transaction; false (logged) when the database would
    /// not take them. When several fail together, each is tried on its own, so one bad row does
    /// not cost the others their outcome (a sent message handed back would go out twice).
    private func record(_ outcomes: [SQLiteStore.FinishedMail]) async -> Bool {
        do {
            try await blockingPool.runIfActive { try self.store.finishMail(outcomes) }
            return true
        } catch {
            if outcomes.count > 1 {
                var all = true
                for outcome in outcomes where !(await record([outcome])) { all = false }
                return all
            }
            logger.error("cannot record a mail outcome", metadata: [
                "event": "mail_unrecorded", "message_id": "\(outcomes.first?.messageID ?? "?")", "error": "\(error)",
            ])
            return false
        }
    }

    private func deliver(_ mail: QueuedMail) async -> SQLiteStore.MailOutcome {
        let now = time.now()
        let recipient = (try? EmailAddress(parsing: mail.recipient))?.masked ?? "?"
        var metadata: Logger.Metadata = ["message_id": "\(mail.messageID)", "to": "\(recipient)", "attempt": "\(mail.attempts)"]
        // A link about to die is not worth sending: at least a tenth of its lifetime (at most a
        // minute) must be left for the user to read the mail and click.
        let floor = min(60, (mail.expiresAt - mail.createdAt) / 10)
        guard mail.expiresAt - now > floor else {
            metadata["event"] = "mail_expired"
            logger.notice("mail expired before it could be sent", metadata: metadata)
            return .expired(reason: "the link expired before the message could be sent")
        }
        guard let payload = composer.sealer.open(mail.sealedToken, messageID: mail.messageID),
              let secrets = MailSecrets(payload: payload) else {
            metadata["event"] = "mail_failed"
            logger.error("cannot open the sealed token (was the key file replaced?)", metadata: metadata)
            return .failedPermanently(reason: "sealed token does not open with the current key")
        }
        // A newer start replaced this link (or it was used): sending it would only confuse.
        let tokenHash = Secret.hash(of: secrets.token)
        if let live = try? await blockingPool.runIfActive({ try self.store.isTokenLive(hash: tokenHash, now: now) }), !live {
            metadata["event"] = "mail_expired"
            logger.notice("mail for a replaced link not sent", metadata: metadata)
            return .expired(reason: "a newer link replaced this one, or it was used")
        }
        let delivery: Delivery
        do {
            delivery = try composer.compose(mail, secrets: secrets, now: now)
        } catch {
            metadata["event"] = "mail_failed"
            metadata["error"] = "\(error)"
            logger.error("cannot render the message", metadata: metadata)
            return .failedPermanently(reason: "cannot render: \(error)")
        }
        // A send in progress when shutdown begins gets `shutdownGrace` to finish; then the message
        // goes back to the queue (at least once: the server may have it already).
        let transport = self.transport
        let attempt = await shutdown.bounded(by: shutdownGrace) { () -> Result<String, MailTransportError> in
            do throws(MailTransportError) {
                return .success(try await transport.deliver(delivery))
            } catch {
                return .failure(error)
            }
        }
        guard let attempt else {
            metadata["event"] = "mail_requeued"
            logger.notice("shutdown interrupted a delivery; the message goes back to the queue", metadata: metadata)
            return .retry(at: now, reason: "interrupted by shutdown")
        }
        switch attempt {
        case .success(let note):
            metadata["event"] = "mail_sent"
            metadata["via"] = "\(note)"
            logger.info("mail sent", metadata: metadata)
            return .sent
        case .failure(let error):
            // Servers quote the recipient in their replies; the log keeps addresses masked.
            metadata["error"] = "\(Self.masking(mail.recipient, as: recipient, in: error.reason))"
            if error.permanent {
                metadata["event"] = "mail_failed"
                logger.error("mail failed permanently; kept as a dead letter", metadata: metadata)
                return .failedPermanently(reason: error.reason)
            }
            let retryAt = now + Self.backoff(attempt: mail.attempts, delays: retryDelays)
            if retryAt >= mail.expiresAt {
                metadata["event"] = "mail_expired"
                logger.warning("mail delivery failed and the link expires before the next try", metadata: metadata)
                return .expired(reason: "the link expired while retrying; last error: \(error.reason)")
            }
            metadata["event"] = "mail_retry"
            metadata["retry_at"] = "\(retryAt)"
            logger.warning("mail delivery failed; will retry", metadata: metadata)
            return .retry(at: retryAt, reason: error.reason)
        }
    }

    /// `text` with every occurrence of `address` (any case) replaced by `masked`.
    static func masking(_ address: String, as masked: String, in text: String) -> String {
        guard !address.isEmpty else { return text }
        let lowerText = Array(text.lowercased().utf8), needle = Array(address.lowercased().utf8)
        guard lowerText.count == text.utf8.count, needle.count <= lowerText.count else { return text }
        let original = Array(text.utf8)
        var out: [UInt8] = []
        var index = 0
        while index < original.count {
            if index + needle.count <= lowerText.count, Array(lowerText[index..<(index + needle.count)]) == needle {
                out += Array(masked.utf8)
                index += needle.count
            } else {
                out.append(original[index])
                index += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Doubles from the minimum delay (5 s, 10 s, 20 s …) up to the maximum (5 min), plus up to
    /// 20 % jitter so that a recovering server is not hit by every message at once.
    static func backoff(attempt: Int, delays: ClosedRange<Int64>) -> Int64 {
        let base = min(delays.lowerBound << Int64(min(max(attempt - 1, 0), 20)), delays.upperBound)
        return base + Int64.random(in: 0...(base / 5))
    }
}

/// Turns a queued message and its token into the message to send: link from configuration,
/// words from the templates, headers from `MailMessage`.
struct MailComposer: Sendable {
    /// What one app's mail looks like: its link base, sender, name and templates.
    struct AppMail: Sendable {
        let policy: AuthPolicy
        let from: Mailbox
        let appName: String
        /// Replaced as a whole on reload (SIGHUP).
        let templates: NIOLockedValueBox<TemplateCatalog>
    }

    struct UnknownApp: Error, CustomStringConvertible {
        let appID: String
        var description: String { "the message belongs to the app \"\(appID)\", which is no longer configured" }
    }

    let sealer: TokenSealer
    let apps: [String: AppMail]

    func compose(_ mail: QueuedMail, secrets: MailSecrets, now: Int64) throws -> Delivery {
        guard let app = apps[mail.appID] else { throw UnknownApp(appID: mail.appID) }
        let link = secrets.send.sendsLink ? app.policy.link(for: secrets.token) : nil
        let templates = app.templates.withLockedValue { $0 }
        // "Expires in N minutes" counts from now: a retried message tells the time really left.
        let words = try templates.render(.login, locale: mail.locale, link: link, code: secrets.code, appName: app.appName,
                                         email: mail.recipient, expiresAt: mail.expiresAt, now: now)
        let message = MailMessage(from: app.from, to: Mailbox(address: mail.recipient), subject: words.subject,
                                  textBody: words.text, htmlBody: words.html, messageID: mail.messageID, date: now)
        return Delivery(message: message, link: link, code: secrets.code)
    }
}

/// The server's thread pool runs the mail transports' blocking work.
extension NIOThreadPool: BlockingExecutor {
    public func execute<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await runIfActive(work)
    }
}

/// Deletes rows that no longer matter (dead sessions, old tokens, old rate events, old mail),
/// at start and then periodically.
final class MaintenanceService: Service, Sendable {
    let store: SQLiteStore
    let blockingPool: NIOThreadPool
    let rateWindow: Int64
    let interval: Duration
    let logger: Logger
    let time: any TimeSource

    init(store: SQLiteStore, blockingPool: NIOThreadPool, rateWindow: Int64, logger: Logger,
         interval: Duration = .seconds(600), time: any TimeSource = SystemTime()) {
        self.store = store
        self.blockingPool = blockingPool
        self.rateWindow = rateWindow
        self.interval = interval
        self.logger = logger
        self.time = time
    }

    func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let now = time.now()
                let removed = try await blockingPool.runIfActive { try self.store.purge(now: now, rateWindow: self.rateWindow) }
                if removed > 0 { logger.debug("purged expired rows", metadata: ["rows": "\(removed)"]) }
            } catch is CancellationError {
                return
            } catch {
                logger.warning("purge failed", metadata: ["error": "\(error)"])
            }
            _ = try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
        }
    }
}

/// Lets work in progress see that shutdown began, and bounds how long it may still take.
final class ShutdownGate: Sendable {
    private struct State {
        var begun = false
        var nextID = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    }
    private let state = NIOLockedValueBox(State())

    var hasBegun: Bool { state.withLockedValue { $0.begun } }

    func begin() {
        let waiters = state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
            state.begun = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns when shutdown begins, or when the calling task is cancelled (its waiter is then
    /// removed, so finished work leaves nothing behind).
    func wait() async {
        let id = state.withLockedValue { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now = state.withLockedValue { state -> Bool in
                    if state.begun || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLockedValue { $0.waiters.removeValue(forKey: id) }
            waiter?.resume()
        }
    }

    /// The operation's result, or nil when shutdown began and `grace` passed first. The operation
    /// is not cancelled (an SMTP exchange cannot be cut cleanly); its late result is dropped.
    func bounded<T: Sendable>(by grace: Duration, _ operation: @escaping @Sendable () async -> T) async -> T? {
        let outcome = Once<T?>()
        let deadline = Task {
            await self.wait()
            guard !Task.isCancelled else { return }
            do { try await Task.sleep(for: grace) } catch { return }
            outcome.resume(with: nil)
        }
        let result = await withCheckedContinuation { continuation in
            outcome.setContinuation(continuation)
            Task { outcome.resume(with: await operation()) }
        }
        deadline.cancel()
        return result
    }
}

/// Resumes a continuation exactly once, with whichever value comes first (a value that comes
/// before the continuation is set is kept for it).
private final class Once<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, Never>?
        /// Holds at most one value that arrived before the continuation.
        var early: [T] = []
        var done = false
    }
    private let state = NIOLockedValueBox(State())

    func setContinuation(_ continuation: CheckedContinuation<T, Never>) {
        let early = state.withLockedValue { state -> [T] in
            if state.done { return state.early }
            state.continuation = continuation
            return []
        }
        if let value = early.first { continuation.resume(returning: value) }
    }

    func resume(with value: T) {
        let continuation = state.withLockedValue { state -> CheckedContinuation<T, Never>? in
            guard !state.done else { return nil }
            state.done = true
            guard let continuation = state.continuation else {
                state.early = [value]
                return nil
            }
            return continuation
        }
        continuation?.resume(returning: value)
    }
}

/// Outcomes waiting to be written, and whether a task is writing them.
final class OutcomeQueue: @unchecked Sendable {
    private let lock = NIOLock()
    private var waiting: [SQLiteStore.FinishedMail] = []
    private var writing = false

    /// Queues an outcome; true when nobody is writing, and the caller must start the writer.
    func add(_ outcome: SQLiteStore.FinishedMail) -> Bool {
        lock.withLock {
            waiting.append(outcome)
            if writing { return false }
            writing = true
            return true
        }
    }

    /// Everything waiting; nil (and the writer is done) when nothing is.
    func takeAll() -> [SQLiteStore.FinishedMail]? {
        lock.withLock {
            guard !waiting.isEmpty else {
                writing = false
                return nil
            }
            defer { waiting = [] }
            return waiting
        }
    }
}
