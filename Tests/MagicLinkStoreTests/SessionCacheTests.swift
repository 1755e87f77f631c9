import Foundation
import MagicLinkCore
@testable import MagicLinkStore
import XCTest

/// The session cache answers only what the database would answer now: every way a session can
/// end or change, in this process or in another connection, closes it at once.
final class SessionCacheTests: XCTestCase {
    var directory: URL!
    var path: String { directory.appendingPathComponent("test.sqlite").path }
    let start: Int64 = 1_800_000_000

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("magiclinkd-cache-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func makeAuthenticator(_ store: SQLiteStore, clock: Clock, touchInterval: Int64 = 60) -> (Authenticator, TokenSealer) {
        let sealer = TokenSealer(keyBytes: [UInt8](repeating: 9, count: 32))!
        var policy = AuthPolicy(callbackURL: "https://app.example.com/cb", redirects: try! RedirectPolicy(allowedOrigins: []))
        policy.sessionTouchInterval = touchInterval
        policy.addressCooldown = 0
        return (Authenticator(policy: policy, store: store, sealer: sealer, time: clock), sealer)
    }

    /// A session by the real flow: start, the mail's token, callback.
    private func login(_ email: String, _ auth: Authenticator, _ sealer: TokenSealer, _ store: SQLiteStore, clock: Clock) throws -> LoginResult {
        _ = try auth.start(StartRequest(email: email, ip: "192.0.2.4"))
        let claimed = try store.claimDueMail(now: clock.now(), limit: 10)
        let mail = try XCTUnwrap(claimed.last)
        let token = try XCTUnwrap(sealer.open(mail.sealedToken, messageID: mail.messageID).flatMap(MailSecrets.init(payload:))?.token)
        try store.finishMail(messageID: mail.messageID, outcome: .sent, now: clock.now())
        return try auth.callback(token: token, confirm: true)
    }

    private struct Fixture {
        let store: SQLiteStore
        let auth: Authenticator
        let sealer: TokenSealer
        let clock: Clock
    }

    private func fixture(capacity: Int = 1_000, touchInterval: Int64 = 60) throws -> Fixture {
        let clock = Clock(start)
        let store = try SQLiteStore(path: path, sessionCacheCapacity: capacity, now: start)
        let (auth, sealer) = makeAuthenticator(store, clock: clock, touchInterval: touchInterval)
        return Fixture(store: store, auth: auth, sealer: sealer, clock: clock)
    }

    /// A session checked once is answered from memory, with what the database says.
    func testASessionReadOnceIsAnsweredFromMemory() throws {
        let f = try fixture()
        let login = try login("ann@example.com", f.auth, f.sealer, f.store, clock: f.clock)
        XCTAssertNil(f.auth.cachedSession(login.session), "a new session is not held before it is read")
        let fromDatabase = try f.auth.session(login.session)
        let before = f.store.sessionCacheStatistics
        XCTAssertEqual(f.auth.cachedSession(login.session), fromDatabase)
        XCTAssertEqual(f.store.sessionCacheStatistics.hits, before.hits + 1)
        XCTAssertEqual(f.store.sessionCacheStatistics.entries, 1)
        XCTAssertEqual(fromDatabase.user.email, "ann@example.com")
        XCTAssertNil(f.auth.cachedSession("not-a-session"))
        XCTAssertNil(f.auth.cachedSession(login.session, ip: "not an ip"), "a bad ip is left to session(), which refuses it")
        XCTAssertNotNil(f.auth.cachedSession(login.session, ip: "2001:db8::1"))
    }

    func testLogoutEndsTheCachedSessionAtOnce() throws {
        let f = try fixture()
        let login = try login("ann@example.com", f.auth, f.sealer, f.store, clock: f.clock)
        let other = try self.login("bob@example.com", f.auth, f.sealer, f.store, clock: f.clock)
        _ = try f.auth.session(login.session)
        _ = try f.auth.session(other.session)
        try f.auth.logout(login.session)
        XCTAssertNil(f.auth.cachedSession(login.session))
        XCTAssertThrowsError(try f.auth.session(login.session))
        XCTAssertNil(f.auth.cachedSession(login.session), "a dead session is never filled")
        XCTAssertNotNil(f.auth.cachedSession(other.session), "only that session was dropped")
    }

