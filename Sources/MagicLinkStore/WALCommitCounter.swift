import CSQLite

/// Where a WAL database stands, read from the wal-index header that every connection of every
/// process shares (https://www.sqlite.org/walformat.html): `iChange`, which each commit
/// increments before it returns, with the last frame and its checksum, so that an index rebuilt
/// from scratch (recovery restarts `iChange` at 0) cannot pass for the state it replaced.
/// Four memory loads from SQLite's own mapping: no lock, no I/O, no SQLite call, so an event
/// loop can ask "has anyone committed since?".
final class WALCommitCounter: @unchecked Sendable {
    struct State: Equatable {
        var change: UInt32
        var lastFrame: UInt32
        var checksum: (UInt32, UInt32)

        static func == (a: State, b: State) -> Bool {
            a.change == b.change && a.lastFrame == b.lastFrame && a.checksum == b.checksum
        }
    }

    /// Keeps the mapping alive: SQLite unmaps it when the last connection to the file closes.
    private let connection: Connection
    private let header: UnsafeRawPointer

    /// SQLite's mapping of the index of `connection`'s database; nil when it has none (not in
    /// WAL mode, or a VFS without shared memory). Call before other threads use `connection`.
    init?(connection: Connection) {
        guard let handle = connection.handle, let region = csqlite_wal_index(handle) else { return nil }
        self.connection = connection
        header = region
    }

    /// The first header copy, the one a committer writes last.
    var state: State {
        State(change: csqlite_load_acquire_u32(header + 8), lastFrame: csqlite_load_acquire_u32(header + 16),
              checksum: (csqlite_load_acquire_u32(header + 24), csqlite_load_acquire_u32(header + 28)))
    }
}
