import MagicLinkCore
import Foundation

/// A clock the test moves by hand.
final class ManualTime: TimeSource, @unchecked Sendable {
    private let lock = NSLock()
    private var current: Int64
    init(_ start: Int64 = 1_800_000_000) { current = start }
    func now() -> Int64 { lock.withLock { current } }
    func advance(_ seconds: Int64) { lock.withLock { current += seconds } }
}

/// Deterministic "randomness": a counter-based byte stream, different on every call.
final class CountingRandom: RandomSource, @unchecked Sendable {
    private let lock = NSLock()
    private var counter: UInt8 = 0
    func bytes(_ count: Int) -> [UInt8] {
        lock.withLock {
            counter &+= 1
            return (0..<count).map { UInt8(truncatingIfNeeded: Int(counter) &* 31 &+ $0) }
        }
    }
}

/// An in-memory AuthStore for unit tests of the core: writes are serialized and roll back on throw.
final class InMemoryStore: AuthStore, @unchecked Sendable {
    struct State {
        var tokens: [[UInt8]: LoginTokenRecord] = [:]
        var users: [String: UserRecord] = [:]         // by emailKey
        var sessions: [[UInt8]: SessionRecord] = [:]
        var mail: [QueuedMail] = []
        var rateEvents: [(String, Int64)] = []
        var writes = 0
        /// Writes that came through `write(suspending:)`, committed or not.
        var suspendedWrites = 0
    }

    private let lock = NSLock()
    var state = State()

    func write<T>(_ body: (any AuthTransaction) throws -> T) throws -> T {
        try lock.withLock {
            let saved = state
            let tx = Tx(store: self)
            do {
                let result = try body(tx)
                state.writes += 1
                return result
            } catch {
                state = saved
                throw error
            }
        }
    }

    /// Suspends for real, as the SQLite store does: the body runs on another thread.
    func write<T: Sendable>(suspending body: @escaping @Sendable (any AuthTransaction) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                self.lock.withLock { self.state.suspendedWrites += 1 }
                continuation.resume(with: Result { try self.write(body) })
            }
        }
    }

    func read<T>(_ body: (any AuthReadTransaction) throws -> T) throws -> T {
        try lock.withLock { try body(Tx(store: self)) }
    }

    struct Tx: AuthTransaction {
        let store: InMemoryStore
        func token(hash: [UInt8]) throws -> LoginTokenRecord? { store.state.tokens[hash] }
        func token(flowHash: [UInt8]) throws -> LoginTokenRecord? { store.state.tokens.values.first { $0.flowHash == flowHash } }
        func recordCodeFailure(hash: [UInt8]) throws -> Int {
            store.state.tokens[hash]?.codeFailures += 1
            return store.state.tokens[hash]?.codeFailures ?? 0
        }
        func recordPeek(hash: [UInt8]) throws { store.state.tokens[hash]?.peeks += 1 }
        func user(appID: String, emailKey: String) throws -> UserRecord? { store.state.users[appID + "|" + emailKey] }
        func session(hash: [UInt8]) throws -> (SessionRecord, UserRecord)? {
            guard let s = store.state.sessions[hash],
                  let u = store.state.users.values.first(where: { $0.id == s.userID }) else { return nil }
            return (s, u)
        }
        func rateWindow(key: String, since: Int64, maximum: Int, now: Int64) throws -> RateWindow {
            RateWindow(times: store.state.rateEvents.filter { $0.0 == key && min($0.1, now) >= since }.map { min($0.1, now) }, maximum: maximum)
        }
        /// As the SQLite store does: events dated after `at` (the clock stepped back) move to `at`.
        func recordRateEvent(key: String, at: Int64) throws {
            store.state.rateEvents = store.state.rateEvents.map { $0.0 == key && $0.1 > at ? ($0.0, at) : $0 }
            store.state.rateEvents.append((key, at))
        }
        func pendingMailCount() throws -> Int { store.state.mail.count }
        func supersedeTokens(appID: String, emailKey: String, at: Int64) throws {
            for (hash, token) in store.state.tokens where token.appID == appID && token.emailKey == emailKey && token.usedAt == nil && token.supersededAt == nil {
                store.state.tokens[hash]?.supersededAt = at
            }
        }
        func insertToken(_ token: LoginTokenRecord) throws { store.state.tokens[token.hash] = token }
        func markTokenUsed(hash: [UInt8], at: Int64) throws -> Bool {
            guard store.state.tokens[hash]?.usedAt == nil, store.state.tokens[hash] != nil else { return false }
            store.state.tokens[hash]?.usedAt = at
            return true
        }
        func enqueueMail(_ mail: QueuedMail) throws { store.state.mail.append(mail) }
        func withdrawMail(messageID: String) throws { store.state.mail.removeAll { $0.messageID == messageID } }
        func insertUser(_ user: UserRecord) throws { store.state.users[user.appID + "|" + user.emailKey] = user }
        func insertSession(_ session: SessionRecord) throws { store.state.sessions[session.hash] = session }
        func touchSession(hash: [UInt8], idleExpiresAt: Int64, touchedAt: Int64) throws {
            store.state.sessions[hash]?.idleExpiresAt = idleExpiresAt
            store.state.sessions[hash]?.touchedAt = touchedAt
        }
        func deleteSession(appID: String, hash: [UInt8]) throws {
            guard let s = store.state.sessions[hash], store.state.users.values.contains(where: { $0.id == s.userID && $0.appID == appID }) else { return }
            store.state.sessions[hash] = nil
        }
        func deleteSessions(appID: String, userID: String, liveAt now: Int64) throws -> Int {
            guard store.state.users.values.contains(where: { $0.id == userID && $0.appID == appID }) else { return 0 }
            let mine = store.state.sessions.filter { $0.value.userID == userID }
            for key in mine.keys { store.state.sessions[key] = nil }
            return mine.values.filter { $0.isLive(at: now) }.count
        }
    }
}