    func testLogoutAllAndRevocationEndCachedSessions() throws {
        let f = try fixture()
        let first = try login("ann@example.com", f.auth, f.sealer, f.store, clock: f.clock)
        f.clock.value += 1
        let second = try login("ann@example.com", f.auth, f.sealer, f.store, clock: f.clock)
        let third = try login("cy@example.com", f.auth, f.sealer, f.store, clock: f.clock)
        for login in [first, second, third] { _ = try f.auth.session(login.session) }
        XCTAssertEqual(try f.auth.logoutAll(userID: first.user.id), 2)
        XCTAssertNil(f.auth.cachedSession(first.session))
        XCTAssertNil(f.auth.cachedSession(second.session))
        XCTAssertNotNil(f.auth.cachedSession(third.session))

        let handle = hex(Secret.hash(of: third.session).prefix(6))
        XCTAssertEqual(try f.store.revokeSession(handle: handle, liveAt: f.clock.now()), .revoked)
        XCTAssertNil(f.auth.cachedSession(third.session))
        XCTAssertThrowsError(try f.auth.session(third.session))
    }

    /// Expiry is the caller's clock against the row's times; a touch due goes to the database
    /// (a write), which drops the old entry; the next read holds the new idle expiry.
    func testExpiryAndTouchAreNeverAnsweredFromMemory() throws {
        let f = try fixture(touchInterval: 60)
        let login = try login("ann@example.com", f.auth, f.sealer, f.store, clock: f.clock)
        let before = try f.auth.session(login.session)
        XCTAssertNotNil(f.auth.cachedSession(login.session))
        f.clock.value += 60
        XCTAssertNil(f.auth.cachedSession(login.session), "touch due")
        let touched = try f.auth.session(login.session)
        XCTAssertGreaterThan(touched.idleExpiresAt, before.idleExpiresAt)
        XCTAssertNil(f.auth.cachedSession(login.session), "the touch dropped the entry")
        XCTAssertEqual(try f.auth.session(login.session), touched)
        XCTAssertEqual(f.auth.cachedSession(login.session), touched)

        f.clock.value = touched.expiresAt
        XCTAssertNil(f.auth.cachedSession(login.session), "expired")
        XCTAssertThrowsError(try f.auth.session(login.session))
    }

    /// An admin's sqlite3 (another connection) deletes the row: from the very next lookup the
    /// cache is shut, and after reconciling it holds nothing the other connection may have changed.
    func testAnotherConnectionsCommitShutsTheCache() throws {
        let f = try fixture()
        let login = try login("ann@example.com", f.auth, f.sealer, f.store, clock: f.clock)
        let other = try self.login("bob@example.com", f.auth, f.sealer, f.store, clock: f.clock)
        _ = try f.auth.session(login.session)
        _ = try f.auth.session(other.session)
        let outsider = try Connection(path: path)
        try outsider.run("DELETE FROM sessions WHERE id_hash = ?", [.blob(Secret.hash(of: login.session))])
        XCTAssertNil(f.auth.cachedSession(login.session))
        XCTAssertNil(f.auth.cachedSession(other.session), "shut until reconciled")
        XCTAssertThrowsError(try f.auth.session(login.session))
        XCTAssertNil(f.auth.cachedSession(login.session))
        XCTAssertNil(f.auth.cachedSession(other.session), "another connection's commit drops everything")
        _ = try f.auth.session(other.session)
        XCTAssertNotNil(f.auth.cachedSession(other.session), "open again once reconciled")

        // Changing a user's address elsewhere: the cached answer would carry the old one.
        try outsider.run("UPDATE users SET email = 'robert@example.com' WHERE id = ?", [.text(other.user.id)])
        XCTAssertNil(f.auth.cachedSession(other.session))
        XCTAssertEqual(try f.auth.session(other.session).user.email, "robert@example.com")
        XCTAssertEqual(f.auth.cachedSession(other.session)?.user.email, "robert@example.com")
    }

