"""The daemon answers `session` for a live session from memory once it has read it. These tests
warm that cache first and then end or change the session every way there is, inside the daemon
and behind its back (another process writing the SQLite file): the very next `session` call must
see it."""

import sqlite3

from conftest import err, ok, sha256, unique_email


def warm(client, session: str, times: int = 3) -> dict:
    result = None
    for _ in range(times):
        result = ok(client.call("session", {"session": session}))
    return result


def outside_write(daemon, sql: str, args: tuple) -> int:
    """Another process (this one) commits to the daemon's database, as an admin's sqlite3 would."""
    conn = sqlite3.connect(daemon.db_path, timeout=10)
    try:
        changed = conn.execute(sql, args).rowcount
        conn.commit()
        return changed
    finally:
        conn.close()


def test_logout_of_a_cached_session_is_seen_at_once(daemon, client):
    a = daemon.login(unique_email("cache-logout"), client)
    b = daemon.login(unique_email("cache-keep"), client)
    warm(client, a["session"])
    warm(client, b["session"])
    ok(client.call("logout", {"session": a["session"]}))
    err(client.call("session", {"session": a["session"]}), "invalid_session")
    err(client.call("session", {"session": a["session"]}), "invalid_session")
    assert ok(client.call("session", {"session": b["session"]}))["user"]["id"] == b["user"]["id"]


def test_logout_all_of_cached_sessions_is_seen_at_once(daemon, client):
    addr = unique_email("cache-all")
    sessions = [daemon.login(addr, client) for _ in range(3)]
    for s in sessions:
        warm(client, s["session"])
    assert ok(client.call("logout_all", {"user_id": sessions[0]["user"]["id"]})) == {"revoked": 3}
    for s in sessions:
        err(client.call("session", {"session": s["session"]}), "invalid_session")


def test_another_process_deleting_a_session_row_ends_it_at_once(daemon, client):
    a = daemon.login(unique_email("cache-row"), client)
    b = daemon.login(unique_email("cache-row-keep"), client)
    warm(client, a["session"])
    before = warm(client, b["session"])
    assert outside_write(daemon, "DELETE FROM sessions WHERE id_hash = ?", (sha256(a["session"].encode()),)) == 1
    err(client.call("session", {"session": a["session"]}), "invalid_session")
    # The other session is still there and answered the same, from the database and then
    # from memory again.
    for _ in range(3):
        assert ok(client.call("session", {"session": b["session"]})) == before


def test_another_process_changing_an_address_shows_at_once(daemon, client):
    a = daemon.login(unique_email("cache-addr"), client)
    warm(client, a["session"])
    new_address = unique_email("cache-renamed")
    assert outside_write(daemon, "UPDATE users SET email = ? WHERE id = ?", (new_address, a["user"]["id"])) == 1
    for _ in range(3):
        assert ok(client.call("session", {"session": a["session"]}))["user"]["email"] == new_address


def test_another_process_expiring_a_session_ends_it_at_once(daemon, client):
    a = daemon.login(unique_email("cache-expire"), client)
    warm(client, a["session"])
    outside_write(daemon, "UPDATE sessions SET expires_at = 1 WHERE id_hash = ?", (sha256(a["session"].encode()),))
    err(client.call("session", {"session": a["session"]}), "invalid_session")


def test_a_bad_ip_is_refused_alike_for_cached_and_uncached_sessions(daemon, client):
    a = daemon.login(unique_email("cache-ip"), client)
    cold = client.call("session", {"session": daemon.login(unique_email("cache-ip-cold"), client)["session"], "ip": "nope"})
    err(cold, "invalid_request")
    warm(client, a["session"])
    hot = client.call("session", {"session": a["session"], "ip": "nope"})
    assert hot["error"] == cold["error"]
    assert ok(client.call("session", {"session": a["session"], "ip": "203.0.113.7"}))["user"]["id"] == a["user"]["id"]


def test_sessions_without_the_cache(daemon_factory):
    d = daemon_factory({"MAGICLINKD_SESSION_CACHE_ENTRIES": "0"})
    with d.client() as c:
        a = d.login(unique_email("nocache"), c)
        warm(c, a["session"])
        ok(c.call("logout", {"session": a["session"]}))
        err(c.call("session", {"session": a["session"]}), "invalid_session")


def test_a_tiny_cache_still_answers_every_session(daemon_factory):
    d = daemon_factory({"MAGICLINKD_SESSION_CACHE_ENTRIES": "2"})
    with d.client() as c:
        logins = [d.login(unique_email(f"tiny{i}"), c) for i in range(6)]
        for _ in range(3):
            for login in logins:
                assert ok(c.call("session", {"session": login["session"]}))["user"]["id"] == login["user"]["id"]
        ok(c.call("logout", {"session": logins[-1]["session"]}))
        err(c.call("session", {"session": logins[-1]["session"]}), "invalid_session")
