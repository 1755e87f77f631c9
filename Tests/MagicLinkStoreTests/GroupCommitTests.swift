import Foundation
@testable import MagicLinkStore
import CSQLite
import XCTest

final class GroupCommitTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("magiclinkd-commit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    struct Refused: Error {}

    func makeCommits() throws -> (GroupCommit, path: String) {
        let path = directory.appendingPathComponent("t.sqlite").path
        let connection = try Connection(path: path)
        try connection.execute("PRAGMA journal_mode = WAL")
        try connection.execute("CREATE TABLE t (name TEXT PRIMARY KEY)")
        return (GroupCommit(connection: connection, connectionLock: Lock()), path)
    }

    /// A writer whose child rows check their parent only at COMMIT (a deferred foreign key): an
    /// orphan row makes the batch's COMMIT fail.
    func makeDeferredForeignKeyCommits(_ file: String) throws -> (GroupCommit, Connection) {
        let connection = try Connection(path: directory.appendingPathComponent(file).path)
        try connection.execute("PRAGMA foreign_keys = ON")
        try connection.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)")
        try connection.execute("CREATE TABLE c (p INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)")
        return (GroupCommit(connection: connection, connectionLock: Lock()), connection)
    }

    func names(in path: String) throws -> [String] {
        try Connection(path: path).query("SELECT name FROM t ORDER BY name") { $0.text(0) }
    }

    /// While one transaction runs, three more queue up: they share the next commit, and the one
    /// that throws loses only its own rows.
    func testWritersQueuedBehindACommitShareTheNextOne() throws {
        let (commits, path) = try makeCommits()
        let done = DispatchGroup()
        let outcomes = LockedDictionary<String, Bool>()
        let firstIsRunning = DispatchSemaphore(value: 0)
        func writer(_ name: String, fails: Bool = false, holdUntilQueued: Int = 0) {
            done.enter()
            Thread.detachNewThread {
                defer { done.leave() }
                let ok: Bool
                do {
                    try commits.perform { connection in
                        try connection.run("INSERT INTO t (name) VALUES (?)", [.text(name)])
                        if holdUntilQueued > 0 { firstIsRunning.signal() }
                        let deadline = Date().addingTimeInterval(10)
                        while commits.queuedCount < holdUntilQueued, Date() < deadline { usleep(1_000) }
                        if fails { throw Refused() }
                    }
                    ok = true
                } catch {
                    XCTAssertTrue(error is Refused, "\(error)")
                    ok = false
                }
                outcomes[name] = ok
            }
        }
        writer("first", holdUntilQueued: 3)
        XCTAssertEqual(firstIsRunning.wait(timeout: .now() + 10), .success)
        writer("b")
        writer("c", fails: true)
        writer("d")
        XCTAssertEqual(done.wait(timeout: .now() + 20), .success)
        XCTAssertEqual(outcomes.all, ["first": true, "b": true, "c": false, "d": true])
        XCTAssertEqual(commits.batchSizes, [1: 1, 3: 1])
        XCTAssertEqual(try names(in: path), ["b", "d", "first"])
    }

    func testAFailingCommitFailsEveryoneInTheBatchAndKeepsNothing() throws {
        let (commits, path) = try makeCommits()
        // A deferred foreign key violation surfaces only at COMMIT.
        let (fk, connection) = try makeDeferredForeignKeyCommits("fk.sqlite")
        XCTAssertThrowsError(try fk.perform { try $0.run("INSERT INTO c (p) VALUES (42)") }) { error in
            XCTAssertEqual((error as? SQLiteError).map { $0.code & 0xFF }, SQLITE_CONSTRAINT)
        }
        XCTAssertFalse(connection.inTransaction)
        XCTAssertEqual(try connection.query("SELECT count(*) FROM c") { $0.int64(0) }, [0])
        // The writer still works afterwards.
        try commits.perform { try $0.run("INSERT INTO t (name) VALUES ('after')") }
        XCTAssertEqual(try names(in: path), ["after"])
    }

    /// A body that refused because of an earlier body's writes must not keep its refusal when
    /// those writes do not commit: everyone in a failed transaction hears the commit's error.
    func testEveryoneInABatchThatDoesNotCommitGetsTheCommitError() throws {
        let (commits, connection) = try makeDeferredForeignKeyCommits("fk2.sqlite")
        let outcomes = LockedDictionary<String, String>()
        let done = DispatchGroup()
        let firstIsRunning = DispatchSemaphore(value: 0)
        func writer(_ name: String, _ body: @escaping @Sendable (Connection) throws -> Void) {
            done.enter()
            Thread.detachNewThread {
                defer { done.leave() }
                do {
                    try commits.perform(body)
                    outcomes[name] = "ok"
                } catch let error as SQLiteError {
                    outcomes[name] = "sqlite \(error.code & 0xFF)"
                } catch {
                    outcomes[name] = "refused"
                }
            }
        }
        writer("first") { _ in
            firstIsRunning.signal()
            let deadline = Date().addingTimeInterval(10)
            while commits.queuedCount < 2, Date() < deadline { usleep(1_000) }
        }
        XCTAssertEqual(firstIsRunning.wait(timeout: .now() + 10), .success)
        // Writes a row whose parent does not exist: the COMMIT of its batch fails.
        writer("orphan") { try $0.run("INSERT INTO c (p) VALUES (7)") }
        // Refuses because it sees the orphan row (as "link already used" would see a used link).
        writer("refuser") { connection in
            if try connection.queryFirst("SELECT count(*) FROM c", row: { $0.int64(0) }) == 1 { throw Refused() }
        }
        XCTAssertEqual(done.wait(timeout: .now() + 20), .success)
        XCTAssertEqual(commits.batchSizes, [1: 1, 2: 1])
        let constraint = "sqlite \(SQLITE_CONSTRAINT)"
        XCTAssertEqual(outcomes.all, ["first": "ok", "orphan": constraint, "refuser": constraint])
        XCTAssertFalse(connection.inTransaction)
        XCTAssertEqual(try connection.query("SELECT count(*) FROM c") { $0.int64(0) }, [0])
    }

    func testResultsComeBackToTheirOwnCallers() throws {
        let (commits, _) = try makeCommits()
        let group = DispatchGroup()
        let seen = LockedDictionary<Int, Int>()
        for i in 0..<32 {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                let got = try? commits.perform { connection -> Int in
                    try connection.run("INSERT INTO t (name) VALUES (?)", [.text("n\(i)")])
                    return i * 10
                }
                seen[i] = got
            }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 20), .success)
        XCTAssertEqual(seen.all, Dictionary(uniqueKeysWithValues: (0..<32).map { ($0, $0 * 10) }))
        XCTAssertEqual(commits.batchSizes.reduce(0) { $0 + $1.key * $1.value }, 32)
    }

    /// Runs the async part of a test with a deadline: a continuation nobody resumes fails the
    /// test instead of hanging the suite.
    func runAsync(timeout: TimeInterval = 20, file: StaticString = #filePath, line: UInt = #line,
                  _ body: @escaping @Sendable () async throws -> Void) {
        let done = DispatchSemaphore(value: 0)
        let failure = LockedDictionary<Int, String>()
        Task {
            do { try await body() } catch { failure[0] = "\(error)" }
            done.signal()
        }
        XCTAssertEqual(done.wait(timeout: .now() + timeout), .success, "a suspended writer was never resumed", file: file, line: line)
        XCTAssertNil(failure[0], file: file, line: line)
    }

    /// A blocking writer whose batch stays open (its body waits) until `queued` callers are
    /// queued behind it; returns once its body runs, with a group that its thread leaves.
    func holdFirstBatch(of commits: GroupCommit, until queued: Int,
                        _ body: @escaping @Sendable (Connection) throws -> Void = { _ in }) -> DispatchGroup {
        let running = DispatchSemaphore(value: 0)
        let first = Thread.detachNewThreadWithResult {
            try? commits.perform { connection in
                try body(connection)
                running.signal()
                let deadline = Date().addingTimeInterval(10)
                while commits.queuedCount < queued, Date() < deadline { usleep(1_000) }
            }
        }
        XCTAssertEqual(running.wait(timeout: .now() + 10), .success)
        return first
    }

    /// Suspending callers hold no thread: with one blocking writer holding the batch open, a
    /// hundred tasks queue behind it and all share the next commits (a thread each would be a
    /// hundred threads); each gets its own result, a failing one only its own error.
    func testSuspendingWritersShareOneCommitWithoutAThreadEach() throws {
        let (commits, path) = try makeCommits()
        let first = holdFirstBatch(of: commits, until: 100) { try $0.run("INSERT INTO t (name) VALUES ('first')") }
        let results = LockedDictionary<Int, Int>()
        runAsync {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<100 {
                    group.addTask {
                        do {
                            results[i] = try await commits.perform { connection -> Int in
                                try connection.run("INSERT INTO t (name) VALUES (?)", [.text("s\(i)")])
                                if i == 7 { throw Refused() }
                                return i * 10
                            }
                        } catch {
                            XCTAssertTrue(error is Refused, "\(error)")
                            results[i] = -1
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        XCTAssertEqual(first.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(results.all, Dictionary(uniqueKeysWithValues: (0..<100).map { ($0, $0 == 7 ? -1 : $0 * 10) }))
        XCTAssertEqual(commits.batchSizes, [1: 1, 64: 1, 36: 1])
        let names = try names(in: path)
        XCTAssertEqual(names.count, 100)
        XCTAssertFalse(names.contains("s7"))
    }

    /// A suspended caller alone (nobody blocking to lead) is led by the drain; blocking and
    /// suspended callers mixed all finish, and `waitUntilIdle` returns once they have.
    func testSuspendingAndBlockingWritersMixed() throws {
        let (commits, path) = try makeCommits()
        runAsync { _ = try await commits.perform { connection -> Int in try connection.run("INSERT INTO t (name) VALUES ('alone')") } }
        XCTAssertEqual(commits.batchSizes, [1: 1])
        let blocking = DispatchGroup()
        for i in 0..<8 {
            blocking.enter()
            Thread.detachNewThread {
                defer { blocking.leave() }
                for j in 0..<20 {
                    do {
                        _ = try commits.perform { connection -> Int in try connection.run("INSERT INTO t (name) VALUES (?)", [.text("b\(i)-\(j)")]) }
                    } catch {
                        XCTFail("\(error)")
                    }
                }
            }
        }
        runAsync {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<40 {
                    group.addTask {
                        for j in 0..<5 {
                            _ = try await commits.perform { connection -> Int in try connection.run("INSERT INTO t (name) VALUES (?)", [.text("s\(i)-\(j)")]) }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        XCTAssertEqual(blocking.wait(timeout: .now() + 20), .success)
        commits.waitUntilIdle()
        XCTAssertEqual(try names(in: path).count, 1 + 8 * 20 + 40 * 5)
        XCTAssertEqual(commits.queuedCount, 0)
    }

    /// Blocking callers (each holds a thread, a session touch holds one of the `session`
    /// pool's) go first in a batch, ahead of suspended logins that queued before them.
    func testBlockingWritersGoAheadOfSuspendedOnes() throws {
        let path = directory.appendingPathComponent("p.sqlite").path
        let connection = try Connection(path: path)
        try connection.execute("CREATE TABLE t (name TEXT PRIMARY KEY, n INTEGER)")
        let commits = GroupCommit(connection: connection, connectionLock: Lock(), maximumBatch: 2)
        let counter = LockedDictionary<Int, Int>()
        let first = holdFirstBatch(of: commits, until: 4)
        let order = LockedDictionary<String, Int>()
        runAsync {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for name in ["s1", "s2", "s3"] {
                    group.addTask { try await commits.perform { _ in order[name] = counter.increment(0) } }
                    while commits.queuedCount < Int(name.dropFirst())! { try await Task.sleep(nanoseconds: 1_000_000) }
                }
                let late = Thread.detachNewThreadWithResult {
                    try? commits.perform { _ in order["blocking"] = counter.increment(0) }
                }
                try await group.waitForAll()
                XCTAssertEqual(late.wait(timeout: .now() + 10), .success)
            }
        }
        XCTAssertEqual(first.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(order.all, ["blocking": 1, "s1": 2, "s2": 3, "s3": 4])
        XCTAssertEqual(commits.batchSizes, [1: 1, 2: 2])
    }

    /// A batch whose COMMIT fails gives every suspended caller in it the commit's error, once.
    func testSuspendedWritersOfAFailedCommitAllGetItsError() throws {
        let (commits, connection) = try makeDeferredForeignKeyCommits("fk3.sqlite")
        let first = holdFirstBatch(of: commits, until: 3)
        let outcomes = LockedDictionary<String, String>()
        runAsync {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for name in ["orphan", "fine", "also fine"] {
                    group.addTask {
                        do {
                            try await commits.perform { connection in
                                if name == "orphan" { try connection.run("INSERT INTO c (p) VALUES (7)") }
                            }
                            outcomes[name] = outcomes[name].map { $0 + " ok" } ?? "ok"
                        } catch let error as SQLiteError {
                            outcomes[name] = (outcomes[name].map { $0 + " " } ?? "") + "sqlite \(error.code & 0xFF)"
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        XCTAssertEqual(first.wait(timeout: .now() + 10), .success)
        let constraint = "sqlite \(SQLITE_CONSTRAINT)"
        XCTAssertEqual(outcomes.all, ["orphan": constraint, "fine": constraint, "also fine": constraint])
        XCTAssertEqual(try connection.query("SELECT count(*) FROM c") { $0.int64(0) }, [0])
        XCTAssertFalse(connection.inTransaction)
    }
}

extension Thread {
    /// Runs `body` on a new thread; `wait()` returns once it has.
    static func detachNewThreadWithResult(_ body: @escaping @Sendable () -> Void) -> DispatchGroup {
        let group = DispatchGroup()
        group.enter()
        detachNewThread {
            body()
            group.leave()
        }
        return group
    }
}

/// A dictionary that threads of a test fill in.
final class LockedDictionary<Key: Hashable, Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Key: Value] = [:]
    subscript(key: Key) -> Value? {
        get { lock.withLock { values[key] } }
        set { lock.withLock { values[key] = newValue } }
    }
    var all: [Key: Value] { lock.withLock { values } }
    func update<R>(_ body: (inout [Key: Value]) -> R) -> R { lock.withLock { body(&values) } }
}

extension LockedDictionary where Value == Int {
    /// Adds one to `key`'s count and returns the new count.
    func increment(_ key: Key) -> Int {
        update { values in
            values[key, default: 0] += 1
            return values[key]!
        }
    }
}
