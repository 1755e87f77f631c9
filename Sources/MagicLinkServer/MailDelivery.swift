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
            try? await Task.sleep(for: timeout)
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
/// and jitter; a message whose link has expired is marked expired instead of sent.
final class MailDeliveryService: Service, Sendable {
    let store: SQLiteStore
    let transport: any MailTransport
    let sealer: TokenSealer
    let policy: AuthPolicy
    let from: Mailbox
    let appName: String
    let blockingPool: NIOThreadPool
    let wakeup: MailWakeup
    let logger: Logger
    let time: any TimeSource
    let pollInterval: Duration

    init(store: SQLiteStore, transport: any MailTransport, sealer: TokenSealer, policy: AuthPolicy, from: Mailbox,
         appName: String, blockingPool: NIOThreadPool, wakeup: MailWakeup, logger: Logger,
         time: any TimeSource = SystemTime(), pollInterval: Duration = .seconds(5)) {
        self.store = store
        self.transport = transport
        self.sealer = sealer
        self.policy = policy
        self.from = from
        self.appName = appName
        self.blockingPool = blockingPool
        self.wakeup = wakeup
        self.logger = logger
        self.time = time
        self.pollInterval = pollInterval
    }

    func run() async throws {
        let released = try await blockingPool.runIfActive { try self.store.releaseClaimedMail() }
        if released > 0 {
            logger.notice("mail claimed before a crash handed back to the queue", metadata: ["messages": "\(released)"])
        }
        let stopping = NIOLockedValueBox(false)
        await withGracefulShutdownHandler {
            while !stopping.withLockedValue({ $0 }) && !Task.isCancelled {
                var delivered = 0
                do {
                    let batch = try await blockingPool.runIfActive { try self.deliverDueBatch() }
                    delivered = batch.handled
                    if batch.unrecorded > 0 {
                        // Outcomes we could not write stay claimed; hand them back so they are not
                        // stuck until the next restart (delivery is at least once).
                        _ = try await blockingPool.runIfActive { try self.store.releaseClaimedMail() }
                    }
                } catch is CancellationError {
                    return
                } catch {
                    logger.error("mail queue unavailable", metadata: ["error": "\(error)"])
                }
                if delivered == 0 { await wakeup.wait(upTo: pollInterval) }
            }
        } onGracefulShutdown: {
            stopping.withLockedValue { $0 = true }
            self.wakeup.signal()
        }
    }

    /// Claims and delivers one batch. Blocking. One message's failure never holds up the others.
    func deliverDueBatch(limit: Int = 16) throws -> (handled: Int, unrecorded: Int) {
        let batch = try store.claimDueMail(now: time.now(), limit: limit)
        var unrecorded = 0
        for mail in batch {
            let outcome = deliver(mail)
            do {
                try store.finishMail(messageID: mail.messageID, outcome: outcome, now: time.now())
            } catch {
                unrecorded += 1
                logger.error("cannot record a mail outcome", metadata: ["message_id": "\(mail.messageID)", "error": "\(error)"])
            }
        }
        return (batch.count, unrecorded)
    }

    private func deliver(_ mail: QueuedMail) -> SQLiteStore.MailOutcome {
        let now = time.now()
        let recipient = (try? EmailAddress(parsing: mail.recipient))?.masked ?? "?"
        var metadata: Logger.Metadata = ["message_id": "\(mail.messageID)", "to": "\(recipient)", "attempt": "\(mail.attempts)"]
        guard now < mail.expiresAt else {
            logger.notice("mail expired before it could be sent", metadata: metadata.merging(["event": "mail_expired"]) { $1 })
            return .expired
        }
        guard let token = sealer.open(mail.sealedToken, messageID: mail.messageID) else {
            logger.error("cannot open the sealed token (was the key file replaced?)", metadata: metadata.merging(["event": "mail_failed"]) { $1 })
            return .failedPermanently(reason: "sealed token does not open with the current key")
        }
        // A newer start replaced this link (or it was used): sending it would only confuse.
        if let live = try? store.isTokenLive(hash: Secret.hash(of: token), now: now), !live {
            logger.notice("mail for a replaced link not sent", metadata: metadata.merging(["event": "mail_expired"]) { $1 })
            return .expired
        }
        let content = LoginMailContent(appName: appName, link: policy.link(for: token),
                                       minutesValid: max(1, (mail.expiresAt - mail.createdAt + 59) / 60))
        let message = MailMessage(from: from, to: Mailbox(address: mail.recipient), subject: content.subject,
                                  textBody: content.text, htmlBody: content.html, messageID: mail.messageID, date: now)
        do {
            let whereTo = try transport.deliver(Delivery(message: message, link: policy.link(for: token)))
            metadata["event"] = "mail_sent"
            metadata["via"] = "\(whereTo)"
            logger.info("mail sent", metadata: metadata)
            return .sent
        } catch {
            metadata["error"] = "\(error.reason)"
            if error.permanent {
                metadata["event"] = "mail_failed"
                logger.error("mail failed permanently", metadata: metadata)
                return .failedPermanently(reason: error.reason)
            }
            let retryAt = now + Self.backoff(attempt: mail.attempts)
            metadata["event"] = "mail_retry"
            metadata["retry_at"] = "\(retryAt)"
            logger.warning("mail delivery failed; will retry", metadata: metadata)
            return .retry(at: retryAt, reason: error.reason)
        }
    }

    /// 5 s, 10 s, 20 s … capped at 5 minutes, plus up to 20 % jitter.
    static func backoff(attempt: Int) -> Int64 {
        let base = min(Int64(5) << Int64(min(max(attempt - 1, 0), 10)), 300)
        return base + Int64.random(in: 0...(base / 5))
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
