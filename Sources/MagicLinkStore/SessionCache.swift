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
/// A user's id, email and app are held once for all their cached sessions, so any change to a
/// user row must drop everything (as `WriterChanges` and `PRAGMA data_version` make it do):
/// dropping only the sessions named would leave the others answering with the old user.
final class SessionCache: @unchecked Sendable {
    /// A session id hash (SHA-256), compared as four words; the first is its place in the table.
    struct Key: Equatable {
        let words: (UInt64, UInt64, UInt64, UInt64)

        init(_ hash: SecretHash) { words = hash.words }

        init?(_ hash: [UInt8]) {
            guard let hash = SecretHash(hash) else { return nil }
            words = hash.words
        }

        static func == (a: Key, b: Key) -> Bool { a.words == b.words }
    }

    /// 64 bytes: the session's own fields, and its user by index (a user's strings are held
    /// once however many of their sessions are cached).
    private struct Entry {
        var key: Key
        var user: UInt32
        var expiresAt: Int64
        var idleExpiresAt: Int64
        var touchedAt: Int64
    }

    /// A user that cached sessions point at, with how many do. Its id and email are one block
    /// of UTF-8, id first: a cached `session` reads both in one memory access, with no strings
    /// and no reference counting (two strings were two more cache misses and four atomic
    /// operations per call).
    private struct User {
        var utf8: [UInt8]
        var idCount: Int
        var appID: String
        var references: Int

        static let none = User(utf8: [], idCount: 0, appID: "", references: 0)

        init(utf8: [UInt8], idCount: Int, appID: String, references: Int) {
            self.utf8 = utf8
            self.idCount = idCount
            self.appID = appID
            self.references = references
        }

        init(id: String, email: String, appID: String) {
            utf8 = Array(id.utf8) + Array(email.utf8)
            idCount = id.utf8.count
            self.appID = appID
            references = 1
        }

        var id: String { String(decoding: utf8[..<idCount], as: UTF8.self) }
        var email: String { String(decoding: utf8[idCount...], as: UTF8.self) }
        /// The key of `Contents.userSlots`, sharing this user's block.
        var key: UserKey { UserKey(utf8: utf8, idCount: idCount) }
    }

    /// A user's id as a dictionary key: the first `idCount` bytes of a block (compared as
    /// bytes; user ids are ASCII UUIDs).
    private struct UserKey: Hashable {
        let utf8: [UInt8]
        let idCount: Int

        init(utf8: [UInt8], idCount: Int) {
            self.utf8 = utf8
            self.idCount = idCount
        }

        init(id: String) {
            utf8 = Array(id.utf8)
            idCount = utf8.count
        }

        static func == (a: UserKey, b: UserKey) -> Bool { a.utf8[..<a.idCount].elementsEqual(b.utf8[..<b.idCount]) }

        func hash(into hasher: inout Hasher) {
            utf8.withUnsafeBytes { hasher.combine(bytes: UnsafeRawBufferPointer(rebasing: $0[..<idCount])) }
        }
    }

    /// Everything the cache holds, swapped out whole when it drops everything.
    private struct Contents {
        /// Entries in a flat array so that eviction can pick one at random in O(1).
        var entries: [Entry] = []
        /// Where each key's entry is: open addressing with linear probing, a slot holding an
        /// index into `entries` plus one (0: empty). Keys are SHA-256 hashes, uniform already,
        /// so a key's first word is its hash. Four bytes a slot, at most half of them used.
        var table: [UInt32] = []

        private var mask: Int { table.count - 1 }
        private func home(of key: Key) -> Int { Int(truncatingIfNeeded: key.words.0) & mask }

        /// The table slot holding `key`, if it is held.
        func position(of key: Key) -> Int? {
            guard !table.isEmpty else { return nil }
            var slot = home(of: key)
            while table[slot] != 0 {
                if entries[Int(table[slot]) - 1].key == key { return slot }
                slot = (slot + 1) & mask
            }
            return nil
        }

        func find(_ key: Key) -> Int? { position(of: key).map { Int(table[$0]) - 1 } }

        /// Records that `key`'s entry is at `entry` (a key not in the table yet).
        mutating func insert(_ key: Key, at entry: Int) {
            if (entries.count + 1) * 2 > table.count { grow() }
            var slot = home(of: key)
            while table[slot] != 0 { slot = (slot + 1) & mask }
            table[slot] = UInt32(entry + 1)
        }

