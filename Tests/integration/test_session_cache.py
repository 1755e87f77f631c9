"""The daemon answers `session` for a live session from memory once it has read it. These tests
warm that cache first and then end or change the session every way there is, inside the daemon
and behind its back (another process writing the SQLite file): the very next `session` call must
see it."""

import sqlite3

from conftest import err, ok, parse_reply_line, sha256, unique_email


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


def cache_figures(daemon) -> dict:
    return ok(daemon.call("admin_status"))["session_cache"]


def test_admin_status_counts_what_memory_answered(daemon_factory):
    d = daemon_factory({"MAGICLINKD_SESSION_CACHE_ENTRIES": "50"})
    with d.client() as c:
        a = d.login(unique_email("figures"), c)
        start = cache_figures(d)
        assert start["capacity"] == 50
        ok(c.call("session", {"session": a["session"]}))  # from the database, then held
        warm(c, a["session"], times=5)
        after = cache_figures(d)
        # A background commit (the mail worker marking the mail sent) landing between a commit
        # and its reconciliation can turn one hit into a miss.
        assert (after["hits"] + after["misses"]) - (start["hits"] + start["misses"]) == 6, (start, after)
        assert after["hits"] - start["hits"] >= 4, (start, after)
        assert after["entries"] >= 1
        # Ended: never from memory again.
        ok(c.call("logout", {"session": a["session"]}))
        for _ in range(3):
            err(c.call("session", {"session": a["session"]}), "invalid_session")
        final = cache_figures(d)
        assert final["hits"] == after["hits"], (after, final)
        assert final["misses"] - after["misses"] == 3


def test_admin_status_with_the_cache_off(daemon_factory):
    d = daemon_factory({"MAGICLINKD_SESSION_CACHE_ENTRIES": "0"})
    with d.client() as c:
        a = d.login(unique_email("figures-off"), c)
        warm(c, a["session"])
    assert cache_figures(d) == {"capacity": 0, "entries": 0, "hits": 0, "misses": 0}


def test_an_outside_commit_is_seen_and_the_cache_serves_again_after(daemon, client):
    a = daemon.login(unique_email("cache-again"), client)
    b = daemon.login(unique_email("cache-again-gone"), client)
    warm(client, a["session"])
    warm(client, b["session"])
    # An outside process opens the database, reads, then commits twice (the second change
    # touches nothing the daemon caches).
    conn = sqlite3.connect(daemon.db_path, timeout=10)
    try:
        conn.execute("SELECT count(*) FROM sessions").fetchone()
        conn.execute("DELETE FROM sessions WHERE id_hash = ?", (sha256(b["session"].encode()),))
        conn.commit()
        conn.execute("CREATE TABLE IF NOT EXISTS admin_scratch (x INTEGER)")
        conn.commit()
    finally:
        conn.close()
    err(client.call("session", {"session": b["session"]}), "invalid_session")
    before = cache_figures(daemon)
    warm(client, a["session"], times=4)
    after = cache_figures(daemon)
    assert after["hits"] - before["hits"] >= 3, (before, after)


def test_the_daemon_keeps_sqlites_lock_on_the_wal_index(daemon, client):
    """SQLite marks the -shm file as in use with a shared lock on byte 128; a process that
    closed any descriptor of that file would lose it, and the next outside connection would
    rebuild the index under the daemon's feet."""
    import fcntl
    import os
    import struct
    a = daemon.login(unique_email("cache-lock"), client)
    warm(client, a["session"])
    fd = os.open(str(daemon.db_path) + "-shm", os.O_RDWR)
    try:
        # struct flock on x86-64 Linux: short type, short whence, off_t start, off_t len, pid_t pid
        probe = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 128, 1, 0)
        held = fcntl.fcntl(fd, fcntl.F_GETLK, probe + b"\0" * 4)
        kind, _, start, length, pid = struct.unpack("hhqqi", held[:struct.calcsize("hhqqi")])
        assert kind == fcntl.F_RDLCK, "nobody holds the index's in-use lock"
        assert (start, length) == (128, 1)
        assert pid == daemon.proc.pid
    finally:
        os.close(fd)


def test_every_spelling_of_a_session_request_gets_the_same_reply(daemon, client):
    """A plain `session` line is answered from its own bytes (no JSON tree); any other spelling
    of the same request goes through the general decoder. Both must give the same bytes back,
    for a held session and for one the cache does not hold, and the same errors."""
    a = daemon.login(unique_email("spelling"), client)
    s = a["session"]
    escaped = "".join(f"\\u{ord(ch):04x}" for ch in s[:3]) + s[3:]
    spellings = [
        f'{{"id":7,"op":"session","params":{{"session":"{s}","ip":"192.0.2.9"}}}}',
        f' {{ "params" : {{ "ip" : "192.0.2.9" , "session" : "{s}" }} , "op" : "session" , "id" : 7 }}\r',
        f'{{"id":7,"op":"session","params":{{"session":"{escaped}","ip":"192.0.2.9"}}}}',
        f'{{"id":7,"op":"se\\u0073sion","params":{{"session":"{s}","ip":"192.0.2.9"}}}}',
        f'{{"id":7,"op":"session","params":{{"session":"{s}","ip":"192.0.2.9"}},"extra":[1,{{"x":null}}]}}',
        f'{{"id":7,"op":"session","params":{{"session":"{s}","ip":"192.0.2.9","app":null}}}}',
        f'{{"id":7,"op":"session",\n"params":{{"session":"{s}","ip":"192.0.2.9"}}}}'.replace("\n", "\t\r "),
    ]

    def replies():
        out = []
        for line in spellings:
            client.send(line.encode() + b"\n")
            out.append(client.read_line())
        return out

    cold_or_warm = replies()
    warm(client, s)
    hot = replies()
    assert len(set(hot)) == 1, hot
    assert set(cold_or_warm) == set(hot), (cold_or_warm, hot)
    assert parse_reply_line(hot[0])["result"]["user"]["id"] == a["user"]["id"]

    # The plain spelling is answered from memory: a scanner that cut the wrong bytes out of the
    # line would miss (and the database would still answer correctly), so count the hits: one
    # per call, and one look at the cache per call. (A background commit landing between a
    # commit and its reconciliation can turn one hit into a miss.)
    before = cache_figures(daemon)
    for _ in range(4):
        client.send(spellings[0].encode() + b"\n")
        assert client.read_line() == hot[0]
    after = cache_figures(daemon)
    assert after["hits"] - before["hits"] >= 3, (before, after)
    assert (after["hits"] + after["misses"]) - (before["hits"] + before["misses"]) == 4, (before, after)

    # Refusals alike: a bad ip, an id out of range, a duplicate member.
    for bad, code in [
        (f'{{"id":7,"op":"session","params":{{"session":"{s}","ip":"nope"}}}}', "invalid_request"),
        (f'{{"id":9007199254740992,"op":"session","params":{{"session":"{s}"}}}}', "invalid_request"),
        (f'{{"id":7,"op":"session","params":{{"session":"{s}","session":"{s}"}}}}', "invalid_request"),
        (f'{{"id":7,"op":"session","params":{{"session":"{s}","app":"nope"}}}}', "invalid_request"),
    ]:
        client.send(bad.encode() + b"\n")
        err(parse_reply_line(client.read_line()), code)
    ok(client.call("logout", {"session": s}))
    for line in spellings[:2]:
        client.send(line.encode() + b"\n")
        err(parse_reply_line(client.read_line()), "invalid_session")
