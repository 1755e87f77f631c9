"""Durability: what was acknowledged survives SIGKILL and SIGTERM restarts."""

import json
import sqlite3

import pytest

from conftest import err, ok, unique_email


@pytest.fixture
def d(daemon_factory):
    return daemon_factory()


def test_session_survives_sigkill_right_after_ack(d):
    addr = unique_email("kill")
    with d.client() as c:
        ok(c.call("start", {"email": addr}))
        _, token = d.wait_for_mail(addr)
        result = ok(c.call("callback", {"confirm": True, "token": token}))
    d.kill()  # immediately after the acknowledgement
    d.start()
    with d.client() as c:
        sess = ok(c.call("session", {"session": result["session"]}))
        assert sess["user"] == result["user"]
        assert sess["expires_at"] == result["expires_at"]
        # the token stays consumed
        err(c.call("callback", {"confirm": True, "token": token}), "invalid_token", reason="used")


def test_session_survives_sigterm_restart(d):
    addr = unique_email("term")
    result = d.login(addr)
    d.restart()
    with d.client() as c:
        sess = ok(c.call("session", {"session": result["session"]}))
        assert sess["user"] == result["user"]


def test_logout_survives_sigkill(d):
    result = d.login(unique_email("lo"))
    with d.client() as c:
        assert ok(c.call("logout", {"session": result["session"]})) == {}
    d.kill()
    d.start()
    err(d.call("session", {"session": result["session"]}), "invalid_session")


def test_acknowledged_start_mailed_after_sigkill(d):
    """start acknowledged, then SIGKILL within a few ms (best effort: before the mail is
    written). After restart the queued mail is delivered and its link works."""
    addr = unique_email("queued")
    c = d.client()
    req = json.dumps({"id": 1, "op": "start", "params": {"email": addr, "redirect": "/after"}}).encode() + b"\n"
    c.send(req)
    reply = c.read_reply()
    d.kill()
    c.close()
    ok(reply)
    d.start()
    _, token = d.wait_for_mail(addr, timeout=15)
    result = ok(d.call("callback", {"confirm": True, "token": token}))
    assert result["redirect"] == "/after"
    assert result["user"]["email"] == addr


def test_several_acknowledged_starts_mailed_after_sigkill(d):
    addrs = [unique_email("q") for _ in range(5)]
    with d.client() as c:
        data = b"".join(
            json.dumps({"id": i, "op": "start", "params": {"email": a}}).encode() + b"\n" for i, a in enumerate(addrs)
        )
        for reply in c.send_raw(data):
            ok(reply)
        d.kill()
    d.start()
    with d.client() as c:
        for a in addrs:
            _, token = d.wait_for_mail(a, timeout=15)
            ok(c.call("callback", {"confirm": True, "token": token}))


def test_users_keep_ids_across_restarts(d):
    addr = unique_email("keepid")
    first = d.login(addr)
    d.restart()
    second = d.login(addr)
    d.restart(hard=True)
    third = d.login(addr.upper().replace("@EXAMPLE.COM", "@example.com"))
    assert first["user"]["id"] == second["user"]["id"] == third["user"]["id"]
    assert third["user"]["email"] == addr


def test_database_in_wal_mode(d):
    d.login(unique_email("wal"))
    assert d.db_path.is_file()
    conn = sqlite3.connect(f"file:{d.db_path}?mode=ro", uri=True, timeout=5)
    try:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    assert mode.lower() == "wal"
    assert {"users", "login_tokens", "sessions", "mail_queue"} <= tables, tables


def test_restart_on_same_files_keeps_serving_tokens(d):
    """A link mailed before a restart still works after it (the sealing key is reused)."""
    addr = unique_email("keylink")
    ok(d.call("start", {"email": addr}))
    _, token = d.wait_for_mail(addr)
    d.restart()
    ok(d.call("callback", {"confirm": True, "token": token}))
