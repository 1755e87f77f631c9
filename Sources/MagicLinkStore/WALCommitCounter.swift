import CSQLite
#if canImport(Glibc)
import Glibc
#endif

/// SQLite's own count of commits to a WAL database, read from the wal-index (the `-shm` file
/// every connection maps): `iChange` of the index header, which every commit by any connection
/// of any process increments before that commit returns (https://www.sqlite.org/walformat.html).
/// One memory load, no lock and no I/O, so an event loop can ask "has anyone committed since?"
/// without touching SQLite.
final class WALCommitCounter: @unchecked Sendable {
    /// `iChange` of the first header copy, the one a committer writes last.
    private static let offset = 8
    private static let headerBytes = 48
    private let mapping: UnsafeMutableRawPointer
    private let length: Int

    /// Maps the index of the database at `path`; nil when it has none (not in WAL mode yet, or
    /// a VFS that keeps the index in heap memory). A connection must keep the database open for
    /// as long as this lives: the index file is only rebuilt when no connection is left.
    init?(databasePath path: String) {
        let fd = open(path + "-shm", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size >= Self.headerBytes * 2 else { return nil }
        let length = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard let mapped = mmap(nil, length, PROT_READ, MAP_SHARED, fd, 0), mapped != MAP_FAILED else { return nil }
        mapping = mapped
        self.length = length
    }

    deinit { munmap(mapping, length) }

    /// Commits so far (wraps at 2^32); equal values mean nobody committed in between.
    var value: UInt32 { csqlite_load_acquire_u32(mapping + Self.offset) }
}
