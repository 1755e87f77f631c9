@testable import MagicLinkServer
import XCTest

final class MailWorkerTests: XCTestCase {
    /// One writer at a time: the first outcome starts it, later ones wait for its next round,
    /// and an empty round ends it so the next outcome starts a new one. Nothing is lost or
    /// written twice.
    func testOutcomeQueueHandsEverythingToOneWriterAtATime() {
        let queue = OutcomeQueue()
        XCTAssertTrue(queue.add((messageID: "a", outcome: .sent, at: 1)), "the first outcome starts a writer")
        XCTAssertFalse(queue.add((messageID: "b", outcome: .sent, at: 2)), "a writer is running")
        XCTAssertEqual(queue.takeAll()?.map(\.messageID), ["a", "b"])
        XCTAssertFalse(queue.add((messageID: "c", outcome: .retry(at: 9, reason: "x"), at: 3)), "still the same writer")
        XCTAssertEqual(queue.takeAll()?.map(\.messageID), ["c"])
        XCTAssertNil(queue.takeAll(), "nothing left: the writer stops")
        XCTAssertTrue(queue.add((messageID: "d", outcome: .sent, at: 4)), "the next outcome starts a new writer")
        XCTAssertEqual(queue.takeAll()?.map(\.messageID), ["d"])
        XCTAssertNil(queue.takeAll())
    }

    /// A wait that returned early must not leave a wake-up behind: the worker would spin.
    func testWakeupDoesNotSpinAfterAConsumedSignal() async {
        let wakeup = MailWakeup()
        wakeup.signal()
        await wakeup.wait(upTo: .seconds(5))  // consumes the signal at once
        let start = ContinuousClock.now
        await wakeup.wait(upTo: .milliseconds(300))
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(250), "the second wait must really wait")
    }

    func testSignalWakesAWaiter() async {
        let wakeup = MailWakeup()
        Task {
            try? await Task.sleep(for: .milliseconds(50))
            wakeup.signal()
        }
        let start = ContinuousClock.now
        await wakeup.wait(upTo: .seconds(30))
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(20))
    }

    func testRecipientIsMaskedInServerReplies() {
        let reason = "550 5.1.1 <Frank.Secret@Example.com>: Recipient address rejected (frank.secret@example.com)"
        let masked = MailDeliveryService.masking("frank.secret@example.com", as: "f***@example.com", in: reason)
        XCTAssertEqual(masked, "550 5.1.1 <f***@example.com>: Recipient address rejected (f***@example.com)")
    }

    func testBackoffDoublesWithinBoundsWithJitter() {
        for attempt in 1...12 {
            let delay = MailDeliveryService.backoff(attempt: attempt, delays: 5...300)
            let base = min(Int64(5) << Int64(attempt - 1), 300)
            XCTAssertGreaterThanOrEqual(delay, base)
            XCTAssertLessThanOrEqual(delay, base + base / 5)
        }
    }

    func testShutdownGateBoundsWorkOnlyAfterShutdown() async {
        let gate = ShutdownGate()
        let quick = await gate.bounded(by: .milliseconds(10)) { 42 }
        XCTAssertEqual(quick, 42)
        gate.begin()
        let slow: Int? = await gate.bounded(by: .milliseconds(100)) {
            try? await Task.sleep(for: .seconds(10))
            return 1
        }
        XCTAssertNil(slow, "work still running a grace period after shutdown began is abandoned")
    }
}
