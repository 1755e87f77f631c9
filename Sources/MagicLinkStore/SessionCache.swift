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

        init(words: (UInt64, UInt64, UInt64, UInt64)) { self.words = words }

        init?(_ hash: [UInt8]) {
            guard let hash = SecretHash(hash) else { return nil }
            words = hash.words
        }

        static func == (a: Key, b: Key) -> Bool { a.words == b.words }
    }

    /// One slot of the table, 64 bytes: the session's own fields, and its user (a user's
    /// strings are held once however many of their sessions are cached). Sessions sit in the
    /// table itself and point straight at their user's block: a cached `session` touches two
    /// places in memory, the slot and the block. (An index table into an array of sessions, and
    /// users in an array of their own, were four dependent cache misses: about a sixth of the
    /// daemon's own CPU per request.)
    private struct Entry {
        var key: Key
        var expiresAt: Int64
        var idleExpiresAt: Int64
        var touchedAt: Int64
        /// Nil: the slot is empty. Not a strong reference: `Contents.users` owns the block, and
        /// copying an entry must not cost two atomic operations.
        var user: Unmanaged<UserBlock>?

        static var empty: Entry { Entry(key: Key(words: (0, 0, 0, 0)), expiresAt: 0, idleExpiresAt: 0, touchedAt: 0, user: nil) }
    }

    /// A user that cached sessions point at, with how many do: the header, then the id and
    /// the email as one block of UTF-8, id first, in the same allocation. A cached `session`
    /// reads both with no strings and no reference counting.
    private final class UserBlock: ManagedBuffer<UserHeader, UInt8> {
        static func make(id: String, email: String, appID: String) -> UserBlock {
            let (idCount, emailCount) = (id.utf8.count, email.utf8.count)
            let block = create(minimumCapacity: idCount + emailCount) { _ in
                UserHeader(references: 0, idCount: idCount, emailCount: emailCount, appID: appID)
            } as! UserBlock
            block.withUnsafeMutablePointers { _, bytes in
                let buffer = UnsafeMutableBufferPointer(start: bytes, count: idCount + emailCount)
                _ = buffer.initialize(fromContentsOf: id.utf8)
                _ = UnsafeMutableBufferPointer(rebasing: buffer[idCount...]).initialize(fromContentsOf: email.utf8)
            }
            return block
        }

        /// The id and the email, valid during `body`.
        func withBytes<T>(_ body: (_ header: UserHeader, _ id: UnsafeRawBufferPointer, _ email: UnsafeRawBufferPointer) -> T) -> T {
            withUnsafeMutablePointers { header, bytes in
                let (idCount, emailCount) = (header.pointee.idCount, header.pointee.emailCount)
                return body(header.pointee, UnsafeRawBufferPointer(start: bytes, count: idCount),
                            UnsafeRawBufferPointer(start: bytes + idCount, count: emailCount))
            }
        }

        var references: Int {
            get { header.references }
            set { header.references = newValue }
        }

        var id: String { withBytes { _, id, _ in String(decoding: id, as: UTF8.self) } }
        var email: String { withBytes { _, _, email in String(decoding: email, as: UTF8.self) } }
        var appID: String { header.appID }
    }

    private struct UserHeader {
        var references: Int
        var idCount: Int
        var emailCount: Int
        var appID: String
    }

    /// A user block as a member of `Contents.users`: equal and hashed by the user's id (user
    /// ids are ASCII UUIDs, compared as bytes).
    private struct UserKey: Hashable {
        let block: UserBlock

        static func == (a: UserKey, b: UserKey) -> Bool {
            a.block === b.block || a.block.withBytes { _, aID, _ in b.block.withBytes { _, bID, _ in aID.elementsEqual(bID) } }
        }

        func hash(into hasher: inout Hasher) {
            block.withBytes { _, id, _ in hasher.combine(bytes: id) }
        }
    }

    /// Everything the cache holds, swapped out whole when it drops everything.
    private struct Contents {
        /// Open addressing with linear probing, at most half full. Keys are SHA-256 hashes,
        /// uniform already, so a key's first word is its hash.
        var table: [Entry] = []
        var count = 0
        /// Owns the blocks the entries point at, one per user, each held while a session
        /// points at it.
        var users: Set<UserKey> = []

        private var mask: Int { table.count - 1 }
        private func home(of key: Key) -> Int { Int(truncatingIfNeeded: key.words.0) & mask }

        /// The slot holding `key`, if it is held.
        func find(_ key: Key) -> Int? {
            guard !table.isEmpty else { return nil }
            var slot = home(of: key)
            while table[slot].user != nil {
                if table[slot].key == key { return slot }
                slot = (slot + 1) & mask
            }
            return nil
        }

        /// Puts `entry` in (its key is not held yet).
        mutating func insert(_ entry: Entry) {
            if (count + 1) * 2 > table.count { grow() }
            var slot = home(of: entry.key)
            while table[slot].user != nil { slot = (slot + 1) & mask }
            table[slot] = entry
            count += 1
        }

        /// Empties `slot` (which is held) and lets go of its user, shifting later probes back
        /// so none is cut off.
        mutating func remove(at slot: Int) {
            release(table[slot].user!)
            var hole = slot
            var next = hole
            while true {
                next = (next + 1) & mask
                guard table[next].user != nil else { break }
                let wanted = home(of: table[next].key)
                // Move it into the hole unless its home lies cyclically in (hole, next].
                let staysPut = hole <= next ? (hole < wanted && wanted <= next) : (hole < wanted || wanted <= next)
                if !staysPut {
                    table[hole] = table[next]
                    hole = next
                }
            }
            table[hole] = .empty
            count -= 1
        }

        /// The first held slot at or after `start` (some slot is held).
        func heldSlot(from start: Int) -> Int {
            var slot = start & mask
            while table[slot].user == nil { slot = (slot + 1) & mask }
            return slot
        }

        private mutating func grow() {
            let old = table
            table = [Entry](repeating: .empty, count: max(1_024, table.count * 2))
            for entry in old where entry.user != nil {
                var slot = home(of: entry.key)
                while table[slot].user != nil { slot = (slot + 1) & mask }
                table[slot] = entry
            }
        }

        /// The session's user, held once more. A user held already is kept as it is: a user row
        /// that changed has dropped everything (see the type's comment).
        mutating func retainUser(of session: CachedSession) -> Unmanaged<UserBlock> {
            let candidate = UserKey(block: .make(id: session.userID, email: session.email, appID: session.appID))
            let block = users.insert(candidate).memberAfterInsert.block
            block.references += 1
            return Unmanaged.passUnretained(block)
        }

        /// Lets go of one session's hold on its user; the last one frees the user.
        mutating func release(_ user: Unmanaged<UserBlock>) {
            let block = user.takeUnretainedValue()
            block.references -= 1
            if block.references == 0 { users.remove(UserKey(block: block)) }
        }
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

    var count: Int { lock.withLock { contents.count } }

    /// Users held for the cached sessions (for tests: each is held once, and let go with its
    /// last session).
    var userCount: Int { lock.withLock { contents.users.count } }

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
            let entry = contents.table[slot]
            // The block lives while its entry does, and the entry while the lock is held.
            return entry.user!._withUnsafeGuaranteedRef { user in
                user.withBytes { header, id, email in
                    guard usable(CachedSessionTimes(appID: header.appID, expiresAt: entry.expiresAt,
                                                    idleExpiresAt: entry.idleExpiresAt, touchedAt: entry.touchedAt)) else {
                        misses &+= 1
                        return false
                    }
                    hits &+= 1
                    answer(CachedSessionBytes(userID: id, email: email, expiresAt: entry.expiresAt, idleExpiresAt: entry.idleExpiresAt))
                    return true
                }
            }
        }
    }

    func lookup(_ hash: SecretHash, usable: (CachedSession) -> Bool = { _ in true }) -> CachedSession? {
        let key = Key(hash)
        return lock.withLock {
            guard counter.state == current, let slot = contents.find(key) else {
                misses &+= 1
                return nil
            }
            let entry = contents.table[slot]
            let user = entry.user!.takeUnretainedValue()
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
        lock.withLock { SessionCacheStatistics(capacity: capacity, entries: contents.count, hits: hits, misses: misses) }
    }

    /// Taken before a read transaction begins; hand it back to `fill`.
    func fillGeneration() -> UInt64 { lock.withLock { generation } }

    /// Keeps a session read in a transaction that began after `generation` was taken, unless
    /// something was dropped since (the read may predate that change).
    func fill(_ hash: [UInt8], _ session: CachedSession, generation taken: UInt64) {
        guard capacity > 0, let key = Key(hash) else { return }
        lock.withLock {
            guard taken == generation else { return }
            let user = contents.retainUser(of: session)
            let entry = Entry(key: key, expiresAt: session.expiresAt, idleExpiresAt: session.idleExpiresAt,
                              touchedAt: session.touchedAt, user: user)
            if let slot = contents.find(key) {
                // The row may have new times (its user is the one held already).
                contents.release(contents.table[slot].user!)
                contents.table[slot] = entry
                return
            }
            if contents.count >= capacity { contents.remove(at: contents.heldSlot(from: randomIndex())) }
            contents.insert(entry)
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
                    if let key = Key(hash), let slot = contents.find(key) { contents.remove(at: slot) }
                }
                generation &+= 1
            }
            current = state
        }
        _ = dropped
    }

    /// xorshift64*: eviction needs spread, not secrecy.
    private func randomIndex() -> Int {
        randomState ^= randomState >> 12
        randomState ^= randomState << 25
        randomState ^= randomState >> 27
        return Int(truncatingIfNeeded: randomState &* 0x2545_F491_4F6C_DD1D)
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