        /// Forgets `key` (which is held), shifting later probes back so none is cut off.
        mutating func remove(_ key: Key) {
            guard var hole = position(of: key) else { return }
            var next = hole
            while true {
                next = (next + 1) & mask
                guard table[next] != 0 else { break }
                let wanted = home(of: entries[Int(table[next]) - 1].key)
                // Move it into the hole unless its home lies cyclically in (hole, next].
                let staysPut = hole <= next ? (hole < wanted && wanted <= next) : (hole < wanted || wanted <= next)
                if !staysPut {
                    table[hole] = table[next]
                    hole = next
                }
            }
            table[hole] = 0
        }

        /// Points `key`'s slot at `entry` (after the entry moved in `entries`).
        mutating func move(_ key: Key, to entry: Int) {
            if let slot = position(of: key) { table[slot] = UInt32(entry + 1) }
        }

        private mutating func grow() {
            table = [UInt32](repeating: 0, count: max(1_024, table.count * 2))
            for (offset, entry) in entries.enumerated() {
                var slot = home(of: entry.key)
                while table[slot] != 0 { slot = (slot + 1) & mask }
                table[slot] = UInt32(offset + 1)
            }
        }
        var users: [User] = []
        var userSlots: [UserKey: UInt32] = [:]
        var freeUsers: [UInt32] = []
    }

    private let lock = Lock()
    private let counter: WALCommitCounter
    let capacity: Int
    // Touched only under `lock`, and no access to one of them spans a call that could touch it
    // again (the closures `lookup` and `withSession` call under the lock must not call the
    // cache: the lock is not recursive, so they would deadlock first): the run-time exclusivity
    // checks (a thread-local look-up per access, on every cached `session`) could never fire.
    @exclusivity(unchecked) private var contents = Contents()
    @exclusivity(unchecked) private var generation: UInt64 = 0
    @exclusivity(unchecked) private var current: WALCommitCounter.State
    @exclusivity(unchecked) private var randomState: UInt64 = 0x9E37_79B9_7F4A_7C15
    @exclusivity(unchecked) private var hits: UInt64 = 0
    @exclusivity(unchecked) private var misses: UInt64 = 0

    init(counter: WALCommitCounter, capacity: Int) {
        self.counter = counter
        self.capacity = capacity
        current = counter.state
    }

    var count: Int { lock.withLock { contents.entries.count } }

    /// Users held for the cached sessions (for tests: each is held once, and let go with its
    /// last session).
    var userCount: Int { lock.withLock { contents.userSlots.count } }

    /// Where the database stands now.
    var counterState: WALCommitCounter.State { counter.state }

    /// Whether a commit has not been reconciled yet (every lookup misses meanwhile).
    var isBehind: Bool { lock.withLock { counter.state != current } }

    /// The session, if held, `usable`, and the database has not moved since the last
    /// reconciliation. Counts a hit or a miss.
    func lookup(_ hash: [UInt8], usable: (CachedSession) -> Bool = { _ in true }) -> CachedSession? {
        guard let hash = SecretHash(hash) else {
            lock.withLock { misses &+= 1 }
            return nil
        }
        return lookup(hash, usable: usable)
    }

    /// The cached `session`'s own look-up: `usable` decides from the session's app and times,
    /// then `answer` gets the user's id and email as UTF-8 bytes, valid only during the call.
    /// Both run under the cache's lock: they must be quick and must not call the cache. Returns
    /// whether `answer` ran; counts a hit or a miss as `lookup` does.
    func withSession(_ hash: SecretHash, usable: (CachedSessionTimes) -> Bool, answer: (CachedSessionBytes) -> Void) -> Bool {
        let key = Key(hash)
        return lock.withLock {
            guard counter.state == current, let slot = contents.find(key) else {
                misses &+= 1
                return false
            }
            let entry = contents.entries[slot]
            let index = Int(entry.user)
            guard usable(CachedSessionTimes(appID: contents.users[index].appID, expiresAt: entry.expiresAt,
                                            idleExpiresAt: entry.idleExpiresAt, touchedAt: entry.touchedAt)) else {
                misses &+= 1
                return false
            }
            hits &+= 1
            let idCount = contents.users[index].idCount
            contents.users[index].utf8.withUnsafeBytes { block in
                answer(CachedSessionBytes(userID: UnsafeRawBufferPointer(rebasing: block[..<idCount]),
                                          email: UnsafeRawBufferPointer(rebasing: block[idCount...]),
                                          expiresAt: entry.expiresAt, idleExpiresAt: entry.idleExpiresAt))
            }
            return true
        }
    }