    /// This process's own commits that touch no session (starts, mail) leave entries usable; a
    /// change to a user through the writer drops them all.
    func testOwnCommitsOnlyDropWhatTheyChange() throws {
        let f = try fixture()
        let login = try login("ann@example.com", f.auth, f.sealer, f.store, clock: f.clock)
        _ = try f.auth.session(login.session)
        _ = try f.auth.start(StartRequest(email: "dee@example.com", ip: "192.0.2.9"))
        XCTAssertNotNil(f.auth.cachedSession(login.session), "a start changes no session")
        try f.store.write { tx in
            try (tx as! Transaction).connection.run("UPDATE users SET email = 'annie@example.com' WHERE id = ?", [.text(login.user.id)])
        }
        XCTAssertNil(f.auth.cachedSession(login.session))
        XCTAssertEqual(try f.auth.session(login.session).user.email, "annie@example.com")
    }

    /// A read that began before a revocation must not put the session back.
    func testAFillFromBeforeADropIsRefused() throws {
        let f = try fixture()
        let cache = try XCTUnwrap(f.store.sessionCache)
        let hash = [UInt8](repeating: 7, count: 32)
        let entry = CachedSession(userID: "u", email: "u@example.com", appID: "default", expiresAt: start + 100,
                                  idleExpiresAt: start + 100, touchedAt: start)
        let taken = cache.fillGeneration()
        cache.reconcile(state: cache.counterState, external: false, everything: false, changed: [hash])
        cache.fill(hash, entry, generation: taken)
        XCTAssertNil(cache.lookup(hash))
        cache.fill(hash, entry, generation: cache.fillGeneration())
        XCTAssertEqual(cache.lookup(hash), entry)
        // A reconciliation that drops nothing leaves fills in flight alone.
        let quiet = cache.fillGeneration()
        cache.reconcile(state: cache.counterState, external: false, everything: false, changed: [])
        XCTAssertEqual(quiet, cache.fillGeneration())
    }

    func testCapacityBoundsTheEntries() throws {
        let f = try fixture(capacity: 3)
        let cache = try XCTUnwrap(f.store.sessionCache)
        var hashes: [[UInt8]] = []
        for index in 0..<10 {
            let hash = [UInt8](repeating: UInt8(index), count: 32)
            hashes.append(hash)
            cache.fill(hash, CachedSession(userID: "u\(index)", email: "u@example.com", appID: "default", expiresAt: start + 100,
                                           idleExpiresAt: start + 100, touchedAt: start), generation: cache.fillGeneration())
        }
        XCTAssertEqual(cache.count, 3)
        XCTAssertEqual(hashes.filter { cache.lookup($0) != nil }.count, 3)
        XCTAssertNotNil(cache.lookup(hashes[9]), "the newest is always kept")
    }

