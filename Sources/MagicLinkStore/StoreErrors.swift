import MagicLinkCore

/// The database could not do the work now (busy, locked, full, I/O error). Retryable.
public struct StoreUnavailable: TransientFailure, CustomStringConvertible {
    public let underlying: SQLiteError
    public var description: String { "database unavailable: \(underlying)" }
}

public enum StoreError: Error, CustomStringConvertible {
    case newerSchema(migration: String)
    case filePermissions(path: String, errno: Int32)
    case migrationBrokeForeignKeys(table: String)

    public var description: String {
        switch self {
        case .newerSchema(let name):
            return "the database was migrated by a newer magiclinkd (unknown migration \(name)); refusing to use it"
        case .filePermissions(let path, let code):
            return "cannot set mode 0600 on \(path) (errno \(code))"
        case .migrationBrokeForeignKeys(let table):
            return "a schema migration left rows of \(table) pointing nowhere; nothing was changed"
        }
    }
}

/// Turns transient SQLite failures into `StoreUnavailable`, leaves everything else as it is.
func classify(_ error: any Error) -> any Error {
    if let sqlite = error as? SQLiteError, sqlite.isTransient { return StoreUnavailable(underlying: sqlite) }
    return error
}
