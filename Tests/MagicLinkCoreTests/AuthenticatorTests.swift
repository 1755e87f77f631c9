import Foundation
@testable import MagicLinkCore
import XCTest

final class AuthenticatorTests: XCTestCase {
    var time: ManualTime!
    var store: InMemoryStore!
    var sealer: TokenSealer!
    var auth: Authenticator!

    override func setUp() {
        time = ManualTime()
        store = InMemoryStore()
        sealer = TokenSealer(keyBytes: [UInt8](repeating: 7, count: 32))!
        auth = makeAuthenticator()
    }

    func makeAuthenticator(_ adjust: (inout AuthPolicy) -> Void = { _ in }) -> Authenticator {
        var policy = AuthPolicy(callbackURL: "https://app.example.com/auth/callback",
                                redirects: try! RedirectPolicy(allowedOrigins: ["https://app.example.com"]))
        policy.addressCooldown = 0  // these tests start twice for one address on purpose
        adjust(&policy)
        return Authenticator(policy: policy, store: store, sealer: sealer, time: time, random: CountingRandom())
    }

    /// Starts a login and returns the token, recovered from the queued mail as the worker would.
    func startAndGetToken(_ email: String, redirect: String? = nil, ip: String? = nil) throws -> String {
        let started = try auth.start(StartRequest(email: email, redirect: redirect, ip: ip))
        let mail = try XCTUnwrap(store.state.mail.last)
        let token = try XCTUnwrap(secrets(of: mail)).token
        flows[token] = started.flow
        return token
    }

    /// start → mail → callback in the browser that asked.
    func sameBrowserLogin(_ email: String) throws -> LoginResult {
        let token = try startAndGetToken(email)
        return try auth.callback(token: token, flow: flows[token])
    }

    /// The flow `start` gave the browser for each token (same-browser callbacks pass it back).
    var flows: [String: String] = [:]

    func secrets(of mail: QueuedMail) -> MailSecrets? {
        sealer.open(mail.sealedToken, messageID: mail.messageID).flatMap(MailSecrets.init(payload:))
    }

