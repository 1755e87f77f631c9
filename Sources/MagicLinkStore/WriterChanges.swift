import CSQLite
#if canImport(Glibc)
import Glibc
#endif

/// What the writer connection changed that a cached session may rest on, recorded by SQLite's
/// preupdate hook for every row any statement updates or deletes (triggers, foreign key
/// actions and REPLACE included), so no code path can change a session behind the cache's back.
/// Only touched with the writer lock held.
final class WriterChanges {
    /// Past this many sessions in one reconciliation (a purge, a large logout_all), dropping
    /// everything is cheaper than remembering each.
    static let maximumRecorded = 1_024

    /// Id hashes of session rows updated or deleted.
    private(set) var sessions: [[UInt8]] = []
    /// Everything may be stale: a user row was updated or deleted (its address, its app), or
    /// too many sessions changed to list. The session cache relies on a user change setting
    /// this: it holds each user once for all their sessions.
    private(set) var everything = false

    func reset() {
        sessions.removeAll(keepingCapacity: sessions.count <= Self.maximumRecorded)
        everything = false
    }

    private func record(session old: OpaquePointer?) {
        guard !everything else { return }
        guard let old, sqlite3_value_type(old) == SQLITE_BLOB, let bytes = sqlite3_value_blob(old),
              sessions.count < Self.maximumRecorded else {
            everything = true  // cannot tell which, or too many: drop everything
            sessions.removeAll()
            return
        }
        sessions.append(Array(UnsafeRawBufferPointer(start: bytes, count: Int(sqlite3_value_bytes(old)))))
    }

    func install(on connection: Connection) {
        sqlite3_preupdate_hook(connection.handle, { context, db, operation, _, table, _, _ in
            guard let context, let table, operation != SQLITE_INSERT else { return }
            let changes = Unmanaged<WriterChanges>.fromOpaque(context).takeUnretainedValue()
            if strcmp(table, "sessions") == 0 {
                // Column 0 is id_hash, the primary key.
                var old: OpaquePointer?
                changes.record(session: sqlite3_preupdate_old(db, 0, &old) == SQLITE_OK ? old : nil)
            } else if strcmp(table, "users") == 0 {
                changes.everything = true
            }
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    static func uninstall(from connection: Connection) {
        sqlite3_preupdate_hook(connection.handle, nil, nil)
    }
}
