import Foundation
import Logging
@testable import MagicLinkServer
import NIOConcurrencyHelpers
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Start-up and shutdown edges that the socket-level tests cannot time: readiness that never
/// comes, a SIGHUP after STOPPING=1, and what the log handler writes.
final class LifecycleTests: XCTestCase {
    // MARK: readiness

    func testWaitersLearnThatTheServerFailedBeforeServing() async {
        let readiness = Readiness()
        async let first = readiness.wait()
        async let second = readiness.wait()
        try? await Task.sleep(for: .milliseconds(50))
        readiness.settle(false)
        let results = await [first, second]
        XCTAssertEqual(results, [false, false])
        // Settled once: later calls change nothing, late waiters get the outcome at once.
        readiness.settle(true)
        let late = await readiness.wait()
        XCTAssertFalse(late)
    }

    func testReadyWaitersAreReleased() async {
        let readiness = Readiness()
        async let waiting = readiness.wait()
        try? await Task.sleep(for: .milliseconds(20))
        readiness.settle(true)
        let result = await waiting
        XCTAssertTrue(result)
    }

    func testACancelledWaiterLeavesInsteadOfHanging() async {
        let readiness = Readiness()
        let waiter = Task { await readiness.wait() }
        try? await Task.sleep(for: .milliseconds(50))
        waiter.cancel()
        let result = await waiter.value
        XCTAssertFalse(result)
        // Cancelled before it started waiting: also false, at once.
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return await readiness.wait()
        }
        let earlyResult = await early.value
        XCTAssertFalse(earlyResult)
        // The cancelled waiters are gone; a real outcome still reaches new ones.
        async let later = readiness.wait()
        try? await Task.sleep(for: .milliseconds(20))
        readiness.settle(true)
        let laterResult = await later
        XCTAssertTrue(laterResult)
    }

    // MARK: SIGHUP after STOPPING=1

    func testAReloadAfterStoppingSendsNothing() throws {
        let listener = try DatagramListener()
        let notifier = SystemdNotifier(path: listener.path)
        let templates = NIOLockedValueBox(try Configuration.load(file: nil, environment: [:]).templateCatalog())
        let reload = ReloadService(reloadConfiguration: { try Configuration.load(file: nil, environment: [:]) },
                                   templates: ["default": templates], notifier: notifier, logger: Logger(label: "test"))
        reload.reload()
        XCTAssertEqual(listener.receiveAll(), ["RELOADING=1\nSTATUS=Reloading", "READY=1\nSTATUS=Serving"])
        notifier.notifyStopping()
        notifier.notifyStopping()  // once only
        reload.reload()
        XCTAssertEqual(listener.receiveAll(), ["STOPPING=1\nSTATUS=Shutting down"])
        XCTAssertTrue(notifier.isStopping)
    }

    // MARK: log lines

    func testEscapingKeepsEveryValueOnOneLine() {
        XCTAssertEqual(DaemonLogHandler.escaped("plain text ✓"), "plain text ✓")
        XCTAssertEqual(DaemonLogHandler.escaped("a\u{0}b\r\nc\td\u{1b}[31m\u{7f}\u{85}\u{2028}\u{2029}\\"),
                       "a\\u{0}b\\r\\nc\\td\\u{1b}[31m\\u{7f}\\u{85}\\u{2028}\\u{2029}\\\\")
        XCTAssertEqual(DaemonLogHandler.escaped(String(repeating: "é", count: 600)),
                       String(repeating: "é", count: 512) + "…(truncated)")
        XCTAssertEqual(DaemonLogHandler.escaped("abc", limit: 2), "ab…(truncated)")
        XCTAssertEqual(DaemonLogHandler.escaped("abc", limit: 3), "abc")
        XCTAssertEqual(DaemonLogHandler.escaped(String(repeating: "a", count: 600)), String(repeating: "a", count: 512) + "…(truncated)")
        XCTAssertEqual(DaemonLogHandler.escaped("~ !\u{7f}"), "~ !\\u{7f}")
        XCTAssertEqual(DaemonLogHandler.escaped("tab\there"), "tab\\there")
    }

    func testQuotingIsUnambiguous() {
        XCTAssertEqual(DaemonLogHandler.quoted("simple"), "simple")
        XCTAssertEqual(DaemonLogHandler.quoted(""), "\"\"")
        XCTAssertEqual(DaemonLogHandler.quoted("two words"), "\"two words\"")
        XCTAssertEqual(DaemonLogHandler.quoted("k=v"), "\"k=v\"")
        XCTAssertEqual(DaemonLogHandler.quoted("say \"hi\""), "\"say \\\"hi\\\"\"")
        // Bytes decide, not characters: a space or quote carrying a combining mark still counts.
        XCTAssertEqual(DaemonLogHandler.quoted("a \u{301}b"), "\"a \u{301}b\"")
        XCTAssertEqual(DaemonLogHandler.quoted("x\"\u{301}"), "\"x\\\"\u{301}\"")
        XCTAssertEqual(DaemonLogHandler.quoted("=\u{301}"), "\"=\u{301}\"")
        // An escaped value (it holds backslashes) is always quoted.
        XCTAssertEqual(DaemonLogHandler.quoted(DaemonLogHandler.escaped("a\nb")), "\"a\\nb\"")
    }

    func testJournalStreamCountsOnlyForStderrItself() {
        var info = stat()
        XCTAssertEqual(fstat(2, &info), 0)
        XCTAssertTrue(DaemonLogHandler.stderrIsJournal("\(info.st_dev):\(info.st_ino)"))
        XCTAssertFalse(DaemonLogHandler.stderrIsJournal("\(info.st_dev):\(info.st_ino &+ 1)"))
        XCTAssertFalse(DaemonLogHandler.stderrIsJournal(nil))
        XCTAssertFalse(DaemonLogHandler.stderrIsJournal("garbage"))
        XCTAssertFalse(DaemonLogHandler.stderrIsJournal("1:2:3"))
    }
}

/// A datagram socket standing in for systemd's `$NOTIFY_SOCKET`.
private final class DatagramListener {
    let path: String
    private let fd: Int32

    init() throws {
        path = NSTemporaryDirectory() + "mld-notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard fd >= 0, bound == 0 else { throw POSIXError(.EADDRINUSE) }
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// Every datagram queued so far (the notifier sends synchronously, so they are all there).
    func receiveAll() -> [String] {
        var messages: [String] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            guard count > 0 else { return messages }
            messages.append(String(decoding: buffer.prefix(count), as: UTF8.self))
        }
    }
}