    /// A user's strings are held once for all their cached sessions, answered right for each,
    /// and let go with the last one (by eviction, by a drop, or by everything at once).
    func testSessionsOfOneUserShareItAndReleaseIt() throws {
        let f = try fixture(capacity: 4)
        let cache = try XCTUnwrap(f.store.sessionCache)
        func session(_ user: String, _ expires: Int64) -> CachedSession {
            CachedSession(userID: user, email: "\(user)@example.com", appID: "default", expiresAt: start + expires,
                          idleExpiresAt: start + expires, touchedAt: start)
        }
        func hash(_ n: UInt8) -> [UInt8] { [UInt8](repeating: n, count: 32) }
        cache.fill(hash(1), session("ann", 10), generation: cache.fillGeneration())
        cache.fill(hash(2), session("ann", 20), generation: cache.fillGeneration())
        cache.fill(hash(3), session("bob", 30), generation: cache.fillGeneration())
        XCTAssertEqual(cache.count, 3)
        XCTAssertEqual(cache.userCount, 2)
        XCTAssertEqual(cache.lookup(hash(1)), session("ann", 10))
        XCTAssertEqual(cache.lookup(hash(2)), session("ann", 20))
        XCTAssertEqual(cache.lookup(hash(3)), session("bob", 30))

        // Refilled with a newer row: same user, new times.
        cache.fill(hash(2), session("ann", 25), generation: cache.fillGeneration())
        XCTAssertEqual(cache.lookup(hash(2)), session("ann", 25))
        XCTAssertEqual(cache.lookup(hash(1)), session("ann", 10))
        XCTAssertEqual(cache.userCount, 2)

        // Dropping one of ann's sessions keeps her; dropping both lets her go.
        cache.reconcile(state: cache.counterState, external: false, everything: false, changed: [hash(1)])
        XCTAssertNil(cache.lookup(hash(1)))
        XCTAssertEqual(cache.userCount, 2)
        cache.reconcile(state: cache.counterState, external: false, everything: false, changed: [hash(2)])
        XCTAssertEqual(cache.userCount, 1)
        XCTAssertEqual(cache.lookup(hash(3)), session("bob", 30))

        // A freed user's slot is reused, and eviction releases users too.
        for n in UInt8(10)..<UInt8(30) { cache.fill(hash(n), session("u\(n)", Int64(n)), generation: cache.fillGeneration()) }
        XCTAssertEqual(cache.count, 4)
        XCTAssertEqual(cache.userCount, 4)
        for n in UInt8(10)..<UInt8(30) {
            if let held = cache.lookup(hash(n)) { XCTAssertEqual(held, session("u\(n)", Int64(n))) }
        }
        cache.reconcile(state: cache.counterState, external: true, everything: false, changed: [])
        XCTAssertEqual(cache.count, 0)
        XCTAssertEqual(cache.userCount, 0)
    }

