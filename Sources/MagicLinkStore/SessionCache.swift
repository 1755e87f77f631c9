import MagicLinkCore

/// Sessions that `session` has read from the database, kept so that the next check of the same
/// session is answered on the event loop: no thread hop, no SQLite. Every page of every app
/// checks its session, so this is the daemon's hottest path.
///
/// It never answers from a state older than the database's. Entries are only usable while the
/// WAL commit counter equals `current`, the count of the last reconciliation:
/// - a commit by anyone moves the counter, and until the writer has reconciled (after each of
///   its batches, or on the next database read) every lookup misses;
/// - the writer's preupdate hook names each session row this process updated or deleted (a
///   touch, a logout, a revocation, a purge) and notes any change to users; reconciling drops
///   those sessions, or everything when users changed;
/// - a commit by another connection (an admin's sqlite3) shows in the writer's
///   `PRAGMA data_version`; reconciling then drops everything;
/// - a read that fills an entry took the generation before its snapshot: a reconciliation that
///   dropped anything in between bumps the generation and the fill is refused, so a snapshot
///   from before a revocation cannot bring the session back.
/// Expiry and the idle-expiry touch are checked by the caller against its clock, as from a row.
final class SessionCache: @unchecked Sendable {
    /// A session id hash (SHA-256) as a dictionary key.
    struct Key: Hashable {
        let words: (UInt64, UInt64, UInt64, UInt64)

        init?(_ hash: [UInt8]) {
            guard hash.count == 32 else { return nil }
            words = hash.withUnsafeBytes { raw in
                (raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self), raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
                 raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self), raw.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
            }
        }

        static func == (a: Key, b: Key) -> Bool { a.words == b.words }
        func hash(into hasher: inout Hasher) {
            hasher.combine(words.0)
            hasher.combine(words.1)
            hasher.combine(words.2)
            hasher.combine(words.3)
        }
    }

    private struct Entry {
        var key: Key
        var session: CachedSession
    }

    private let lock = Lock()
    private let counter: WALCommitCounter
    let capacity: Int
    /// Entries in a flat array so that eviction can pick one at random in O(1).
    private var entries: [Entry] = []
    private var slots: [Key: Int] = [:]
    private var generation: UInt64 = 0
    private var current: WALCommitCounter.State
    private var randomState: UInt64 = 0x9E37_79B9_7F4A_7C15
    private var hits: UInt64 = 0
    private var misses: UInt64 = 0

    init(counter: WALCommitCounter, capacity: Int) {
        self.counter = counter
        self.capacity = capacity
        current = counter.state
    }

    var count: Int { lock.withLock { entries.count } }

    /// Where the database stands now.
    var counterState: WALCommitCounter.State { counter.state }

    /// Whether a commit has not been reconciled yet (every lookup misses meanwhile).
    var isBehind: Bool { lock.withLock { counter.state != current } }

    /// The session, if held, `usable`, and the database has not moved since the last
    /// reconciliation. Counts a hit or a miss.
    func lookup(_ hash: [UInt8], usable: (CachedSession) -> Bool = { _ in true }) -> CachedSession? {
        let key = Key(hash)
        return lock.withLock {
            guard let key, counter.state == current, let slot = slots[key], usable(entries[slot].session) else {
                misses &+= 1
                return nil
            }
            hits &+= 1
            return entries[slot].session
        }
    }

    var statistics: SessionCacheStatistics {
        lock.withLock { SessionCacheStatistics(capacity: capacity, entries: entries.count, hits: hits, misses: misses) }
    }

    /// Taken before a read transaction begins; hand it back to `fill`.
    func fillGeneration() -> UInt64 { lock.withLock { generation } }

    /// Keeps a session read in a transaction that began after `generation` was taken, unless
    /// something was dropped since (the read may predate that change).
    func fill(_ hash: [UInt8], _ session: CachedSession, generation taken: UInt64) {
        guard capacity > 0, let key = Key(hash) else { return }
        lock.withLock {
            guard taken == generation else { return }
            if let slot = slots[key] {
                entries[slot].session = session
                return
            }
            if entries.count >= capacity { removeSlot(randomSlot()) }
            slots[key] = entries.count
            entries.append(Entry(key: key, session: session))
        }
    }

    /// Called by the writer, with no transaction open, once the commits it made are done:
    /// `state` was read before `external` was learnt, `changed` are the sessions this process
    /// updated or deleted since the last call.
    func reconcile(state: WALCommitCounter.State, external: Bool, everything: Bool, changed: [[UInt8]]) {
        var dropped: ([Entry], [Key: Int]) = ([], [:])
        lock.withLock {
            if external || everything {
                // Freed after the lock is released: event loops wait on it.
                swap(&dropped.0, &entries)
                swap(&dropped.1, &slots)
                generation &+= 1
            } else if !changed.isEmpty {
                for hash in changed {
                    if let key = Key(hash), let slot = slots[key] { removeSlot(slot) }
                }
                generation &+= 1
            }
            current = state
        }
        _ = dropped
    }

    private func removeSlot(_ slot: Int) {
        let last = entries.count - 1
        slots[entries[slot].key] = nil
        if slot != last {
            entries[slot] = entries[last]
            slots[entries[slot].key] = slot
        }
        entries.removeLast()
    }

    /// xorshift64*: eviction needs spread, not secrecy.
    private func randomSlot() -> Int {
        randomState ^= randomState >> 12
        randomState ^= randomState << 25
        randomState ^= randomState >> 27
        return Int((randomState &* 0x2545_F491_4F6C_DD1D) % UInt64(entries.count))
    }
}

/// How the session cache is doing: `hits` are `session` calls answered from memory, `misses`
/// well-formed ones that were not (unknown, dead, due for a touch, or not held).
public struct SessionCacheStatistics: Sendable, Equatable {
    public var capacity: Int
    public var entries: Int
    public var hits: UInt64
    public var misses: UInt64
}