    func lookup(_ hash: SecretHash, usable: (CachedSession) -> Bool = { _ in true }) -> CachedSession? {
        let key = Key(hash)
        return lock.withLock {
            guard counter.state == current, let slot = contents.find(key) else {
                misses &+= 1
                return nil
            }
            let entry = contents.entries[slot]
            let user = contents.users[Int(entry.user)]
            let session = CachedSession(userID: user.id, email: user.email, appID: user.appID, expiresAt: entry.expiresAt,
                                        idleExpiresAt: entry.idleExpiresAt, touchedAt: entry.touchedAt)
            guard usable(session) else {
                misses &+= 1
                return nil
            }
            hits &+= 1
            return session
        }
    }

    var statistics: SessionCacheStatistics {
        lock.withLock { SessionCacheStatistics(capacity: capacity, entries: contents.entries.count, hits: hits, misses: misses) }
    }

    /// Taken before a read transaction begins; hand it back to `fill`.
    func fillGeneration() -> UInt64 { lock.withLock { generation } }

    /// Keeps a session read in a transaction that began after `generation` was taken, unless
    /// something was dropped since (the read may predate that change).
    func fill(_ hash: [UInt8], _ session: CachedSession, generation taken: UInt64) {
        guard capacity > 0, let key = Key(hash) else { return }
        lock.withLock {
            guard taken == generation else { return }
            if let slot = contents.find(key) {
                // A session keeps its user (its row may have new times).
                release(user: contents.entries[slot].user)
                contents.entries[slot] = Entry(key: key, user: retainUser(of: session), expiresAt: session.expiresAt,
                                               idleExpiresAt: session.idleExpiresAt, touchedAt: session.touchedAt)
                return
            }
            if contents.entries.count >= capacity { removeSlot(randomSlot()) }
            contents.insert(key, at: contents.entries.count)
            contents.entries.append(Entry(key: key, user: retainUser(of: session), expiresAt: session.expiresAt,
                                          idleExpiresAt: session.idleExpiresAt, touchedAt: session.touchedAt))
        }
    }

    /// Called by the writer, with no transaction open, once the commits it made are done:
    /// `state` was read before `external` was learnt, `changed` are the sessions this process
    /// updated or deleted since the last call.
    func reconcile(state: WALCommitCounter.State, external: Bool, everything: Bool, changed: [[UInt8]]) {
        var dropped = Contents()
        lock.withLock {
            if external || everything {
                // Freed after the lock is released: event loops wait on it.
                swap(&dropped, &contents)
                generation &+= 1
            } else if !changed.isEmpty {
                for hash in changed {
                    if let key = Key(hash), let slot = contents.find(key) { removeSlot(slot) }
                }
                generation &+= 1
            }
            current = state
        }
        _ = dropped
    }

    private func removeSlot(_ slot: Int) {
        let last = contents.entries.count - 1
        contents.remove(contents.entries[slot].key)
        release(user: contents.entries[slot].user)
        if slot != last {
            contents.entries[slot] = contents.entries[last]
            contents.move(contents.entries[slot].key, to: slot)
        }
        contents.entries.removeLast()
    }

    /// The index of the session's user, held once more. A user held already is kept as it is:
    /// a user row that changed has dropped everything (see the type's comment).
    private func retainUser(of session: CachedSession) -> UInt32 {
        if let index = contents.userSlots[UserKey(id: session.userID)] {
            contents.users[Int(index)].references += 1
            return index
        }
        let user = User(id: session.userID, email: session.email, appID: session.appID)
        let index: UInt32
        if let free = contents.freeUsers.popLast() {
            index = free
            contents.users[Int(index)] = user
        } else {
            index = UInt32(contents.users.count)
            contents.users.append(user)
        }
        contents.userSlots[user.key] = index
        return index
    }

    /// Lets go of one session's hold on its user; the last one frees the user's slot.
    private func release(user index: UInt32) {
        contents.users[Int(index)].references -= 1
        guard contents.users[Int(index)].references == 0 else { return }
        contents.userSlots[contents.users[Int(index)].key] = nil
        contents.users[Int(index)] = .none
        contents.freeUsers.append(index)
    }

    /// xorshift64*: eviction needs spread, not secrecy.
    private func randomSlot() -> Int {
        randomState ^= randomState >> 12
        randomState ^= randomState << 25
        randomState ^= randomState >> 27
        return Int((randomState &* 0x2545_F491_4F6C_DD1D) % UInt64(contents.entries.count))
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
