import Foundation
import MagicLinkCore
@testable import MagicLinkStore
import XCTest

final class SQLiteStoreTests: XCTestCase {
    var directory: URL!
    var path: String { directory.appendingPathComponent("test.sqlite").path }

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("magiclinkd-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func makeAuthenticator(_ store: SQLiteStore, time: any TimeSource = SystemTime()) -> (Authenticator, TokenSealer) {
        let sealer = TokenSealer(keyBytes: [UInt8](repeating: 9, count: 32))!
        let policy = AuthPolicy(callbackURL: "https://app.example.com/cb", redirects: try! RedirectPolicy(allowedOrigins: []))
        return (Authenticator(policy: policy, store: store, sealer: sealer, time: time), sealer)
    }

    func testMigrationsRunOnceAndFilesArePrivate() throws {
        let store = try SQLiteStore(path: path)
        XCTAssertEqual(try store.appliedMigrations(), Migrations.all.map(\.name))
        let reopened = try SQLiteStore(path: path)
        XCTAssertEqual(try reopened.appliedMigrations(), Migrations.all.map(\.name))
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber
        XCTAssertEqual(mode?.uint16Value, 0o600)
        let journal = try Connection(path: path).queryFirst("PRAGMA journal_mode") { $0.text(0) }
        XCTAssertEqual(journal, "wal")
    }

    /// Text is bound from the string's own UTF-8: every byte arrives, a NUL does not cut it
    /// short, and the empty string is '' (a null pointer would have bound NULL).
    func testTextArgumentsArriveByteForByte() throws {
        let connection = try Connection(path: path)
        let bridged = String(NSString(string: "bridged ✓ from Foundation"))
        for text in ["", "a", "a\u{0}b", "\u{0}", "é✓ 𝄞", "fifteen bytes!!", String(repeating: "long text ", count: 40), bridged] {
            let row = try connection.queryFirst("SELECT typeof(?1), length(CAST(?1 AS BLOB)), hex(?1)", [.text(text)]) {
                (type: $0.text(0), bytes: $0.int64(1), hex: $0.text(2))
            }
            XCTAssertEqual(row?.type, "text", text)
            XCTAssertEqual(row?.bytes, Int64(text.utf8.count), text)
            XCTAssertEqual(row?.hex, text.utf8.map { String(format: "%02X", $0) }.joined(), text)
        }
    }

    func testRefusesDatabaseFromNewerVersion() throws {
        _ = try SQLiteStore(path: path)
        try Connection(path: path).run("INSERT INTO schema_migrations (name, applied_at) VALUES ('9999-from-the-future', 0)")
        XCTAssertThrowsError(try SQLiteStore(path: path)) { error in
            guard case StoreError.newerSchema(let name)? = error as? StoreError else { return XCTFail("\(error)") }
            XCTAssertEqual(name, "9999-from-the-future")
        }
    }

    func testFullLoginRoundTripAndNoSecretsAtRest() throws {
        let store = try SQLiteStore(path: path)
        let (auth, sealer) = makeAuthenticator(store)
        _ = try auth.start(StartRequest(email: "zoe@example.com", ip: "192.0.2.4"))
        let claimed = try store.claimDueMail(now: SystemTime().now(), limit: 10)
        XCTAssertEqual(claimed.count, 1)
        let token = try XCTUnwrap(sealer.open(claimed[0].sealedToken, messageID: claimed[0].messageID).flatMap(MailSecrets.init(payload:))?.token)
        let login = try auth.callback(token: token, confirm: true)
        XCTAssertEqual(try auth.session(login.session).user.id, login.user.id)
        try store.finishMail(messageID: claimed[0].messageID, outcome: .sent, now: SystemTime().now())
        store.checkpoint()

        for file in [path, path + "-wal"] {
            guard let bytes = FileManager.default.contents(atPath: file) else { continue }
            for secret in [token, login.session] {
                XCTAssertNil(bytes.range(of: Data(secret.utf8)), "\(file) must not hold a secret")
            }
        }
        let sessions = try Connection(path: path).queryFirst("SELECT count(*) FROM sessions WHERE id_hash = ?", [.blob(Secret.hash(of: login.session))]) { $0.int64(0) }
        XCTAssertEqual(sessions, 1, "the session is stored as its SHA-256")
        let sealedLeft = try Connection(path: path).queryFirst("SELECT count(*) FROM mail_queue WHERE sealed_token IS NOT NULL") { $0.int64(0) }
        XCTAssertEqual(sealedLeft, 0, "sent mail drops its sealed token")
    }