    /// The event loop's look-up hands out the user's id and email as the bytes of one block:
    /// the same as `lookup`'s strings (multi-byte UTF-8 too), with the same `usable` decision
    /// and the same hit and miss counts, for users shared by sessions and after a user's slot
    /// is reused.
    func testTheBytesLookUpAgreesWithTheStringOne() throws {
        let f = try fixture(capacity: 8)
        let cache = try XCTUnwrap(f.store.sessionCache)
        func session(_ user: String, _ email: String, _ expires: Int64) -> CachedSession {
            CachedSession(userID: user, email: email, appID: "default", expiresAt: start + expires, idleExpiresAt: start + expires - 1,
                          touchedAt: start)
        }
        func hash(_ n: UInt8) -> SecretHash { SecretHash([UInt8](repeating: n, count: 32))! }
        func held(_ n: UInt8, appID: String = "default") -> CachedSession? {
            var found: CachedSession?
            let answered = cache.withSession(hash(n), usable: { $0.appID == appID }) { bytes in
                found = CachedSession(userID: String(decoding: bytes.userID, as: UTF8.self), email: String(decoding: bytes.email, as: UTF8.self),
                                      appID: appID, expiresAt: bytes.expiresAt, idleExpiresAt: bytes.idleExpiresAt, touchedAt: start)
            }
            XCTAssertEqual(answered, found != nil)
            return found
        }
        let ann = session("7f1c-ann", "anna.müller@exämple.de", 10)
        let annAgain = session("7f1c-ann", "anna.müller@exämple.de", 20)
        let bob = session("bob", "b@example.com", 30)
        cache.fill(hash(1).bytes, ann, generation: cache.fillGeneration())
        cache.fill(hash(2).bytes, annAgain, generation: cache.fillGeneration())
        cache.fill(hash(3).bytes, bob, generation: cache.fillGeneration())
        XCTAssertEqual(cache.userCount, 2)
        let before = cache.statistics
        XCTAssertEqual(held(1), ann)
        XCTAssertEqual(held(2), annAgain)
        XCTAssertEqual(held(3), bob)
        XCTAssertEqual(held(3), cache.lookup(hash(3).bytes))
        XCTAssertNil(held(4), "not held")
        XCTAssertNil(held(1, appID: "other"), "not usable")
        let after = cache.statistics
        XCTAssertEqual(after.hits - before.hits, 5)
        XCTAssertEqual(after.misses - before.misses, 2)

        XCTAssertEqual(cache.lookup(hash(1).bytes), ann, "the string look-up decodes the same block")

        // Ids that share a prefix are different users; a session refilled for another user
        // answers as that user.
        cache.fill(hash(6).bytes, session("ab", "ab@example.com", 50), generation: cache.fillGeneration())
        cache.fill(hash(7).bytes, session("abc", "abc@example.com", 60), generation: cache.fillGeneration())
        XCTAssertEqual(held(6), session("ab", "ab@example.com", 50))
        XCTAssertEqual(held(7), session("abc", "abc@example.com", 60))
        XCTAssertEqual(cache.userCount, 4)
        cache.fill(hash(7).bytes, session("ab", "ab@example.com", 70), generation: cache.fillGeneration())
        XCTAssertEqual(held(7), session("ab", "ab@example.com", 70))
        XCTAssertEqual(cache.userCount, 3, "abc went with its last session")
        cache.reconcile(state: cache.counterState, external: false, everything: false, changed: [hash(6).bytes, hash(7).bytes])

        // Ann's sessions go, her slot is reused by someone else, and each answers as itself.
        cache.reconcile(state: cache.counterState, external: false, everything: false, changed: [hash(1).bytes, hash(2).bytes])
        XCTAssertEqual(cache.userCount, 1)
        let cy = session("cy", "", 40)
        cache.fill(hash(5).bytes, cy, generation: cache.fillGeneration())
        XCTAssertEqual(held(5), cy, "an empty email is still an email")
        XCTAssertEqual(held(3), bob)
        XCTAssertNil(held(1))
        XCTAssertEqual(cache.userCount, 2)
    }

    /// The table behind the cache (open addressing, entries moved on removal) against a plain
    /// dictionary, through 20,000 random fills and drops (some keys crowding into a few home
    /// slots at the end of the table), then eviction at capacity.
    func testTheEntryTableAgreesWithADictionary() throws {
        let f = try fixture(capacity: 5_000)
        let cache = try XCTUnwrap(f.store.sessionCache)
        let seed = UInt64.random(in: 1...UInt64.max)
        var generator = XorShift(seed)
        // One key in ten crowds into the last 8 slots of any table (4 of them, n being even).
        func hash(_ n: Int) -> [UInt8] { crowdingHash(n, crowdEvery: 10, intoLast: 8) }
        func session(_ n: Int, _ version: Int) -> CachedSession {
            CachedSession(userID: "u\(n % 50)", email: "u\(n % 50)@example.com", appID: "default",
                          expiresAt: start + Int64(version), idleExpiresAt: start + 1, touchedAt: start)
        }
        var model: [Int: CachedSession] = [:]
        for step in 0..<20_000 {
            let n = Int.random(in: 0..<3_000, using: &generator)
            if Bool.random(using: &generator) {
                cache.fill(hash(n), session(n, step), generation: cache.fillGeneration())
                model[n] = session(n, step)
            } else {
                cache.reconcile(state: cache.counterState, external: false, everything: false, changed: [hash(n)])
                model[n] = nil
            }
        }
        XCTAssertEqual(cache.count, model.count, "seed \(seed)")
        XCTAssertEqual(cache.userCount, Set(model.values.map(\.userID)).count)
        for n in 0..<3_000 { XCTAssertEqual(cache.lookup(hash(n)), model[n], "key \(n), seed \(seed)") }

        let small = try XCTUnwrap(try fixture(capacity: 100, touchInterval: 60).store.sessionCache)
        for n in 0..<3_000 { small.fill(hash(n), session(n, n), generation: small.fillGeneration()) }
        XCTAssertEqual(small.count, 100)
        XCTAssertEqual((0..<3_000).filter { small.lookup(hash($0)) != nil }.count, 100)
        XCTAssertEqual(small.lookup(hash(2_999)), session(2_999, 2_999))
    }