    func assertAuthError<T>(_ expected: AuthError, _ body: @autoclosure () throws -> T, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            XCTAssertEqual(error as? AuthError, expected, file: file, line: line)
        }
    }

    func testUserIDsAreVersion4UUIDs() {
        XCTAssertEqual(Authenticator.uuid(Array(0..<16)), "00010203-0405-4607-8809-0a0b0c0d0e0f")
        XCTAssertEqual(Authenticator.uuid([UInt8](repeating: 0xFF, count: 16)), "ffffffff-ffff-4fff-bfff-ffffffffffff")
        XCTAssertEqual(Authenticator.uuid([UInt8](repeating: 0, count: 16)), "00000000-0000-4000-8000-000000000000")
    }

    /// Message ids are 32 hex digits that sort by creation time (the queue's index grows at
    /// its end), and still differ within one second.
    func testMessageIDsGrowWithTimeAndDiffer() throws {
        _ = try auth.start(StartRequest(email: "a@example.com"))
        _ = try auth.start(StartRequest(email: "b@example.com"))
        time.advance(1)
        _ = try auth.start(StartRequest(email: "c@example.com"))
        let ids = store.state.mail.map { String($0.messageID.prefix { $0 != "@" }) }
        XCTAssertEqual(ids.count, 3)
        for id in ids { XCTAssertTrue(id.utf8.count == 32 && id.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }, id) }
        XCTAssertEqual(Set(ids).count, 3)
        XCTAssertEqual(ids[0].prefix(16), ids[1].prefix(16), "this test's clock only knows seconds")
        XCTAssertLessThan(ids[1], ids[2])
        XCTAssertLessThan(ids[0], ids[2])
        XCTAssertEqual(Authenticator.messageIDLocalPart(atMicroseconds: 0x0102_0304_0506_0708, random: Array(repeating: 0xAB, count: 8)),
                       "0102030405060708" + String(repeating: "ab", count: 8))
        // The real clock: ids of one second still come out in order.
        let clock = SystemTime()
        let micros = (0..<100).map { _ in clock.nowMicroseconds() }
        XCTAssertEqual(micros, micros.sorted())
        XCTAssertEqual(micros[0] / 1_000_000, clock.now(), accuracy: 1)
    }

    func testStartQueuesOneSealedMailAndStoresOnlyTheHash() throws {
        let result = try auth.start(StartRequest(email: "Alice@Example.COM", ip: "192.0.2.1"))
        XCTAssertEqual(result.expiresAt, time.now() + 600)
        XCTAssertEqual(store.state.mail.count, 1)
        let mail = store.state.mail[0]
        XCTAssertEqual(mail.recipient, "Alice@example.com")
        XCTAssertEqual(mail.expiresAt, result.expiresAt)
        XCTAssertTrue(mail.messageID.hasSuffix("@localhost"))
        let token = try XCTUnwrap(secrets(of: mail)).token
        XCTAssertTrue(Secret.isWellFormed(token))
        XCTAssertNil(sealer.open(mail.sealedToken, messageID: "other@localhost"), "sealed token is bound to its message")
        XCTAssertFalse(mail.sealedToken.containsSubsequence(Array(token.utf8)))
        let record = try XCTUnwrap(store.state.tokens.values.first)
        XCTAssertEqual(record.hash, Secret.hash(of: token))
        XCTAssertEqual(record.emailKey, "alice@example.com")
        XCTAssertEqual(record.redirect, "/")
    }

    func testCooldownBetweenStartsForOneAddress() throws {
        let auth = makeAuthenticator { $0.addressCooldown = 60 }
        _ = try auth.start(StartRequest(email: "cool@example.com"))
        time.advance(20)
        assertAuthError(.rateLimited(retryAfterSeconds: 40), try auth.start(StartRequest(email: "COOL@example.com")))
        XCTAssertNoThrow(try auth.start(StartRequest(email: "other@example.com")))
        time.advance(40)
        XCTAssertNoThrow(try auth.start(StartRequest(email: "cool@example.com")))
    }

    func testGlobalBudgetCountsEveryAddress() throws {
        let auth = makeAuthenticator { $0.globalSendBudget = RateLimit(maximum: 2, window: 100) }
        _ = try auth.start(StartRequest(email: "g1@example.com"))
        time.advance(10)
        _ = try auth.start(StartRequest(email: "g2@example.com"))
        assertAuthError(.rateLimited(retryAfterSeconds: 90), try auth.start(StartRequest(email: "g3@example.com")))
        XCTAssertEqual(store.state.mail.count, 2)
    }

    func testLinkIsBuiltFromConfigurationOnly() {
        XCTAssertEqual(auth.policy.link(for: "T"), "https://app.example.com/auth/callback?token=T")
        let withQuery = makeAuthenticator { $0.callbackURL = "https://app.example.com/cb?app=1" }
        XCTAssertEqual(withQuery.policy.link(for: "T"), "https://app.example.com/cb?app=1&token=T")
    }

    func testCallbackCreatesUserAndSessionOnce() throws {
        let token = try startAndGetToken("bob@example.com", redirect: "/account")
        time.advance(5)
        let login = try auth.callback(token: token, flow: flows[token], ip: "192.0.2.1", userAgent: "UA")
        XCTAssertTrue(login.createdUser)
        XCTAssertEqual(login.user.email, "bob@example.com")
        XCTAssertEqual(login.redirect, "/account")
        XCTAssertEqual(login.expiresAt, time.now() + 30 * 86_400)
        XCTAssertEqual(login.idleExpiresAt, time.now() + 7 * 86_400)
        XCTAssertTrue(Secret.isWellFormed(login.session))
        XCTAssertNotNil(store.state.sessions[Secret.hash(of: login.session)])
        assertAuthError(.invalidToken(.used), try auth.callback(token: token, flow: flows[token]))

        // Second login of the same address (other case): same user id, no new user.
        let again = try startAndGetToken("BOB@example.com")
        let second = try auth.callback(token: again, flow: flows[again])
        XCTAssertFalse(second.createdUser)
        XCTAssertEqual(second.user.id, login.user.id)
        XCTAssertEqual(second.user.email, "bob@example.com", "email stays as first seen")
        XCTAssertNotEqual(second.session, login.session)
    }

    /// The suspending entry points (the daemon's) do what the blocking ones do: the same mail,
    /// session, refusals, and failures counted against the IP.
    func testSuspendingEntryPointsDoTheSameWork() async throws {
        auth = makeAuthenticator { $0.failuresPerIP = RateLimit(maximum: 2, window: 60) }
        let started = try await auth.start(StartRequest(email: "zoe@example.com", redirect: "/here", send: .both))
        let mail = try XCTUnwrap(store.state.mail.last)
        let mailed = try XCTUnwrap(secrets(of: mail))
        XCTAssertEqual(started.messageID, mail.messageID)
        XCTAssertTrue(started.mailed)

        let login = try await auth.callback(token: mailed.token, flow: started.flow, ip: "192.0.2.9")
        XCTAssertEqual(login.user.email, "zoe@example.com")
        XCTAssertEqual(login.redirect, "/here")
        XCTAssertNotNil(store.state.sessions[Secret.hash(of: login.session)])
        do {
            _ = try await auth.callback(token: mailed.token, flow: started.flow, ip: "192.0.2.9")
            XCTFail("a used link logged in again")
        } catch {
            XCTAssertEqual(error as? AuthError, .invalidToken(.used))
        }

        let again = try await auth.start(StartRequest(email: "zoe@example.com", send: .code))
        let code = try XCTUnwrap(secrets(of: try XCTUnwrap(store.state.mail.last))?.code)
        let wrong = code == "000000" ? "111111" : "000000"
        do {
            _ = try await auth.verifyCode(flow: again.flow, code: wrong, ip: "192.0.2.9")
            XCTFail("a wrong code logged in")
        } catch {
            XCTAssertEqual(error as? AuthError, .invalidCode(attemptsLeft: AuthPolicy.codeAttempts - 1))
        }
        // Two failures from 192.0.2.9 now: the IP is throttled, even with the right code.
        do {
            _ = try await auth.verifyCode(flow: again.flow, code: code, ip: "192.0.2.9")
            XCTFail("a throttled IP logged in")
        } catch {
            guard case .rateLimited = error as? AuthError else { return XCTFail("\(error)") }
        }
        let byCode = try await auth.verifyCode(flow: again.flow, code: code, ip: "192.0.2.10")
        XCTAssertEqual(byCode.user.id, login.user.id)
        // Every write went through the store's suspending entry: two starts, two callbacks (one
        // refused in its transaction), two code checks (the throttled one never reached it).
        XCTAssertEqual(store.state.suspendedWrites, 6)
    }

    func testTokenRejectionReasons() throws {
        assertAuthError(.invalidToken(.unknown), try auth.callback(token: "short"))
        assertAuthError(.invalidToken(.unknown), try auth.callback(token: String(repeating: "A", count: 43)))
        let token = try startAndGetToken("carol@example.com")
        time.advance(600)
        assertAuthError(.invalidToken(.expired), try auth.callback(token: token, flow: flows[token]))
    }

    func testNewerStartSupersedesOlderUnusedTokens() throws {
        let first = try startAndGetToken("dave@example.com")
        let second = try startAndGetToken("Dave@example.com")
        assertAuthError(.invalidToken(.expired), try auth.callback(token: first, flow: flows[first]))
        XCTAssertNoThrow(try auth.callback(token: second, flow: flows[second]))
    }

    func testRejectedCallbackLeavesNoTrace() throws {
        let token = try startAndGetToken("erin@example.com")
        time.advance(601)
        let writesBefore = store.state.writes
        assertAuthError(.invalidToken(.expired), try auth.callback(token: token, flow: flows[token]))
        XCTAssertEqual(store.state.writes, writesBefore, "a refused callback commits nothing")
        XCTAssertTrue(store.state.users.isEmpty)
        XCTAssertTrue(store.state.sessions.isEmpty)
    }

    func testInvalidEmailAndRedirectQueueNothing() {
        assertAuthError(.redirectNotAllowed(reason: "x"), try auth.start(StartRequest(email: "a@example.com", redirect: "//evil.com")), ignoringReason: true)
        XCTAssertThrowsError(try auth.start(StartRequest(email: "a@b.com\r\nBcc: x@y.com"))) { error in
            guard case .invalidEmail? = error as? AuthError else { return XCTFail("got \(error)") }
        }
        XCTAssertThrowsError(try auth.start(StartRequest(email: "a@example.com", ip: "not-an-ip"))) { error in
            guard case .invalidField(let field, _)? = error as? AuthError else { return XCTFail("got \(error)") }
            XCTAssertEqual(field, "params.ip")
        }
        XCTAssertTrue(store.state.mail.isEmpty)
        XCTAssertTrue(store.state.tokens.isEmpty)
    }

    func assertAuthError<T>(_ expected: AuthError, _ body: @autoclosure () throws -> T, ignoringReason: Bool, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            switch (error as? AuthError, expected) {
            case (.redirectNotAllowed?, .redirectNotAllowed), (.invalidEmail?, .invalidEmail): break
            default: XCTFail("expected \(expected), got \(error)", file: file, line: line)
            }
        }
    }

    func testPerAddressRateLimitSlidesAndReportsRetryAfter() throws {
        for _ in 0..<5 {
            _ = try auth.start(StartRequest(email: "frank@example.com"))
            time.advance(10)
        }
        // 5 starts at t0, t0+10 … t0+40; now t0+50. The first leaves the hour's window at t0+3600.
        assertAuthError(.rateLimited(retryAfterSeconds: 3_550), try auth.start(StartRequest(email: "FRANK@example.com")))
        XCTAssertEqual(store.state.mail.count, 5, "nothing queued when limited")
        time.advance(3_550)
        XCTAssertNoThrow(try auth.start(StartRequest(email: "frank@example.com")))
    }

    func testPerIPRateLimit() throws {
        auth = makeAuthenticator { $0.startPerIP = RateLimit(maximum: 3, window: 3_600) }
        for n in 0..<3 { _ = try auth.start(StartRequest(email: "u\(n)@example.com", ip: "198.51.100.7")) }
        assertAuthError(.rateLimited(retryAfterSeconds: 3_600), try auth.start(StartRequest(email: "u9@example.com", ip: "198.51.100.7")))
        XCTAssertNoThrow(try auth.start(StartRequest(email: "u9@example.com", ip: "198.51.100.8")))
        XCTAssertNoThrow(try auth.start(StartRequest(email: "u10@example.com")), "without ip only the per-address limit applies")
    }

    func testIPv6LimitedPerSlash64() throws {
        auth = makeAuthenticator { $0.startPerIP = RateLimit(maximum: 1, window: 3_600) }
        _ = try auth.start(StartRequest(email: "v1@example.com", ip: "2001:db8:1:2::1"))
        XCTAssertThrowsError(try auth.start(StartRequest(email: "v2@example.com", ip: "2001:db8:1:2:ffff::9")))
        XCTAssertNoThrow(try auth.start(StartRequest(email: "v3@example.com", ip: "2001:db8:1:3::1")))
    }

    func testSessionIdleExpiryWritesAtMostOncePerInterval() throws {
        auth = makeAuthenticator { $0.sessionIdleTTL = 100; $0.sessionTTL = 1_000 }
        let login = try sameBrowserLogin("gina@example.com")
        let writes = store.state.writes
        time.advance(30)
        let early = try auth.session(login.session)
        XCTAssertEqual(early.idleExpiresAt, login.idleExpiresAt, "no write within the touch interval")
        XCTAssertEqual(store.state.writes, writes)
        time.advance(31)
        let later = try auth.session(login.session)
        XCTAssertEqual(later.idleExpiresAt, time.now() + 100)
        XCTAssertEqual(store.state.writes, writes + 1)
        time.advance(99)
        XCTAssertNoThrow(try auth.session(login.session))
        time.advance(101)
        assertAuthError(.invalidSession, try auth.session(login.session))
    }

    func testSessionAbsoluteExpiryCapsIdleExpiry() throws {
        auth = makeAuthenticator { $0.sessionIdleTTL = 100; $0.sessionTTL = 150; $0.sessionTouchInterval = 0 }
        let login = try sameBrowserLogin("hank@example.com")
        time.advance(90)
        let info = try auth.session(login.session)
        XCTAssertEqual(info.idleExpiresAt, info.expiresAt, "idle expiry never passes the absolute one")
        time.advance(60)
        assertAuthError(.invalidSession, try auth.session(login.session))
    }

    func testLogoutIsIdempotentAndLogoutAllCountsLiveSessions() throws {
        let a = try sameBrowserLogin("ivy@example.com")
        let b = try sameBrowserLogin("ivy@example.com")
        let other = try sameBrowserLogin("jack@example.com")
        try auth.logout(a.session)
        try auth.logout(a.session)
        try auth.logout("not-a-session")
        assertAuthError(.invalidSession, try auth.session(a.session))
        XCTAssertEqual(try auth.logoutAll(userID: b.user.id), 1)
        assertAuthError(.invalidSession, try auth.session(b.session))
        XCTAssertNoThrow(try auth.session(other.session))
        XCTAssertEqual(try auth.logoutAll(userID: "nobody"), 0)
    }

    func testUserAgentIsClippedNotRefused() throws {
        let long = String(repeating: "é", count: 1_000)
        _ = try auth.start(StartRequest(email: "kim@example.com", userAgent: long))
        let stored = try XCTUnwrap(store.state.tokens.values.first?.userAgent)
        XCTAssertLessThanOrEqual(stored.utf8.count, 1_024)
        XCTAssertEqual(stored.count, 512)
    }
}

