import CSQLite
#if canImport(Glibc)
import Glibc
#endif

/// Group commit: write transactions that arrive while the writer is busy are run together in
/// the next SQLite transaction, each inside its own savepoint, and share one COMMIT (one WAL
/// fsync under synchronous=FULL). Nothing is acknowledged before that COMMIT returns, so every
/// caller keeps the durability of a transaction of its own; a caller whose work throws has only
/// its savepoint rolled back, exactly as its own transaction would have been.
///
/// Leader/follower, without a thread of its own: the caller that finds nobody committing takes
/// everything queued (itself included), runs it and wakes the others; a caller whose work was in
/// that batch returns, the first one left becomes the next leader.
final class GroupCommit: @unchecked Sendable {
    /// One caller's transaction body; it keeps its own result, the batch records a failure.
    private final class Pending {
        /// Dropped as soon as it has run: it captures a closure that must not outlive its caller.
        var work: ((Connection) throws -> Void)?
        var failure: (any Error)?
        var done = false
        init(_ work: @escaping (Connection) throws -> Void) { self.work = work }

        func runWork(_ connection: Connection) throws {
            guard let work else { return }
            self.work = nil
            try work(connection)
        }
    }

    private let connection: Connection
    /// Held while a batch runs; the store takes it for work outside transactions (checkpoints).
    let connectionLock: Lock
    /// Bounds one batch, so a leader's own wait stays bounded under a flood of writers.
    private let maximumBatch: Int
    private let monitor = Monitor()
    private var queue: [Pending] = []
    private var leading = false
    /// Runs after each batch, still holding the connection (the session cache's reconciliation).
    var afterBatch: (() -> Void)?

    /// How many transactions each batch carried, for tests: [batch size: count].
    var batchSizes: [Int: Int] {
        monitor.lock()
        defer { monitor.unlock() }
        return sizes
    }
    private var sizes: [Int: Int] = [:]

    init(connection: Connection, connectionLock: Lock, maximumBatch: Int = 64) {
        self.connection = connection
        self.connectionLock = connectionLock
        self.maximumBatch = maximumBatch
    }

    /// Callers waiting for the next batch (for tests).
    var queuedCount: Int {
        monitor.lock()
        defer { monitor.unlock() }
        return queue.count
    }

    /// Runs `body` as (part of) a write transaction; returns after its COMMIT.
    func perform<T>(_ body: (Connection) throws -> T) throws -> T {
        var result: T?
        let pending: Pending = withoutActuallyEscaping(body) { body in
            let pending = Pending { connection in result = try body(connection) }
            // `body` is only called by the batch that contains `pending`, which finishes before
            // this caller leaves `wait(for:)`.
            wait(for: pending)
            return pending
        }
        if let failure = pending.failure { throw failure }
        guard let result else { preconditionFailure("a batch finished without running its work") }
        return result
    }

    private func wait(for pending: Pending) {
        monitor.lock()
        queue.append(pending)
        while !pending.done {
            if leading {
                monitor.wait()
                continue
            }
            leading = true
            let batch = Array(queue.prefix(maximumBatch))
            queue.removeFirst(batch.count)
            monitor.unlock()
            connectionLock.withLock {
                run(batch)
                afterBatch?()
            }
            monitor.lock()
            for item in batch {
                item.work = nil  // not run when BEGIN failed
                item.done = true
            }
            sizes[batch.count, default: 0] += 1
            leading = false
            monitor.broadcast()
        }
        monitor.unlock()
    }

    /// One SQLite transaction for the whole batch. Every body sees the writes of the bodies
    /// before it, so a body's outcome, even a refusal ("link already used", "rate limited"),
    /// may rest on their work: when the transaction does not commit, everyone who ran in it
    /// gets the commit's error, never an answer that rested on work that is gone.
    private func run(_ batch: [Pending]) {
        // A transaction left open by an earlier failure would swallow this batch.
        do {
            try connection.rollbackIfOpen()
        } catch {
            for item in batch { item.failure = error }
            return
        }
        var ran: [Pending] = []  // ran in the open transaction, with or without an error
        var open = false
        func abandon(_ error: any Error) {
            try? connection.rollbackIfOpen()
            for item in ran { item.failure = error }
            ran.removeAll()
            open = false
        }
        for (index, item) in batch.enumerated() {
            if open, !connection.inTransaction {
                abandon(SQLiteError(code: SQLITE_ABORT, message: "SQLite rolled the transaction back", context: "group commit"))
            }
            if !open {
                do {
                    try connection.run("BEGIN IMMEDIATE")
                    open = true
                } catch {
                    // Busy for the whole busy timeout: the others would only wait as long again.
                    for rest in batch[index...] { rest.failure = error }
                    return
                }
            }
            if batch.count == 1 {
                do {
                    try item.runWork(connection)
                    ran.append(item)
                } catch {
                    item.failure = error
                    try? connection.rollbackIfOpen()
                    open = false
                }
                continue
            }
            do {
                try connection.run("SAVEPOINT batched")
            } catch {
                item.failure = error
                continue
            }
            do {
                try item.runWork(connection)
                try connection.run("RELEASE batched")
                ran.append(item)
            } catch {
                item.failure = error
                ran.append(item)
                do {
                    // Gone already (I/O error, disk full): everything before went with it.
                    guard connection.inTransaction else { throw error }
                    try connection.run("ROLLBACK TO batched")
                    try connection.run("RELEASE batched")
                } catch let rollbackError {
                    // This body's writes could not be undone alone: undo them all.
                    abandon(rollbackError)
                }
            }
        }
        guard open else { return }
        do {
            guard connection.inTransaction else {
                throw SQLiteError(code: SQLITE_ABORT, message: "SQLite rolled the transaction back", context: "group commit")
            }
            try connection.run("COMMIT")
        } catch {
            abandon(error)
        }
    }
}

/// A mutex with a condition variable.
final class Monitor: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
    }
    deinit {
        pthread_cond_destroy(&condition)
        pthread_mutex_destroy(&mutex)
    }
    func lock() { pthread_mutex_lock(&mutex) }
    func unlock() { pthread_mutex_unlock(&mutex) }
    /// Unlocks, sleeps until a broadcast, locks again.
    func wait() { pthread_cond_wait(&condition, &mutex) }
    func broadcast() { pthread_cond_broadcast(&condition) }
}
