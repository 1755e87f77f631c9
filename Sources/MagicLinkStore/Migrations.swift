/// A named schema change. Migrations run in order, each once, each in its own transaction;
/// their names are recorded in `schema_migrations`. Never edit a shipped migration: add one.
struct Migration {
    let name: String
    /// Recreates a table that others reference: foreign keys must be off while it runs.
    var rebuildsTables = false
    let sql: String
}

enum Migrations {
    static let all: [Migration] = [
        Migration(name: "0001-users-tokens-sessions-mail-queue", sql: """
            CREATE TABLE users (
                id         TEXT PRIMARY KEY,
                email      TEXT NOT NULL,
                email_key  TEXT NOT NULL UNIQUE,
                created_at INTEGER NOT NULL
            ) STRICT;

            CREATE TABLE login_tokens (
                hash          BLOB PRIMARY KEY,
                email         TEXT NOT NULL,
                email_key     TEXT NOT NULL,
                redirect      TEXT NOT NULL,
                created_at    INTEGER NOT NULL,
                expires_at    INTEGER NOT NULL,
                used_at       INTEGER,
                superseded_at INTEGER,
                ip            TEXT,
                user_agent    TEXT
            ) STRICT, WITHOUT ROWID;
            CREATE INDEX login_tokens_unused_by_email ON login_tokens(email_key)
                WHERE used_at IS NULL AND superseded_at IS NULL;
            CREATE INDEX login_tokens_by_expiry ON login_tokens(expires_at);

            CREATE TABLE sessions (
                id_hash         BLOB PRIMARY KEY,
                user_id         TEXT NOT NULL REFERENCES users(id),
                created_at      INTEGER NOT NULL,
                expires_at      INTEGER NOT NULL,
                idle_expires_at INTEGER NOT NULL,
                touched_at      INTEGER NOT NULL,
                ip              TEXT,
                user_agent      TEXT
            ) STRICT, WITHOUT ROWID;
            CREATE INDEX sessions_by_user ON sessions(user_id);
            CREATE INDEX sessions_by_expiry ON sessions(expires_at);

            CREATE TABLE mail_queue (
                message_id      TEXT PRIMARY KEY,
                kind            TEXT NOT NULL,
                recipient       TEXT NOT NULL,
                sealed_token    BLOB,
                state           TEXT NOT NULL DEFAULT 'queued'
                                CHECK (state IN ('queued', 'sending', 'sent', 'failed', 'expired')),
                created_at      INTEGER NOT NULL,
                expires_at      INTEGER NOT NULL,
                attempts        INTEGER NOT NULL DEFAULT 0,
                next_attempt_at INTEGER NOT NULL,
                claimed_at      INTEGER,
                finished_at     INTEGER,
                last_error      TEXT
            ) STRICT;
            CREATE INDEX mail_queue_due ON mail_queue(state, next_attempt_at);

            CREATE TABLE rate_events (
                key TEXT NOT NULL,
                at  INTEGER NOT NULL
            ) STRICT;
            CREATE INDEX rate_events_by_key ON rate_events(key, at);
            """),
        Migration(name: "0002-mail-locale-and-last-attempt", sql: """
            ALTER TABLE mail_queue ADD COLUMN locale TEXT;
            ALTER TABLE mail_queue ADD COLUMN last_attempt_at INTEGER;
            CREATE INDEX mail_queue_pending ON mail_queue(state) WHERE state IN ('queued', 'sending');
            """),
        Migration(name: "0003-token-flow-code-peeks", sql: """
            ALTER TABLE login_tokens ADD COLUMN flow_hash BLOB;
            ALTER TABLE login_tokens ADD COLUMN code_hash BLOB;
            ALTER TABLE login_tokens ADD COLUMN code_failures INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE login_tokens ADD COLUMN peeks INTEGER NOT NULL DEFAULT 0;
            CREATE UNIQUE INDEX login_tokens_by_flow ON login_tokens(flow_hash) WHERE flow_hash IS NOT NULL;
            """),
        // Several apps on one daemon: users, tokens and mail belong to an app (sessions through
        // their user). An address is unique per app, so `users` is rebuilt (SQLite cannot drop
        // a column's UNIQUE); the runner turns foreign keys off around it and checks them after.
        Migration(name: "0004-apps", rebuildsTables: true, sql: """
            CREATE TABLE users_new (
                id         TEXT PRIMARY KEY,
                app_id     TEXT NOT NULL DEFAULT 'default',
                email      TEXT NOT NULL,
                email_key  TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                UNIQUE (app_id, email_key)
            ) STRICT;
            INSERT INTO users_new (id, app_id, email, email_key, created_at)
                SELECT id, 'default', email, email_key, created_at FROM users;
            DROP TABLE users;
            ALTER TABLE users_new RENAME TO users;
            ALTER TABLE login_tokens ADD COLUMN app_id TEXT NOT NULL DEFAULT 'default';
            DROP INDEX login_tokens_unused_by_email;
            CREATE INDEX login_tokens_unused_by_email ON login_tokens(app_id, email_key)
                WHERE used_at IS NULL AND superseded_at IS NULL;
            ALTER TABLE mail_queue ADD COLUMN app_id TEXT NOT NULL DEFAULT 'default';
            """),
        // Every `start` checks the queue against mail_queue_max. Counting the pending rows took
        // time in proportion to the backlog, just when mail was not leaving; triggers keep the
        // count in one row instead, in the same transactions that change the queue.
        Migration(name: "0005-pending-mail-count", sql: """
            CREATE TABLE mail_queue_pending_count (
                only INTEGER PRIMARY KEY CHECK (only = 1),
                n    INTEGER NOT NULL
            ) STRICT;
            INSERT INTO mail_queue_pending_count (only, n)
                SELECT 1, count(*) FROM mail_queue WHERE state IN ('queued', 'sending');
            CREATE TRIGGER mail_queue_pending_insert AFTER INSERT ON mail_queue
                WHEN NEW.state IN ('queued', 'sending')
                BEGIN UPDATE mail_queue_pending_count SET n = n + 1; END;
            CREATE TRIGGER mail_queue_pending_delete AFTER DELETE ON mail_queue
                WHEN OLD.state IN ('queued', 'sending')
                BEGIN UPDATE mail_queue_pending_count SET n = n - 1; END;
            CREATE TRIGGER mail_queue_pending_update AFTER UPDATE OF state ON mail_queue
                WHEN (OLD.state IN ('queued', 'sending')) <> (NEW.state IN ('queued', 'sending'))
                BEGIN UPDATE mail_queue_pending_count SET n = n + (CASE WHEN NEW.state IN ('queued', 'sending') THEN 1 ELSE -1 END); END;
            """),
        // Rate limits kept a row per event, and finding the `maximum`-th newest walked up to
        // `maximum` of them on every `start` (thousands under load). Now one row per key and
        // second, numbered: `total` counts the key's events up to and including that second
        // and only grows, so both the newest second and the one holding a given event are one
        // lookup in the primary key, and a busy second is one row, not thousands.
        Migration(name: "0006-rate-counts", sql: """
            CREATE TABLE rate_counts (
                key   TEXT NOT NULL,
                total INTEGER NOT NULL,
                at    INTEGER NOT NULL,
                n     INTEGER NOT NULL,
                PRIMARY KEY (key, total)
            ) STRICT, WITHOUT ROWID;
            INSERT INTO rate_counts (key, total, at, n)
                SELECT key, sum(count(*)) OVER (PARTITION BY key ORDER BY at), at, count(*)
                FROM rate_events GROUP BY key, at;
            DROP TABLE rate_events;
            """),
        // Since 0005 nothing reads mail_queue_pending that mail_queue_due (state first) does not
        // serve as well, and each of a message's three state changes rewrote a page of it.
        Migration(name: "0007-drop-pending-mail-index", sql: """
            DROP INDEX mail_queue_pending;
            """),
    ]