    /// The per-second counts give what the whole list of events would: same blocking event,
    /// same newest, for windows below, at and above the limit, with many events in one second
    /// and other keys around; also after a purge took the oldest seconds away.
    func testRateWindowMatchesTheFullListOfEvents() throws {
        let store = try SQLiteStore(path: path)
        var generator = SystemRandomNumberGenerator()
        var events: [String: [Int64]] = [:]
        let times = (0..<400).map { _ in Int64.random(in: 1_000...1_060, using: &generator) }.sorted()
        try store.write { tx in
            for at in times {
                let key = ["a", "b", "c"].randomElement(using: &generator)!
                events[key, default: []].append(at)
                try tx.recordRateEvent(key: key, at: at)
            }
        }
        try assertRateWindows(store, events)
        // Purge keeps what is newer than `now - rateWindow`: here, from 1_031 on.
        _ = try store.purge(now: 1_060, rateWindow: 30)
        try assertRateWindows(store, events.mapValues { $0.filter { $0 > 1_030 } })
    }

    private func assertRateWindows(_ store: SQLiteStore, _ events: [String: [Int64]], line: UInt = #line) throws {
        for key in ["a", "b", "c", "none"] {
            for since in [Int64(0), 1_030, 1_059, 1_061] {
                let inWindow = events[key, default: []].filter { $0 >= since }
                for maximum in [1, 2, 5, inWindow.count, inWindow.count + 1, 1_000] {
                    let got = try store.read { try $0.rateWindow(key: key, since: since, maximum: maximum, now: 1_060) }
                    XCTAssertEqual(got, RateWindow(times: inWindow, maximum: maximum), "key \(key) since \(since) maximum \(maximum)", line: line)
                    if maximum > 0, inWindow.count >= maximum {
                        XCTAssertEqual(got.blocking, inWindow.sorted()[inWindow.count - maximum], line: line)
                    } else {
                        XCTAssertNil(got.blocking, line: line)
                    }
                }
            }
        }
    }

    /// A clock that steps back: events dated ahead of it fold into the present second, so every
    /// event still counts and nothing stays dated in the future. A clock that ran a day ahead
    /// for one event holds the limit shut for at most a window, not a day.
    func testRateEventsFromAClockThatSteppedBackFoldIntoThePresent() throws {
        let store = try SQLiteStore(path: path)
        try store.write { tx in
            try tx.recordRateEvent(key: "k", at: 2_000)
            try tx.recordRateEvent(key: "k", at: 2_000)
            try tx.recordRateEvent(key: "k", at: 1_990)  // stepped back 10 s: the two fold in
            try tx.recordRateEvent(key: "k", at: 1_995)
        }
        XCTAssertEqual(try store.read { try $0.rateWindow(key: "k", since: 1_990, maximum: 4, now: 1_995) }, RateWindow(blocking: 1_990, newest: 1_995))
        XCTAssertEqual(try store.read { try $0.rateWindow(key: "k", since: 1_990, maximum: 5, now: 1_995) }, RateWindow(blocking: nil, newest: 1_995))
        XCTAssertEqual(try store.read { try $0.rateWindow(key: "k", since: 1_991, maximum: 1, now: 1_995) }, RateWindow(blocking: 1_995, newest: 1_995))
        XCTAssertEqual(try store.read { try $0.rateWindow(key: "k", since: 1_996, maximum: 1, now: 1_996) }, RateWindow(blocking: nil, newest: nil))

        // One event while the clock ran a day ahead, then back to 5_000: the window (3,600 s,
        // at most 1) counts that event as now, before and after it is folded.
        try store.write { tx in try tx.recordRateEvent(key: "g", at: 5_000 + 86_400) }
        XCTAssertEqual(try store.read { try $0.rateWindow(key: "g", since: 5_000 - 3_599, maximum: 1, now: 5_000) }, RateWindow(blocking: 5_000, newest: 5_000))
        try store.write { tx in try tx.recordRateEvent(key: "g", at: 5_000) }
        XCTAssertEqual(try store.read { try $0.rateWindow(key: "g", since: 5_000 - 3_599, maximum: 2, now: 5_000) }, RateWindow(blocking: 5_000, newest: 5_000))
        // An hour later both have left the window.
        XCTAssertEqual(try store.read { try $0.rateWindow(key: "g", since: 8_600 - 3_599, maximum: 1, now: 8_600) }, RateWindow(blocking: nil, newest: nil))
        let rows = try Connection(path: path).query("SELECT at, n, total FROM rate_counts WHERE key = 'g' ORDER BY total") { [$0.int64(0), $0.int64(1), $0.int64(2)] }
        XCTAssertEqual(rows, [[5_000, 2, 2]])
    }

