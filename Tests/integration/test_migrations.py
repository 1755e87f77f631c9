"""Upgrading a database made by an earlier magiclinkd: the shipped migrations run on data that
exists, and what was valid stays valid (sessions, users, links), now under the app `default`."""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import time
from pathlib import Path

from conftest import REPO, err, ok, unique_email

MIGRATIONS = REPO / "Sources" / "MagicLinkStore" / "Migrations.swift"


def shipped_migrations() -> list[tuple[str, str]]:
    """(name, SQL) of every migration, read from the Swift source the binary was built from."""
    text = MIGRATIONS.read_text()
    found = re.findall(r'Migration\(name: "([^"]+)",(?: rebuildsTables: true,)? sql: """\n(.*?)"""', text, re.S)
    assert [n for n, _ in found][:3] == ["0001-users-tokens-sessions-mail-queue", "0002-mail-locale-and-last-attempt",
                                         "0003-token-flow-code-peeks"], [n for n, _ in found]
    return found


def sha(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def make_old_database(path: Path) -> dict:
    """A database as magiclinkd left it before apps existed (migrations 0001-0003), with a user,
    a live session and an unused link."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT")
    now = int(time.time())
    for name, sql in shipped_migrations()[:3]:
        db.executescript(sql)
        db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, now))
    session = secrets.token_urlsafe(32)
    user_id = "0b8a7c1e-1d2f-4a3b-9c4d-5e6f7a8b9c0d"
    db.execute("INSERT INTO users (id, email, email_key, created_at) VALUES (?, ?, ?, ?)",
               (user_id, "Old@example.com", "old@example.com", now - 100))
    db.execute("""INSERT INTO sessions (id_hash, user_id, created_at, expires_at, idle_expires_at, touched_at)
                  VALUES (?, ?, ?, ?, ?, ?)""", (sha(session), user_id, now - 100, now + 86_400, now + 3_600, now - 100))
    token = secrets.token_urlsafe(32)
    db.execute("""INSERT INTO login_tokens (hash, email, email_key, redirect, created_at, expires_at)
                  VALUES (?, ?, ?, ?, ?, ?)""", (sha(token), "Old@example.com", "old@example.com", "/back", now, now + 600))
    # Mail in three states; the queued ones count towards mail_queue_max after the upgrade.
    for i, state in enumerate(["queued", "queued", "sent", "failed"]):
        db.execute("""INSERT INTO mail_queue (message_id, kind, recipient, sealed_token, state, created_at, expires_at,
                      next_attempt_at) VALUES (?, 'login', 'old@example.com', ?, ?, ?, ?, ?)""",
                   (f"old{i}@localhost", b"not a sealed token", state, now - 10, now + 600, now + 86_400))
    db.commit()
    db.close()
    return {"session": session, "user_id": user_id, "token": token}


def test_a_database_from_before_apps_upgrades_in_place(daemon_factory):
    d = daemon_factory(start=False)
    old = make_old_database(d.db_path)
    d.start()
    with d.client() as c:
        # The old session is still valid, for the same user.
        info = ok(c.call("session", {"session": old["session"]}))
        assert info["user"] == {"id": old["user_id"], "email": "Old@example.com"}
        # An old link (no flow existed then) matches no browser: it asks for confirmation like any
        # link opened elsewhere, and then lands on the same user.
        peek = ok(c.call("peek", {"token": old["token"]}))
        assert peek["valid"] is True and peek["flow_matches"] is False
        err(c.call("callback", {"token": old["token"]}), "confirmation_required")
        login = ok(c.call("callback", {"token": old["token"], "confirm": True}))
        assert login["user"]["id"] == old["user_id"] and login["redirect"] == "/back"
        # New logins of the same address find the migrated user.
        assert d.login("old@EXAMPLE.com", client=c)["user"]["id"] == old["user_id"]
        assert ok(c.call("logout_all", {"user_id": old["user_id"]}))["revoked"] == 3
        err(c.call("session", {"session": old["session"]}), "invalid_session")
    d.stop()
    db = sqlite3.connect(d.db_path)
    names = [r[0] for r in db.execute("SELECT name FROM schema_migrations ORDER BY name")]
    assert names == [n for n, _ in shipped_migrations()], names
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    assert db.execute("SELECT app_id FROM users").fetchall() == [("default",)]
    # Migration 0005 started the trigger-kept count from the rows there; the daemon's own
    # mail since then moved it in step.
    counted = db.execute("SELECT count(*) FROM mail_queue WHERE state IN ('queued', 'sending')").fetchone()[0]
    assert counted >= 2
    assert db.execute("SELECT n FROM mail_queue_pending_count").fetchone() == (counted,)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()


def test_rate_events_carry_over_into_per_second_counts(daemon_factory):
    """Migration 0006 turns a row per event into counted seconds: an address that had used up
    its hourly cap before the upgrade is still refused after it, until its oldest start ages out."""
    d = daemon_factory(start=False)
    db = sqlite3.connect(d.db_path)
    db.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT")
    now = int(time.time())
    migrations = shipped_migrations()
    assert migrations[5][0] == "0006-rate-counts"
    for name, sql in migrations[:5]:
        db.executescript(sql)
        db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, now))
    # Five starts (the default hourly cap) for one address, two of them in the same second, and
    # the global key's events in between (each key is numbered on its own).
    for at in (now - 600, now - 500, now - 500, now - 400, now - 300):
        db.execute("INSERT INTO rate_events (key, at) VALUES (?, ?)", ("default|email:capped@example.com", at))
    for at in (now - 550, now - 500, now - 450):
        db.execute("INSERT INTO rate_events (key, at) VALUES (?, ?)", ("default|global", at))
    db.commit()
    db.close()
    d.start()
    with d.client() as c:
        refused = err(c.call("start", {"email": "capped@example.com"}), "rate_limited")
        # The oldest of the five (600 s ago) leaves the hour in 3,000 s.
        assert 2_990 <= refused["details"]["retry_after_s"] <= 3_001, refused
        ok(c.call("start", {"email": "other@example.com"}))
    d.stop()
    db = sqlite3.connect(d.db_path)
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'rate_events'").fetchall() == []
    rows = db.execute("SELECT at, n, total FROM rate_counts WHERE key = 'default|email:capped@example.com' ORDER BY total").fetchall()
    assert rows == [(now - 600, 1, 1), (now - 500, 2, 3), (now - 400, 1, 4), (now - 300, 1, 5)], rows
    rows = db.execute("SELECT at, n, total FROM rate_counts WHERE key = 'default|global' ORDER BY total").fetchall()
    # Then the start that went through, at about now.
    assert rows[:3] == [(now - 550, 1, 1), (now - 500, 1, 2), (now - 450, 1, 3)] and rows[3][2] == 4, rows
    db.close()
