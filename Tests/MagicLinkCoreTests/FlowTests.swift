@testable import MagicLinkCore
import XCTest

/// Flows, confirmation, strict binding, peek and codes, on the in-memory store with a fake clock.
final class FlowTests: XCTestCase {
    let store = InMemoryStore()
    let time = ManualTime()
    let sealer = TokenSealer(keyBytes: [UInt8](repeating: 7, count: 32))!

    func makeAuthenticator(_ binding: FlowBinding = .confirm) -> Authenticator {
        var policy = AuthPolicy(callbackURL: "https://app.example.com/auth/callback",
                                redirects: try! RedirectPolicy(allowedOrigins: ["https://app.example.com"]))
        policy.flowBinding = binding
        return Authenticator(policy: policy, store: store, sealer: sealer, time: time, random: SystemRandom())
    }

    /// start → the mail's secrets, as the mail worker would open them.
    func begin(_ auth: Authenticator, _ email: String, send: SendMode = .link) throws -> (flow: String, secrets: MailSecrets) {
        let result = try auth.start(StartRequest(email: email, send: send))
        let mail = try XCTUnwrap(store.state.mail.last)
        let payload = try XCTUnwrap(sealer.open(mail.sealedToken, messageID: mail.messageID))
        return (result.flow, try XCTUnwrap(MailSecrets(payload: payload)))
    }

    func assertAuthError<T>(_ expected: AuthError, _ body: @autoclosure () throws -> T, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { XCTAssertEqual($0 as? AuthError, expected, file: file, line: line) }
    }

    func testFlowIsStoredOnlyAsItsHash() throws {
        let auth = makeAuthenticator()
        let (flow, secrets) = try begin(auth, "a@example.com")
        XCTAssertTrue(Secret.isWellFormed(flow))
        let record = try XCTUnwrap(store.state.tokens[Secret.hash(of: secrets.token)])
        XCTAssertEqual(record.flowHash, Secret.hash(of: flow))
        XCTAssertNil(record.codeHash)
        XCTAssertNil(secrets.code)
    }

    func testOtherBrowserNeedsConfirmationAndNothingIsConsumed() throws {
        let auth = makeAuthenticator()
        let (flow, secrets) = try begin(auth, "bob@example.com")
        let created = time.now()
        time.advance(30)
        for other in [nil, "x", String(repeating: "Z", count: 43)] as [String?] {
            assertAuthError(.confirmationRequired(emailMasked: "b***@example.com", requestedAt: created),
                            try auth.callback(token: secrets.token, flow: other))
        }
        XCTAssertNil(store.state.tokens[Secret.hash(of: secrets.token)]?.usedAt)
        XCTAssertTrue(store.state.sessions.isEmpty)
        XCTAssertNoThrow(try auth.callback(token: secrets.token, flow: nil, confirm: true))
        assertAuthError(.invalidToken(.used), try auth.callback(token: secrets.token, flow: flow))
    }

    func testStrictBindingRefusesEvenConfirmed() throws {
        let auth = makeAuthenticator(.strict)
        let (flow, secrets) = try begin(auth, "carol@example.com")
        assertAuthError(.flowMismatch, try auth.callback(token: secrets.token, flow: nil, confirm: true))
        XCTAssertNoThrow(try auth.callback(token: secrets.token, flow: flow))
    }

    func testTokensFromBeforeFlowsMatchNoBrowser() throws {
        for binding in FlowBinding.allCases {
            let auth = makeAuthenticator(binding)
            let (flow, secrets) = try begin(auth, "old-\(binding)@example.com")
            let record = try XCTUnwrap(store.state.tokens[Secret.hash(of: secrets.token)])
            store.state.tokens[record.hash]?.flowHash = nil  // as migrated from v1
            if binding == .strict {
                assertAuthError(.flowMismatch, try auth.callback(token: secrets.token, flow: flow, confirm: true))
            } else {
                assertAuthError(.confirmationRequired(emailMasked: "o***@example.com", requestedAt: record.createdAt),
                                try auth.callback(token: secrets.token, flow: flow))
                XCTAssertNoThrow(try auth.callback(token: secrets.token, confirm: true))
            }
        }
    }