    /// The trigger-kept count of pending mail follows every way a message enters, moves
    /// through and leaves the queue.
    func testPendingMailCountFollowsTheQueue() throws {
        let store = try SQLiteStore(path: path)
        let (auth, _) = makeAuthenticator(store)
        let check = try Connection(path: path)
        func assertCounts(_ line: UInt = #line) throws {
            let counted = try check.queryFirst("SELECT count(*) FROM mail_queue WHERE state IN ('queued', 'sending')") { $0.int64(0) }
            let kept = try store.read { try $0.pendingMailCount() }
            XCTAssertEqual(Int64(kept), counted, line: line)
        }
        for i in 0..<6 { _ = try auth.start(StartRequest(email: "q\(i)@example.com")) }
        let now = SystemTime().now()  // after the starts: each mail is due from its own second
        try assertCounts()
        XCTAssertEqual(try store.read { try $0.pendingMailCount() }, 6)
        let claimed = try store.claimDueMail(now: now, limit: 4)
        try assertCounts()
        try store.finishMail(messageID: claimed[0].messageID, outcome: .sent, now: now)
        try store.finishMail(messageID: claimed[1].messageID, outcome: .expired(reason: "x"), now: now)
        try store.finishMail(messageID: claimed[2].messageID, outcome: .failedPermanently(reason: "x"), now: now)
        try store.finishMail(messageID: claimed[3].messageID, outcome: .retry(at: now, reason: "x"), now: now)
        try assertCounts()
        XCTAssertEqual(try store.read { try $0.pendingMailCount() }, 3)
        XCTAssertEqual(try store.retryDeadLetter(messageID: claimed[2].messageID, now: now), .queued)
        _ = try store.claimDueMail(now: now, limit: 2)
        XCTAssertEqual(try store.releaseClaimedMail(), 2)
        try assertCounts()
        try check.run("UPDATE mail_queue SET finished_at = 0 WHERE state IN ('sent', 'expired')")
        _ = try store.purge(now: now + 30 * 86_400, rateWindow: 3_600)
        try assertCounts()
        try check.run("DELETE FROM mail_queue WHERE state = 'queued'")
        try assertCounts()
        XCTAssertEqual(try store.read { try $0.pendingMailCount() }, 0)
    }

    /// Several outcomes in one write: each message ends in its own state, all in one
    /// transaction (one that cannot be written leaves every message as it was).
    func testSeveralMailOutcomesAreRecordedTogether() throws {
        let store = try SQLiteStore(path: path)
        let (auth, _) = makeAuthenticator(store)
        for i in 0..<4 { _ = try auth.start(StartRequest(email: "m\(i)@example.com")) }
        let now = SystemTime().now()  // after the starts: each mail is due from its own second
        let claimed = try store.claimDueMail(now: now, limit: 4)
        guard claimed.count == 4 else { return XCTFail("claimed \(claimed.count) of 4") }

        // A row that refuses its update: none of the four outcomes is written.
        let check = try Connection(path: path)
        try check.execute("CREATE TRIGGER refuse BEFORE UPDATE ON mail_queue WHEN old.message_id = '\(claimed[3].messageID)' BEGIN SELECT RAISE(ABORT, 'refused'); END")
        XCTAssertThrowsError(try store.finishMail(claimed.map { ($0.messageID, .sent, now) }))
        XCTAssertEqual(try store.mailCounts(), ["sending": 4])
        try check.execute("DROP TRIGGER refuse")

        try store.finishMail([
            (claimed[0].messageID, .sent, now),
            (claimed[1].messageID, .expired(reason: "x"), now),
            (claimed[2].messageID, .failedPermanently(reason: "y"), now),
            (claimed[3].messageID, .retry(at: now + 60, reason: "z"), now),
        ])
        XCTAssertEqual(try store.mailCounts(), ["sent": 1, "expired": 1, "failed": 1, "queued": 1])
        XCTAssertEqual(try store.read { try $0.pendingMailCount() }, 1)
        try store.finishMail([])
    }