    func testCapacityZeroKeepsNothing() throws {
        let f = try fixture(capacity: 0)
        XCTAssertNil(f.store.sessionCache)
        let login = try login("ann@example.com", f.auth, f.sealer, f.store, clock: f.clock)
        _ = try f.auth.session(login.session)
        XCTAssertNil(f.auth.cachedSession(login.session))
    }

    /// Readers filling the cache while sessions are revoked: once a logout has returned, the
    /// session is never answered from memory again, whatever the readers were doing.
    func testConcurrentReadersNeverBringARevokedSessionBack() throws {
        let f = try fixture(capacity: 10_000)
        var sessions: [String] = []
        for index in 0..<40 {
            sessions.append(try login("user\(index)@example.com", f.auth, f.sealer, f.store, clock: f.clock).session)
        }
        let revoked = Results()
        let stop = Flag()
        let auth = f.auth
        let all = sessions
        let readers = DispatchGroup()
        for reader in 0..<4 {
            DispatchQueue.global().async(group: readers) {
                var index = reader
                while !stop.isSet {
                    _ = try? auth.session(all[index % all.count])
                    index += 1
                }
            }
        }
        for session in sessions.shuffled() {
            try f.auth.logout(session)
            revoked.add(session)
            for gone in revoked.all {
                XCTAssertNil(f.auth.cachedSession(gone), "revoked, yet answered from memory")
            }
        }
        stop.set()
        readers.wait()
        for session in sessions {
            XCTAssertNil(f.auth.cachedSession(session))
        }
    }

    /// Eviction, drops and full resets at every capacity from 1 up, with users shared among
    /// sessions and keys that crowd the end of the table (probes wrap): every held session is
    /// its newest fill, the bytes look-up agrees with the string one, and each user is held
    /// exactly while one of their sessions is. (Sessions point at their user's block without
    /// holding it: a user let go too early would be read after it is freed.)
    func testEvictionAndDropsKeepEveryUserHeldExactlyWhileUsed() throws {
        let seed = UInt64.random(in: 1...UInt64.max)
        var generator = XorShift(seed)
        func hash(_ n: Int) -> [UInt8] { crowdingHash(n, crowdEvery: 5, intoLast: 16) }
        // A user's email and app are the same in every fill (a changed user row drops everything).
        func session(user: Int, version: Int) -> CachedSession {
            CachedSession(userID: "user-\(user)", email: "user-\(user)-\(String(repeating: "x", count: user % 7))@example.com",
                          appID: "app\(user % 3)", expiresAt: Int64(version), idleExpiresAt: Int64(version) + 1, touchedAt: 0)
        }
        for capacity in [1, 2, 3, 7, 64, 600, 5_000] {
            let f = try fixture(capacity: capacity)
            let cache = try XCTUnwrap(f.store.sessionCache)
            var model: [Int: CachedSession] = [:]
            func verify(_ step: Int) {
                var held = 0
                var users = Set<String>()
                for n in 0..<1_500 {
                    guard let got = cache.lookup(hash(n)) else { continue }
                    XCTAssertEqual(got, model[n], "seed \(seed) capacity \(capacity) step \(step) key \(n)")
                    held += 1
                    users.insert(got.userID)
                    var viaBytes: (String, String)?
                    _ = cache.withSession(SecretHash(hash(n))!, usable: { $0.appID == got.appID }) { bytes in
                        viaBytes = (String(decoding: bytes.userID, as: UTF8.self), String(decoding: bytes.email, as: UTF8.self))
                    }
                    XCTAssertEqual(viaBytes?.0, got.userID, "seed \(seed)")
                    XCTAssertEqual(viaBytes?.1, got.email, "seed \(seed)")
                }
                XCTAssertEqual(held, cache.count, "seed \(seed) capacity \(capacity) step \(step)")
                XCTAssertLessThanOrEqual(held, capacity)
                XCTAssertEqual(users.count, cache.userCount, "seed \(seed) capacity \(capacity) step \(step)")
            }
            for step in 0..<20_000 {
                let n = Int.random(in: 0..<1_500, using: &generator)
                let roll = Int.random(in: 0..<1_000, using: &generator)
                if roll < 600 {
                    let filled = session(user: Int.random(in: 0..<40, using: &generator), version: step)
                    cache.fill(hash(n), filled, generation: cache.fillGeneration())
                    model[n] = filled
                } else if roll < 995 {
                    cache.reconcile(state: cache.counterState, external: false, everything: false, changed: [hash(n)])
                    model[n] = nil
                } else {
                    cache.reconcile(state: cache.counterState, external: true, everything: false, changed: [])
                    model.removeAll()
                }
                if step % 2_000 == 0 { verify(step) }
            }
            verify(-1)
        }
    }