    func testARefusedSignupSupersedesOlderFlowsLikeAnAcceptedOne() throws {
        var policy = AuthPolicy(callbackURL: "https://app.example.com/cb", redirects: try RedirectPolicy(allowedOrigins: []))
        policy.signup = .existing
        policy.addressCooldown = 0
        let auth = Authenticator(policy: policy, store: store, sealer: sealer, time: time, random: SystemRandom())
        _ = try auth.createUser(email: "member@example.com")
        var replies: [String: AuthError] = [:]
        for who in ["member@example.com", "stranger@example.com"] {
            let first = try auth.start(StartRequest(email: who, send: .code)).flow
            _ = try auth.start(StartRequest(email: who, send: .code))
            XCTAssertThrowsError(try auth.verifyCode(flow: first, code: "000000")) { replies[who] = $0 as? AuthError }
        }
        XCTAssertEqual(replies["member@example.com"], .invalidToken(.expired))
        XCTAssertEqual(replies["stranger@example.com"], .invalidToken(.expired), "no enumeration through superseded flows")
        XCTAssertEqual(store.state.mail.map(\.recipient), ["member@example.com", "member@example.com"], "the stranger got no mail")
    }

    func testPeekCountsAndConsumesNothing() throws {
        let auth = makeAuthenticator()
        let (flow, secrets) = try begin(auth, "dan@example.com")
        let scanner = try auth.peek(token: secrets.token)
        XCTAssertEqual(scanner, PeekResult(valid: true, reason: nil, flowMatches: false, emailMasked: "d***@example.com",
                                           expiresAt: time.now() + 600))
        XCTAssertTrue(try auth.peek(token: secrets.token, flow: flow).flowMatches)
        XCTAssertEqual(store.state.tokens[Secret.hash(of: secrets.token)]?.peeks, 2)
        time.advance(601)
        let late = try auth.peek(token: secrets.token, flow: flow)
        XCTAssertEqual(late.reason, .expired)
        XCTAssertFalse(late.valid)
        XCTAssertEqual(try auth.peek(token: "nope"), PeekResult(valid: false, reason: .unknown, flowMatches: false, emailMasked: nil, expiresAt: nil))
    }

    func testCodesDieAfterThreeWrongOnesAndCountInCommittedTransactions() throws {
        let auth = makeAuthenticator()
        let (flow, secrets) = try begin(auth, "eve@example.com", send: .both)
        let code = try XCTUnwrap(secrets.code)
        let wrong = String(format: "%06d", (Int(code)! + 1) % 1_000_000)
        for left in [2, 1, 0] {
            assertAuthError(.invalidCode(attemptsLeft: left), try auth.verifyCode(flow: flow, code: wrong))
        }
        XCTAssertEqual(store.state.tokens[Secret.hash(of: secrets.token)]?.codeFailures, 3)
        assertAuthError(.invalidCode(attemptsLeft: 0), try auth.verifyCode(flow: flow, code: code))
        // The link is not the code: it still works.
        XCTAssertNoThrow(try auth.callback(token: secrets.token, flow: flow))
    }

    func testCodeLogsInOnceAndAcceptsTypingHabits() throws {
        let auth = makeAuthenticator()
        let (flow, secrets) = try begin(auth, "fay@example.com", send: .code)
        let code = try XCTUnwrap(secrets.code)
        XCTAssertEqual(secrets.send, .code)
        assertAuthError(.invalidField(field: "params.code", reason: "must be the 6 digits from the mail"),
                        try auth.verifyCode(flow: flow, code: "12345"))
        let login = try auth.verifyCode(flow: flow, code: String(code.prefix(3)) + "-" + String(code.suffix(3)))
        XCTAssertEqual(login.user.email, "fay@example.com")
        assertAuthError(.invalidToken(.used), try auth.verifyCode(flow: flow, code: code))
        assertAuthError(.invalidToken(.unknown), try auth.verifyCode(flow: String(repeating: "Q", count: 43), code: code))
    }