    func testConcurrentCallbacksWithOneTokenMakeExactlyOneSession() throws {
        let store = try SQLiteStore(path: path)
        let (auth, sealer) = makeAuthenticator(store)
        _ = try auth.start(StartRequest(email: "race@example.com"))
        let mail = try XCTUnwrap(store.claimDueMail(now: SystemTime().now(), limit: 1).first)
        let token = try XCTUnwrap(sealer.open(mail.sealedToken, messageID: mail.messageID).flatMap(MailSecrets.init(payload:))?.token)

        let results = Results()
        DispatchQueue.concurrentPerform(iterations: 32) { _ in
            do {
                _ = try auth.callback(token: token, confirm: true)
                results.add("ok")
            } catch let error as AuthError {
                results.add("\(error)")
            } catch {
                results.add("other: \(error)")
            }
        }
        XCTAssertEqual(results.all.filter { $0 == "ok" }.count, 1, "\(results.all)")
        XCTAssertEqual(results.all.filter { $0 == "invalidToken(MagicLinkCore.AuthError.TokenRejection.used)" }.count, 31, "\(results.all)")
        XCTAssertEqual(try Connection(path: path).queryFirst("SELECT count(*) FROM sessions") { $0.int64(0) }, 1)
    }

    func testMailQueueClaimReleaseRetryAndExpiry() throws {
        let store = try SQLiteStore(path: path)
        let (auth, _) = makeAuthenticator(store)
        _ = try auth.start(StartRequest(email: "q1@example.com"))
        _ = try auth.start(StartRequest(email: "q2@example.com"))
        let now = SystemTime().now()  // after the starts: each mail is due from its own second
        let first = try store.claimDueMail(now: now, limit: 1)
        XCTAssertEqual(first.count, 1)
        XCTAssertEqual(first[0].attempts, 1)
        // A crash leaves it claimed; the next process hands it back.
        XCTAssertEqual(try store.releaseClaimedMail(), 1)
        let both = try store.claimDueMail(now: now, limit: 10)
        XCTAssertEqual(both.count, 2)
        XCTAssertTrue(try store.claimDueMail(now: now, limit: 10).isEmpty, "claimed mail is not claimed twice")

        try store.finishMail(messageID: both[0].messageID, outcome: .retry(at: now + 30, reason: "451 try later"), now: now)
        try store.finishMail(messageID: both[1].messageID, outcome: .expired(reason: "test"), now: now)
        XCTAssertTrue(try store.claimDueMail(now: now + 29, limit: 10).isEmpty, "not due yet")
        XCTAssertEqual(try store.nextMailDue(), now + 30)
        let retried = try store.claimDueMail(now: now + 30, limit: 10)
        XCTAssertEqual(retried.map(\.messageID), [both[0].messageID])
        XCTAssertEqual(retried[0].attempts, 3)
        XCTAssertEqual(try store.mailCounts(), ["sending": 1, "expired": 1])
    }

    func testPurgeRemovesDeadRowsOnly() throws {
        let store = try SQLiteStore(path: path)
        let time = Clock(1_800_000_000)
        let (auth, sealer) = makeAuthenticator(store, time: time)
        _ = try auth.start(StartRequest(email: "p@example.com", ip: "192.0.2.9"))
        let mail = try XCTUnwrap(store.claimDueMail(now: time.now(), limit: 1).first)
        let login = try auth.callback(token: try XCTUnwrap(sealer.open(mail.sealedToken, messageID: mail.messageID).flatMap(MailSecrets.init(payload:))?.token), confirm: true)
        XCTAssertEqual(try store.purge(now: time.now(), rateWindow: 3_600), 0)
        time.value += 8 * 86_400  // past idle expiry (7 days) and a day past token expiry
        XCTAssertEqual(try store.purge(now: time.now(), rateWindow: 3_600), 5)  // session, token, 3 rate events (address, ip, global)
        XCTAssertThrowsError(try auth.session(login.session))
    }
}

final class Results: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ item: String) { lock.withLock { items.append(item) } }
    var all: [String] { lock.withLock { items } }
}

final class Clock: TimeSource, @unchecked Sendable {
    private let lock = NSLock()
    private var current: Int64
    init(_ start: Int64) { current = start }
    var value: Int64 {
        get { lock.withLock { current } }
        set { lock.withLock { current = newValue } }
    }
    func now() -> Int64 { value }
}
