import CSQLite

/// What the writer connection changed that a cached session may rest on, recorded by SQLite's
/// preupdate hook for every row any statement updates or deletes (triggers, foreign key
/// actions and REPLACE included), so no code path can change a session behind the cache's back.
/// Only touched with the writer lock held.
final class WriterChanges {
    /// Id hashes of session rows updated or deleted.
    private(set) var sessions: [[UInt8]] = []
    /// A user row was updated or deleted (its address, its app): every session may be stale.
    private(set) var usersChanged = false

    func reset() {
        sessions.removeAll(keepingCapacity: true)
        usersChanged = false
    }

    func install(on connection: Connection) {
        sqlite3_preupdate_hook(connection.handle, { context, db, operation, database, table, _, _ in
            guard let context, let table, operation != SQLITE_INSERT else { return }
            let changes = Unmanaged<WriterChanges>.fromOpaque(context).takeUnretainedValue()
            switch String(cString: table) {
            case "sessions":
                var old: OpaquePointer?
                // Column 0 is id_hash, the primary key.
                guard sqlite3_preupdate_old(db, 0, &old) == SQLITE_OK, let old,
                      sqlite3_value_type(old) == SQLITE_BLOB, let bytes = sqlite3_value_blob(old) else {
                    changes.usersChanged = true  // cannot tell which: drop everything
                    return
                }
                let count = Int(sqlite3_value_bytes(old))
                changes.sessions.append(Array(UnsafeRawBufferPointer(start: bytes, count: count)))
            case "users":
                changes.usersChanged = true
            default:
                return
            }
        }, Unmanaged.passUnretained(self).toOpaque())
    }
}