    func testCodeHashNeedsTheFlow() throws {
        let auth = makeAuthenticator()
        let (flow, secrets) = try begin(auth, "gus@example.com", send: .code)
        let record = try XCTUnwrap(store.state.tokens[Secret.hash(of: secrets.token)])
        let code = try XCTUnwrap(secrets.code)
        XCTAssertEqual(record.codeHash, Secret.hash(of: flow + ":" + code))
        XCTAssertNotEqual(record.codeHash, Secret.hash(of: code), "a bare hash of 6 digits would fall to 10^6 guesses")
    }

    func testGeneratedCodesAreSixDigitsWithLeadingZerosAndRejectTheBiasedTail() {
        final class Scripted: RandomSource, @unchecked Sendable {
            var draws: [[UInt8]]
            init(_ draws: [[UInt8]]) { self.draws = draws }
            func bytes(_ count: Int) -> [UInt8] { draws.removeFirst() }
        }
        // 0xFFFFFFFF is in the biased tail (≥ 4 294 000 000): drawn again.
        XCTAssertEqual(Authenticator.generateCode(using: Scripted([[0xFF, 0xFF, 0xFF, 0xFF], [0, 0, 0, 42]])), "000042")
        XCTAssertEqual(Authenticator.generateCode(using: Scripted([[0xFF, 0xF1, 0x3D, 0x7F]])), "999999")  // 4 293 999 999
    }

    func testMailSecretsPayloadRoundTripsAndReadsV1Payloads() {
        for secrets in [MailSecrets(token: "t", code: nil, send: .link), MailSecrets(token: "t", code: "012345", send: .both),
                        MailSecrets(token: "t", code: "999999", send: .code)] {
            XCTAssertEqual(MailSecrets(payload: secrets.payload), secrets)
        }
        XCTAssertEqual(MailSecrets(payload: "bare-token"), MailSecrets(token: "bare-token", code: nil, send: .link))
        XCTAssertNil(MailSecrets(payload: "v2\ncode\nt\n"), "a code mail without a code")
        XCTAssertNil(MailSecrets(payload: "v3\nlink\nt\n"))
    }
}

final class FailureThrottleTests: XCTestCase {
    func testSlidingWindowAndRetryAfter() {
        let time = ManualTime()
        let throttle = FailureThrottle(limit: RateLimit(maximum: 3, window: 100), time: time)
        XCTAssertNil(throttle.retryAfter("ip:a"))
        throttle.recordFailure("ip:a")
        time.advance(10)
        throttle.recordFailure("ip:a")
        throttle.recordFailure("ip:a")
        XCTAssertEqual(throttle.retryAfter("ip:a"), 90, "until the first failure leaves the window")
        XCTAssertNil(throttle.retryAfter("ip:b"))
        time.advance(90)
        XCTAssertNil(throttle.retryAfter("ip:a"))
        throttle.recordFailure("ip:a")
        XCTAssertEqual(throttle.retryAfter("ip:a"), 10)
    }

    func testAFullTableNeverFreesAThrottledKey() {
        let time = ManualTime()
        let throttle = FailureThrottle(limit: RateLimit(maximum: 1, window: 1_000), time: time, capacity: 2)
        throttle.recordFailure("attacker")
        XCTAssertNotNil(throttle.retryAfter("attacker"))
        time.advance(1)
        throttle.recordFailure("flood-1")
        // Full: new keys share the overflow entry instead of pushing out tracked ones.
        for i in 2...50 { throttle.recordFailure("flood-\(i)") }
        XCTAssertNotNil(throttle.retryAfter("attacker"), "still throttled after the flood")
        XCTAssertNotNil(throttle.retryAfter("flood-99"), "untracked keys answer for the overflow entry")
        // Once failures leave the window, their entries are dropped and new keys are tracked again.
        time.advance(1_000)
        throttle.recordFailure("late")
        XCTAssertNil(throttle.retryAfter("attacker"))
        XCTAssertNotNil(throttle.retryAfter("late"))
        XCTAssertNil(throttle.retryAfter("flood-7"))
    }
}