    /// Brings the database up to date. Refuses a database migrated by a newer magiclinkd.
    static func run(on connection: Connection, now: Int64) throws -> [String] {
        try connection.execute("""
            CREATE TABLE IF NOT EXISTS schema_migrations (
                name       TEXT PRIMARY KEY,
                applied_at INTEGER NOT NULL
            ) STRICT
            """)
        let applied = Set(try connection.query("SELECT name FROM schema_migrations") { $0.text(0) })
        let known = Set(all.map(\.name))
        if let unknown = applied.subtracting(known).sorted().first {
            throw StoreError.newerSchema(migration: unknown)
        }
        var ran: [String] = []
        for migration in all where !applied.contains(migration.name) {
            // Outside the transaction: SQLite ignores this PRAGMA inside one.
            if migration.rebuildsTables { try connection.execute("PRAGMA foreign_keys = OFF") }
            defer { if migration.rebuildsTables { _ = try? connection.execute("PRAGMA foreign_keys = ON") } }
            try connection.execute("BEGIN IMMEDIATE")
            do {
                try connection.execute(migration.sql)
                if migration.rebuildsTables {
                    let broken = try connection.query("PRAGMA foreign_key_check") { $0.text(0) }
                    if let table = broken.first { throw StoreError.migrationBrokeForeignKeys(table: table) }
                }
                try connection.run("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                                   [.text(migration.name), .integer(now)])
                try connection.execute("COMMIT")
            } catch {
                try? connection.execute("ROLLBACK")
                throw error
            }
            ran.append(migration.name)
        }
        return ran
    }
}
