import CSQLite
#if canImport(Glibc)
import Glibc
#endif

/// A failed SQLite call, with its (extended) result code. Busy and locked databases are
/// transient: the wire reports them as `unavailable`.
public struct SQLiteError: Error, CustomStringConvertible {
    public let code: Int32
    public let message: String
    public let context: String

    public var isTransient: Bool {
        let primary = code & 0xFF
        return primary == SQLITE_BUSY || primary == SQLITE_LOCKED || primary == SQLITE_FULL
            || primary == SQLITE_IOERR || primary == SQLITE_CANTOPEN || primary == SQLITE_PROTOCOL
            || primary == SQLITE_NOMEM || primary == SQLITE_ABORT
    }

    public var description: String { "SQLite error \(code) (\(message)) in \(context)" }
}


/// One SQLite connection with a cache of prepared statements. Not thread-safe: the store hands
/// each connection to one thread at a time.
final class Connection {
    private(set) var handle: OpaquePointer?
    private var statements: [String: OpaquePointer] = [:]

    /// Set once, before the first connection initializes SQLite: a group-commit batch keeps
    /// its savepoints' undo pages in memory (4 MiB), and only a very large write (a purge after
    /// a long outage) spills them to a temporary file, so memory stays bounded.
    private static let configured = csqlite_set_statement_journal_spill(4 << 20) == SQLITE_OK

    init(path: String, readOnly: Bool = false) throws {
        _ = Self.configured
        var db: OpaquePointer?
        let flags = (readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
            | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        handle = db
        guard rc == SQLITE_OK else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close_v2(db)
            handle = nil
            throw SQLiteError(code: rc, message: message, context: "open \(path)")
        }
        sqlite3_busy_timeout(db, 5_000)
    }

    deinit {
        for statement in statements.values { sqlite3_finalize(statement) }
        sqlite3_close_v2(handle)
    }

    func error(_ rc: Int32, _ context: String) -> SQLiteError {
        SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(handle)), context: context)
    }

    /// Runs SQL that returns no rows (may hold several statements).
    func execute(_ sql: String) throws {
        let rc = sqlite3_exec(handle, sql, nil, nil, nil)
        guard rc == SQLITE_OK else { throw error(rc, sql) }
    }

    /// Prepares (once per connection) and binds a statement.
    func statement(_ sql: String, _ arguments: [SQLValue] = []) throws -> Statement {
        let stmt: OpaquePointer
        if let cached = statements[sql] {
            stmt = cached
        } else {
            var prepared: OpaquePointer?
            let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &prepared, nil)
            guard rc == SQLITE_OK, let prepared else { throw error(rc, sql) }
            statements[sql] = prepared
            stmt = prepared
        }
        sqlite3_reset(stmt)
        sqlite3_clear_bindings(stmt)
        for (offset, value) in arguments.enumerated() {
            let index = Int32(offset + 1)
            let rc: Int32
            switch value {
            case .null: rc = sqlite3_bind_null(stmt, index)
            case .integer(let v): rc = sqlite3_bind_int64(stmt, index, v)
            case .text(let v):
                // An explicit length: a NUL inside the string must not cut it short.
                var bytes = Array(v.utf8)
                bytes.append(0)
                rc = bytes.withUnsafeBufferPointer { buffer in
                    buffer.withMemoryRebound(to: CChar.self) {
                        sqlite3_bind_text(stmt, index, $0.baseAddress, Int32(buffer.count - 1), csqlite_transient())
                    }
                }
            case .blob(let v):
                rc = v.withUnsafeBytes { sqlite3_bind_blob(stmt, index, $0.baseAddress, Int32($0.count), csqlite_transient()) }
            }
            guard rc == SQLITE_OK else { throw error(rc, sql) }
        }
        return Statement(connection: self, handle: stmt, sql: sql)
    }

    /// Inside an explicit transaction (false after SQLite rolled one back by itself).
    var inTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    /// Ends the open transaction, if any, discarding its changes.
    func rollbackIfOpen() throws {
        if inTransaction { try execute("ROLLBACK") }
    }

    /// Runs a statement for its effect; returns the number of changed rows.
    @discardableResult
    func run(_ sql: String, _ arguments: [SQLValue] = []) throws -> Int {
        let statement = try statement(sql, arguments)
        defer { statement.reset() }
        while try statement.step() {}
        return Int(sqlite3_changes(handle))
    }

    /// Collects every row, mapped by `row`.
    func query<T>(_ sql: String, _ arguments: [SQLValue] = [], row: (Statement) throws -> T) throws -> [T] {
        let statement = try statement(sql, arguments)
        defer { statement.reset() }
        var rows: [T] = []
        while try statement.step() { rows.append(try row(statement)) }
        return rows
    }

    func queryFirst<T>(_ sql: String, _ arguments: [SQLValue] = [], row: (Statement) throws -> T) throws -> T? {
        let statement = try statement(sql, arguments)
        defer { statement.reset() }
        return try statement.step() ? try row(statement) : nil
    }
}

enum SQLValue {
    case null
    case integer(Int64)
    case text(String)
    case blob([UInt8])

    init(_ value: String?) { self = value.map { .text($0) } ?? .null }
    init(_ value: Int64?) { self = value.map { .integer($0) } ?? .null }
    init(_ value: [UInt8]?) { self = value.map { .blob($0) } ?? .null }
}

/// A prepared statement being stepped; columns read by index.
struct Statement {
    let connection: Connection
    let handle: OpaquePointer
    let sql: String

    func step() throws -> Bool {
        let rc = sqlite3_step(handle)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default:
            sqlite3_reset(handle)
            throw connection.error(rc, sql)
        }
    }

    func reset() { sqlite3_reset(handle) }

    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }
    func optionalInt64(_ column: Int32) -> Int64? {
        sqlite3_column_type(handle, column) == SQLITE_NULL ? nil : sqlite3_column_int64(handle, column)
    }
    func text(_ column: Int32) -> String {
        guard let pointer = sqlite3_column_text(handle, column) else { return "" }
        let count = Int(sqlite3_column_bytes(handle, column))
        return String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self)
    }
    func optionalText(_ column: Int32) -> String? {
        sqlite3_column_type(handle, column) == SQLITE_NULL ? nil : text(column)
    }
    func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(handle, column))
        guard count > 0, let pointer = sqlite3_column_blob(handle, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }
    func optionalBlob(_ column: Int32) -> [UInt8]? {
        sqlite3_column_type(handle, column) == SQLITE_NULL ? nil : blob(column)
    }
}

/// A plain mutex for the store's connection hand-off and the session cache. The mutex lives at
/// an address of its own: `&` on a stored property would be a formal access (a run-time
/// exclusivity check on every lock, on the cached `session` path) and need not be stable.
final class Lock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }
    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
    /// Runs `body` only if the lock is free right now.
    func ifAvailable(_ body: () -> Void) {
        guard pthread_mutex_trylock(mutex) == 0 else { return }
        defer { pthread_mutex_unlock(mutex) }
        body()
    }
}