    /// With room for one session, a new session of the same user evicts the old one and keeps
    /// the user; a session refilled for another user lets the first go.
    func testACapacityOfOneEvictsASessionOfTheSameUserAndKeepsTheUser() throws {
        let f = try fixture(capacity: 1)
        let cache = try XCTUnwrap(f.store.sessionCache)
        func session(_ user: String, _ expiresAt: Int64) -> CachedSession {
            CachedSession(userID: user, email: "\(user)@example.com", appID: "default", expiresAt: expiresAt,
                          idleExpiresAt: expiresAt, touchedAt: 0)
        }
        let (one, two, three) = ([UInt8](repeating: 1, count: 32), [UInt8](repeating: 2, count: 32), [UInt8](repeating: 3, count: 32))
        cache.fill(one, session("ann", 1), generation: cache.fillGeneration())
        cache.fill(two, session("ann", 2), generation: cache.fillGeneration())
        XCTAssertEqual(cache.count, 1)
        XCTAssertEqual(cache.userCount, 1)
        XCTAssertNil(cache.lookup(one))
        XCTAssertEqual(cache.lookup(two), session("ann", 2))
        cache.fill(two, session("bob", 3), generation: cache.fillGeneration())
        XCTAssertEqual(cache.userCount, 1, "ann went with her last session")
        XCTAssertEqual(cache.lookup(two), session("bob", 3))
        cache.fill(three, session("bob", 4), generation: cache.fillGeneration())
        XCTAssertEqual(cache.lookup(three), session("bob", 4))
        XCTAssertEqual(cache.userCount, 1)
    }
}

final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}

/// A seeded generator, so that a failure of a randomized test can be replayed from its seed.
/// A distinct session hash for key `n` (n < 65,536). Its first word is its home slot: one key in
/// `crowdEvery` crowds into the last `intoLast` slots of any table, so that probes wrap around;
/// the others spread out.
func crowdingHash(_ n: Int, crowdEvery: Int, intoLast: Int) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: 32)
    let word = n % crowdEvery == 0 ? UInt64.max - UInt64(n % intoLast) : UInt64(n) &* 0x9E37_79B9_7F4A_7C15
    withUnsafeBytes(of: word.littleEndian) { bytes.replaceSubrange(0..<8, with: $0) }
    bytes[8] = UInt8(n & 0xFF)
    bytes[9] = UInt8(n >> 8)
    return bytes
}

struct XorShift: RandomNumberGenerator {
    private var state: UInt64
    init(_ seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
}
