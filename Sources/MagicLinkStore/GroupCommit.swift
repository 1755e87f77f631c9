import CSQLite
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Group commit: write transactions that arrive while the writer is busy are run together in
/// the next SQLite transaction, each inside its own savepoint, and share one COMMIT (one WAL
/// fsync under synchronous=FULL). Nothing is acknowledged before that COMMIT returns, so every
/// caller keeps the durability of a transaction of its own; a caller whose work throws has only
/// its savepoint rolled back, exactly as its own transaction would have been.
///
/// Leader/follower, without a thread of its own: the blocking caller that finds nobody
/// committing takes everything queued (itself included), runs it and wakes the others; a caller
/// whose work was in that batch returns, the first one left becomes the next leader.
/// Suspending callers (`perform(_:) async`) hold no thread while they wait, so a batch can carry
/// as many of them as there are requests in flight; when only they are queued, a drain on
/// `drainQueue` leads. Blocking callers go first in each batch: they hold a thread each (a
/// session touch holds one of the `session` pool's), and there are few of them, while up to a
/// connection limit's worth of logins may be suspended.
final class GroupCommit: @unchecked Sendable {
    /// One caller's transaction body; it keeps its own result, the batch records a failure.
    private final class Pending {
        /// Dropped as soon as it has run: it captures a closure that must not outlive its caller.
        var work: ((Connection) throws -> Void)?
        var failure: (any Error)?
        var done = false
        /// Set for a suspending caller: called once its batch is over, outside the monitor.
        let completion: (((any Error)?) -> Void)?
        init(_ work: @escaping (Connection) throws -> Void, completion: (((any Error)?) -> Void)? = nil) {
            self.work = work
            self.completion = completion
        }

        func runWork(_ connection: Connection) throws {
            guard let work else { return }
            self.work = nil
            try work(connection)
        }
    }

    /// Carries a suspending caller's result from the batch to its continuation.
    private final class ResultBox<T>: @unchecked Sendable {
        var value: T?
    }

    private let connection: Connection
    /// Held while a batch runs; the store takes it for work outside transactions (checkpoints).
    let connectionLock: Lock
    /// Bounds one batch, so a leader's own wait stays bounded under a flood of writers.
    private let maximumBatch: Int
    private let monitor = Monitor()
    /// Waiting blocking callers, then suspended ones (each batch takes from `blockingQueue` first).
    private var blockingQueue: [Pending] = []
    private var suspendedQueue: [Pending] = []
    private var leading = false
    /// Blocking callers not done yet: one of them leads next, else a drain must.
    private var queuedBlocking = 0
    private var drainScheduled = false
    /// Where a batch of suspending callers only runs: never an event loop, never the
    /// cooperative pool (SQLite blocks).
    private let drainQueue = DispatchQueue(label: "magiclinkd.group-commit")
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
        return blockingQueue.count + suspendedQueue.count
    }

    private var isQueueEmpty: Bool { blockingQueue.isEmpty && suspendedQueue.isEmpty }

    /// Returns once nothing is queued or running (no new writes may be arriving): at shutdown,
    /// so the last suspended logins commit before the final checkpoint.
    func waitUntilIdle() {
        monitor.lock()
        while leading || drainScheduled || !isQueueEmpty { monitor.wait() }
        monitor.unlock()
    }

    /// Runs `body` as (part of) a write transaction; returns after its COMMIT. Blocks the thread.
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

    /// Runs `body` as (part of) a write transaction; returns after its COMMIT. Suspends instead
    /// of blocking, so it may be called from an event loop: `body` runs on the leader's thread.
    func perform<T: Sendable>(_ body: @escaping @Sendable (Connection) throws -> T) async throws -> T {
        try await withUnsafeThrowingContinuation { continuation in
            let box = ResultBox<T>()
            let pending = Pending({ connection in box.value = try body(connection) }, completion: { failure in
                if let failure {
                    continuation.resume(throwing: failure)
                } else if let value = box.value {
                    continuation.resume(returning: value)
                } else {
                    preconditionFailure("a batch finished without running its work")
                }
            })
            monitor.lock()
            suspendedQueue.append(pending)
            let drain = scheduleDrainIfNeeded()
            monitor.unlock()
            if drain { drainQueue.async { self.drain() } }
        }
    }

    private func wait(for pending: Pending) {
        monitor.lock()
        blockingQueue.append(pending)
        queuedBlocking += 1
        while !pending.done {
            if leading {
                monitor.wait()
                continue
            }
            let finished = leadOneBatch()
            let drain = scheduleDrainIfNeeded()
            monitor.unlock()
            complete(finished)
            if drain { drainQueue.async { self.drain() } }
            monitor.lock()
        }
        monitor.unlock()
    }

    /// Leads batches while only suspending callers are left to lead them.
    private func drain() {
        monitor.lock()
        drainScheduled = false
        while !leading, !isQueueEmpty, queuedBlocking == 0 {
            let finished = leadOneBatch()
            monitor.unlock()
            complete(finished)
            monitor.lock()
        }
        monitor.broadcast()  // for `waitUntilIdle`, which also waits for a scheduled drain
        monitor.unlock()
    }

    /// Called with the monitor held: true when the queue has work that no blocking caller will
    /// lead and no drain is on its way (the caller then schedules one, after unlocking).
    private func scheduleDrainIfNeeded() -> Bool {
        guard !leading, !drainScheduled, !isQueueEmpty, queuedBlocking == 0 else { return false }
        drainScheduled = true
        return true
    }

    /// Called with the monitor held, which it releases while the batch runs; returns the
    /// suspending callers of the batch, to be completed after the monitor is released.
    private func leadOneBatch() -> [Pending] {
        leading = true
        var batch = Array(blockingQueue.prefix(maximumBatch))
        blockingQueue.removeFirst(batch.count)
        let suspended = suspendedQueue.prefix(maximumBatch - batch.count)
        batch += suspended
        suspendedQueue.removeFirst(suspended.count)
        monitor.unlock()
        connectionLock.withLock {
            run(batch)
            afterBatch?()
        }
        monitor.lock()
        var finished: [Pending] = []
        for item in batch {
            item.work = nil  // not run when BEGIN failed
            item.done = true
            if item.completion == nil { queuedBlocking -= 1 } else { finished.append(item) }
        }
        sizes[batch.count, default: 0] += 1
        leading = false
        monitor.broadcast()
        return finished
    }

    private func complete(_ finished: [Pending]) {
        for item in finished { item.completion?(item.failure) }
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
