// The system libsqlite3 (Debian) is built with the preupdate hook; its header declares the
// hook only under this define.
#ifndef SQLITE_ENABLE_PREUPDATE_HOOK
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#endif
#include <sqlite3.h>
#include <stdint.h>

// How much of a statement journal (the undo pages of a savepoint: group commit gives every
// caller one) stays in memory before it spills to a temporary file; SQLite's default is 64 KiB,
// which a batch of a few writes passes. sqlite3_config is variadic, so Swift cannot call it.
// Only takes effect before SQLite initializes (the first connection opened).
static inline int csqlite_set_statement_journal_spill(int bytes) {
    return sqlite3_config(SQLITE_CONFIG_STMTJRNL_SPILL, bytes);
}

// SQLITE_TRANSIENT is a cast macro that Swift cannot import.
static inline sqlite3_destructor_type csqlite_transient(void) { return SQLITE_TRANSIENT; }

// The wal-index (region 0 of the -shm file) of the main database, as SQLite itself maps it for
// this connection: valid while the connection stays open in WAL mode; NULL when not mapped.
// Opening the -shm file separately would not do: closing that descriptor would drop SQLite's
// POSIX locks on it (the lock that tells other processes the index is in use among them).
static inline const void *csqlite_wal_index(sqlite3 *db) {
    sqlite3_file *file = 0;
    if (sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &file) != SQLITE_OK || !file || !file->pMethods) return 0;
    if (file->pMethods->iVersion < 2 || !file->pMethods->xShmMap) return 0;
    void volatile *region = 0;
    if (file->pMethods->xShmMap(file, 0, 32768, 0, &region) != SQLITE_OK) return 0;
    return (const void *)region;
}

// A 32-bit load with acquire ordering from memory another process writes (the WAL index).
static inline uint32_t csqlite_load_acquire_u32(const void *address) {
    return __atomic_load_n((const uint32_t *)address, __ATOMIC_ACQUIRE);
}