final class SecretTests: XCTestCase {
    func testSecretsAre32BytesBase64URL() {
        let secret = Secret.generate(using: SystemRandom())
        XCTAssertEqual(secret.text.utf8.count, 43)
        XCTAssertTrue(Secret.isWellFormed(secret.text))
        XCTAssertNotEqual(secret.text, Secret.generate(using: SystemRandom()).text)
        XCTAssertEqual(secret.hash.count, 32)
        XCTAssertFalse(Secret.isWellFormed(secret.text + "A"))
        XCTAssertFalse(Secret.isWellFormed(String(secret.text.dropLast()) + "+"))
    }

    func testBase64URLKnownAnswers() {
        XCTAssertEqual(Base64URL.encode([]), "")
        XCTAssertEqual(Base64URL.encode(Array("f".utf8)), "Zg")
        XCTAssertEqual(Base64URL.encode(Array("fo".utf8)), "Zm8")
        XCTAssertEqual(Base64URL.encode(Array("foo".utf8)), "Zm9v")
        XCTAssertEqual(Base64URL.encode([0xFB, 0xFF, 0xBF]), "-_-_")
    }

    func testHashIsSHA256OfTheText() {
        // sha256("abc")
        XCTAssertEqual(hex(Secret.hash(of: "abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(Secret.logHandle(of: "abc"), "ba7816bf")
        // The text's UTF-8 bytes, whatever they are: empty, and beyond ASCII.
        XCTAssertEqual(hex(Secret.hash(of: "")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(hex(Secret.hash(of: "é€😀")), "df9226927fd572c1ee66eec85de1bb139497614899f36e4e90474cb71f6ef9d0")
        // A string made from a slice of a longer one hashes as its own bytes.
        let long = "xxabcxx"
        XCTAssertEqual(hex(Secret.hash(of: String(long.dropFirst(2).dropLast(2)))), hex(Secret.hash(of: "abc")))
    }

    func testWellFormedIsExactly43Base64URLBytes() {
        XCTAssertTrue(Secret.isWellFormed(String(repeating: "A", count: 43)))
        XCTAssertTrue(Secret.isWellFormed(String(repeating: "-", count: 21) + String(repeating: "_", count: 22)))
        XCTAssertFalse(Secret.isWellFormed(""))
        XCTAssertFalse(Secret.isWellFormed(String(repeating: "A", count: 42)))
        XCTAssertFalse(Secret.isWellFormed(String(repeating: "A", count: 42) + "="))
        // 43 characters but more bytes, or 43 bytes that are not all in the alphabet.
        XCTAssertFalse(Secret.isWellFormed(String(repeating: "é", count: 43)))
        XCTAssertFalse(Secret.isWellFormed(String(repeating: "A", count: 41) + "é"))
        XCTAssertFalse(Secret.isWellFormed(String(repeating: "A", count: 42) + "\u{0}"))
        XCTAssertFalse(Secret.isWellFormed(String(repeating: "A", count: 42) + "+"))
        // Every byte value, at every position: in only if it is one of the 64.
        let alphabet = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        XCTAssertEqual(alphabet.count, 64)
        for byte in UInt8.min...UInt8.max {
            for position in [0, 21, 42] {
                var text = [UInt8](repeating: UInt8(ascii: "Q"), count: 43)
                text[position] = byte
                XCTAssertEqual(text.withUnsafeBytes { Secret.isWellFormed($0) }, alphabet.contains(byte), "byte \(byte) at \(position)")
            }
        }
    }

    func testSystemRandomIsNotConstant() {
        let a = SystemRandom().bytes(32), b = SystemRandom().bytes(32)
        XCTAssertNotEqual(a, b)
        XCTAssertEqual(a.count, 32)
    }

    /// Every byte of every length is drawn, across getentropy's 256-byte calls too: ORed over
    /// 16 draws, no position stays zero (a false failure: 2^-128 per position).
    func testSystemRandomFillsEveryByteOfAnyLength() {
        XCTAssertEqual(SystemRandom().bytes(0), [])
        for count in [1, 4, 7, 8, 9, 12, 16, 31, 32, 255, 256, 257, 320, 512, 1000] {
            assertEveryPositionIsDrawn(count: count, by: SystemRandom())
        }
        // Each byte value turns up in a large draw (a byte stuck at one value would not).
        XCTAssertEqual(Set(SystemRandom().bytes(8192)).count, 256)
    }

    /// When the kernel refuses (no getrandom, a seccomp filter), the rest comes from the
    /// standard library's generator: still every byte, still random.
    func testSystemRandomFallsBackWhenTheKernelRefuses() {
        let calls = Counter()
        let refusesAfterTheFirstCall = SystemRandom(entropy: { buffer, count in
            guard calls.next() == 0 else { return -1 }
            return getentropy(buffer, count)
        })
        assertEveryPositionIsDrawn(count: 600, by: refusesAfterTheFirstCall, resetting: calls)
        let alwaysRefuses = SystemRandom(entropy: { _, _ in -1 })
        for count in [1, 8, 9, 32, 300] { assertEveryPositionIsDrawn(count: count, by: alwaysRefuses) }
        XCTAssertNotEqual(alwaysRefuses.bytes(32), alwaysRefuses.bytes(32))
    }

    private func assertEveryPositionIsDrawn(count: Int, by random: SystemRandom, resetting counter: Counter? = nil,
                                            file: StaticString = #filePath, line: UInt = #line) {
        var seen = [UInt8](repeating: 0, count: count)
        for _ in 0..<16 {
            counter?.reset()
            let bytes = random.bytes(count)
            XCTAssertEqual(bytes.count, count, file: file, line: line)
            guard bytes.count == count else { return }
            for index in 0..<count { seen[index] |= bytes[index] }
        }
        XCTAssertNil(seen.firstIndex(of: 0).map { "count \(count): byte \($0) never drawn" }, file: file, line: line)
    }

    func testSealerRejectsWrongKey() throws {
        let one = TokenSealer(keyBytes: [UInt8](repeating: 1, count: 32))!
        let two = TokenSealer(keyBytes: [UInt8](repeating: 2, count: 32))!
        let sealed = try one.seal("token", messageID: "m@x")
        XCTAssertEqual(one.open(sealed, messageID: "m@x"), "token")
        XCTAssertNil(two.open(sealed, messageID: "m@x"))
        XCTAssertNil(TokenSealer(keyBytes: [1, 2, 3]))
    }
}

extension Array where Element == UInt8 {
    func containsSubsequence(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return false }
        for start in 0...(count - needle.count) where self[start..<(start + needle.count)].elementsEqual(needle) { return true }
        return false
    }
}

/// Counts calls across threads (for an injected entropy source).
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    /// The count before this call.
    func next() -> Int { lock.withLock { defer { value += 1 }; return value } }
    func reset() { lock.withLock { value = 0 } }
}
