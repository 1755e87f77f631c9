"""Login flow: start -> mail -> callback -> session, tokens, sessions, logout."""

import email.utils
import re
import secrets
import threading
import time
import uuid

import pytest

from conftest import (
    B64URL43_RE,
    DEFAULT_CALLBACK_URL,
    err,
    html_part,
    ok,
    recipient,
    text_part,
    unique_email,
)

DAY = 86400


def now() -> float:
    return time.time()


def assert_session_result(result, email_addr=None):
    assert B64URL43_RE.match(result["session"]), result
    assert type(result["expires_at"]) is int and type(result["idle_expires_at"]) is int, result
    assert result["idle_expires_at"] <= result["expires_at"], result
    user = result["user"]
    uuid.UUID(user["id"])  # a uuid
    if email_addr is not None:
        assert user["email"] == email_addr, result


# ------------------------------------------------------------------------------------ full flow


def test_full_login_flow(daemon, client):
    addr = unique_email("flow")
    t0 = now()
    start = ok(client.call("start", {"email": addr, "redirect": "/account?tab=1", "ip": "192.0.2.10",
                                     "user_agent": "pytest/1.0"}))
    assert set(start) == {"expires_at", "flow"}, start
    assert type(start["expires_at"]) is int
    assert t0 + 600 - 5 <= start["expires_at"] <= t0 + 600 + 5, "default token_ttl is 600 s"

    msg, token, raw = daemon.wait_for_mail(addr, raw=True)
    assert B64URL43_RE.match(token)

    result = ok(client.call("callback", {"confirm": True, "token": token, "ip": "192.0.2.10", "user_agent": "pytest/1.0"}))
    t1 = now()
    assert_session_result(result, addr)
    assert result["redirect"] == "/account?tab=1"
    assert t1 + 30 * DAY - 10 <= result["expires_at"] <= t1 + 30 * DAY + 10, "default session_ttl is 30 days"
    assert t1 + 7 * DAY - 70 <= result["idle_expires_at"] <= t1 + 7 * DAY + 10, "default idle ttl is 7 days"
    assert result["session"] != token

    sess = ok(client.call("session", {"session": result["session"]}))
    assert sess["user"] == result["user"]
    assert sess["expires_at"] == result["expires_at"]
    assert type(sess["idle_expires_at"]) is int
    assert sess["idle_expires_at"] <= sess["expires_at"]


def test_mail_format(daemon, client):
    addr = unique_email("fmt")
    ok(client.call("start", {"email": addr}))
    msg, token, raw = daemon.wait_for_mail(addr, raw=True)

    # CRLF line ends throughout
    assert b"\n" in raw
    assert re.search(rb"(?<!\r)\n", raw) is None, "bare LF in the message (RFC 5322 needs CRLF)"
    assert re.search(rb"\r(?!\n)", raw) is None, "bare CR in the message"

    for header in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version"):
        assert msg[header], f"missing header {header}"
    sender = msg["From"].addresses
    assert len(sender) == 1 and sender[0].display_name == "magiclinkd", msg["From"]
    assert sender[0].addr_spec == "no-reply@localhost", msg["From"]
    to = msg["To"].addresses
    assert len(to) == 1 and to[0].addr_spec == addr, msg["To"]
    assert recipient(raw) == addr
    assert str(msg["Auto-Submitted"]).strip().lower() == "auto-generated"
    assert str(msg["MIME-Version"]).strip() == "1.0"
    assert re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", str(msg["Message-ID"]).strip()), msg["Message-ID"]
    date = email.utils.parsedate_to_datetime(str(msg["Date"]))
    assert abs(date.timestamp() - now()) < 60
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p for p in msg.iter_parts()]
    types = sorted(p.get_content_type() for p in parts)
    assert types == ["text/html", "text/plain"], types
    for p in parts:
        assert str(p["Content-Transfer-Encoding"]).strip().lower() == "quoted-printable", p["Content-Transfer-Encoding"]
    assert token in text_part(msg)
    assert token in html_part(msg)
    assert f"{DEFAULT_CALLBACK_URL}?token={token}" in text_part(msg)


def test_configured_mail_from(daemon_factory):
    d = daemon_factory({"MAGICLINKD_MAIL_FROM": "Example Login <login@example.org>", "MAGICLINKD_APP_NAME": "Example"})
    addr = unique_email("from")
    ok(d.call("start", {"email": addr}))
    msg, token = d.wait_for_mail(addr)
    sender = msg["From"].addresses
    assert len(sender) == 1 and sender[0].addr_spec == "login@example.org", msg["From"]
    assert sender[0].display_name == "Example Login", msg["From"]
    ok(d.call("callback", {"confirm": True, "token": token}))


def test_link_base_is_the_callback_url(daemon, client):
    addr = unique_email("base")
    ok(client.call("start", {"email": addr}))
    msg, token = daemon.wait_for_mail(addr)
    text = text_part(msg)
    found = list(re.finditer(r"([?&])token=([A-Za-z0-9_-]{43})", text))
    assert found, text
    for m in found:
        assert m.group(1) == "?" and m.group(2) == token, text
        assert text[: m.start()].endswith(DEFAULT_CALLBACK_URL), f"link base is not the callback_url:\n{text}"


def test_link_uses_ampersand_when_callback_url_has_a_query(daemon_factory):
    base = "https://app.example.com/auth/callback?next=1"
    d = daemon_factory({"MAGICLINKD_CALLBACK_URL": base})
    addr = unique_email("amp")
    ok(d.call("start", {"email": addr}))
    msg, token = d.wait_for_mail(addr)
    assert f"{base}&token={token}" in text_part(msg), text_part(msg)
    with d.client() as c:
        ok(c.call("callback", {"confirm": True, "token": token}))


def test_default_redirect_is_slash(daemon, client):
    addr = unique_email("defredir")
    result = daemon.login(addr, client)
    assert result["redirect"] == "/"


def test_absolute_redirect_echoed(daemon, client):
    addr = unique_email("absredir")
    result = daemon.login(addr, client, redirect="https://app.example.com/dashboard?x=1")
    assert result["redirect"] == "https://app.example.com/dashboard?x=1"


# ------------------------------------------------------------------------------------ users


def test_same_user_on_second_login(daemon, client):
    addr = unique_email("again")
    first = daemon.login(addr, client)
    second = daemon.login(addr, client)
    assert first["user"] == second["user"]
    assert first["session"] != second["session"]


def test_user_matched_case_insensitively_email_stays_as_first_seen(daemon, client):
    local = f"Alice.{uuid.uuid4().hex[:12]}"
    typed = f"{local}@Example.COM"
    canonical = f"{local}@example.com"  # local part as typed, domain lower-cased
    first = daemon.login(typed, client)
    assert first["user"]["email"] == canonical

    second_addr = f"{local.lower()}@example.com"
    ok(client.call("start", {"email": second_addr}))
    msg, token = daemon.wait_for_mail(second_addr)
    second = ok(client.call("callback", {"confirm": True, "token": token}))
    assert second["user"]["id"] == first["user"]["id"]
    assert second["user"]["email"] == canonical, "user.email stays as first seen"


def test_different_addresses_are_different_users(daemon, client):
    a = daemon.login(unique_email("ua"), client)
    b = daemon.login(unique_email("ub"), client)
    assert a["user"]["id"] != b["user"]["id"]


def test_start_reply_same_shape_for_new_and_known_address(daemon, client):
    known = unique_email("known")
    daemon.login(known, client)
    new = unique_email("new")
    r_known = client.call("start", {"email": known})
    r_new = client.call("start", {"email": new})
    ok(r_known)
    ok(r_new)
    assert set(r_known) == set(r_new)
    assert set(r_known["result"]) == set(r_new["result"]) == {"expires_at", "flow"}
    assert abs(r_known["result"]["expires_at"] - r_new["result"]["expires_at"]) <= 2
    daemon.wait_for_mail(known)
    daemon.wait_for_mail(new)


# ------------------------------------------------------------------------------------ tokens


def test_token_replay_is_used(daemon, client):
    addr = unique_email("replay")
    result = daemon.login(addr, client)
    reply = client.call("callback", {"confirm": True, "token": result["token"]})
    err(reply, "invalid_token", reason="used")
    with daemon.client() as other:
        err(other.call("callback", {"confirm": True, "token": result["token"]}), "invalid_token", reason="used")


@pytest.mark.parametrize(
    "token",
    [
        "never-issued",
        "A" * 43,
        "",
        "x" * 500,
    ],
    ids=["short", "well-formed-43", "empty", "long"],
)
def test_unknown_token(client, token):
    err(client.call("callback", {"confirm": True, "token": token}), "invalid_token", reason="unknown")


def test_random_and_mistyped_tokens_are_unknown(daemon, client):
    err(client.call("callback", {"confirm": True, "token": secrets.token_urlsafe(32)}), "invalid_token", reason="unknown")
    addr = unique_email("mistype")
    ok(client.call("start", {"email": addr}))
    _, token = daemon.wait_for_mail(addr)
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    err(client.call("callback", {"confirm": True, "token": flipped}), "invalid_token", reason="unknown")
    err(client.call("callback", {"confirm": True, "token": token[:42]}), "invalid_token", reason="unknown")
    # the real one still works
    ok(client.call("callback", {"confirm": True, "token": token}))


def test_newer_start_invalidates_older_link(daemon, client):
    addr = unique_email("newer")
    ok(client.call("start", {"email": addr, "redirect": "/old"}))
    _, old = daemon.wait_for_mail(addr)
    ok(client.call("start", {"email": addr, "redirect": "/new"}))
    _, new = daemon.wait_for_mail(addr)
    assert old != new
    err(client.call("callback", {"confirm": True, "token": old}), "invalid_token", reason="expired")
    result = ok(client.call("callback", {"confirm": True, "token": new}))
    assert result["redirect"] == "/new"
    # and the old one stays refused afterwards
    err(client.call("callback", {"confirm": True, "token": old}), "invalid_token", reason="expired")


def test_newer_start_for_other_case_invalidates_older_link(daemon, client):
    local = f"Case.{uuid.uuid4().hex[:12]}"
    ok(client.call("start", {"email": f"{local}@example.com"}))
    _, old = daemon.wait_for_mail(f"{local}@example.com")
    ok(client.call("start", {"email": f"{local.upper()}@EXAMPLE.com"}))
    _, new = daemon.wait_for_mail(f"{local.upper()}@example.com")
    err(client.call("callback", {"confirm": True, "token": old}), "invalid_token", reason="expired")
    ok(client.call("callback", {"confirm": True, "token": new}))


def test_token_expiry(daemon_factory):
    d = daemon_factory({"MAGICLINKD_TOKEN_TTL": "2"})
    addr = unique_email("exp")
    t0 = now()
    with d.client() as c:
        start = ok(c.call("start", {"email": addr}))
        assert t0 + 2 - 2 <= start["expires_at"] <= t0 + 2 + 2
        _, token = d.wait_for_mail(addr)
        remaining = start["expires_at"] + 1.1 - now()
        time.sleep(max(remaining, 3.0 - (now() - t0)))
        err(c.call("callback", {"confirm": True, "token": token}), "invalid_token", reason="expired")


def test_concurrent_callbacks_exactly_one_wins(daemon):
    addr = unique_email("race")
    ok(daemon.call("start", {"email": addr}))
    _, token = daemon.wait_for_mail(addr)
    n = 20
    clients = [daemon.client() for _ in range(n)]
    barrier = threading.Barrier(n)
    replies = [None] * n
    errors = []

    def worker(i):
        try:
            barrier.wait(timeout=10)
            replies[i] = clients[i].call("callback", {"confirm": True, "token": token})
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
    finally:
        for c in clients:
            c.close()
    assert not errors, errors
    wins = [r for r in replies if r and r["ok"]]
    losses = [r for r in replies if r and not r["ok"]]
    assert len(wins) == 1, f"{len(wins)} callbacks succeeded: {replies!r}"
    assert len(losses) == n - 1
    for r in losses:
        err(r, "invalid_token", reason="used")
    ok(daemon.call("session", {"session": wins[0]["result"]["session"]}))


# ------------------------------------------------------------------------------------ sessions


def test_unknown_session_invalid(client):
    err(client.call("session", {"session": secrets.token_urlsafe(32)}), "invalid_session")
    err(client.call("session", {"session": ""}), "invalid_session")


def test_token_is_not_a_session(daemon, client):
    result = daemon.login(unique_email("tok"), client)
    err(client.call("session", {"session": result["token"]}), "invalid_session")


def test_session_idle_expiry(daemon_factory):
    d = daemon_factory({"MAGICLINKD_SESSION_IDLE_TTL": "2"})
    with d.client() as c:
        result = d.login(unique_email("idle"), c)
        assert result["idle_expires_at"] <= now() + 2 + 1
        ok(c.call("session", {"session": result["session"]}))
        time.sleep(3.2)
        err(c.call("session", {"session": result["session"]}), "invalid_session")


def test_session_absolute_expiry(daemon_factory):
    d = daemon_factory({"MAGICLINKD_SESSION_TTL": "3", "MAGICLINKD_SESSION_IDLE_TTL": "1000",
                        "MAGICLINKD_SESSION_TOUCH_INTERVAL": "1"})
    with d.client() as c:
        result = d.login(unique_email("abs"), c)
        expires_at = result["expires_at"]
        assert expires_at <= now() + 3 + 1
        assert result["idle_expires_at"] == expires_at, "idle expiry is capped at expires_at"
        seen_valid = False
        deadline = expires_at + 2.5
        while now() < deadline:
            reply = c.call("session", {"session": result["session"]})
            t = now()
            if t < expires_at - 0.5:
                sess = ok(reply)
                seen_valid = True
                assert sess["expires_at"] == expires_at
                assert sess["idle_expires_at"] <= sess["expires_at"], sess
            elif t >= expires_at + 1:
                err(reply, "invalid_session")
            time.sleep(1)
        assert seen_valid
        err(c.call("session", {"session": result["session"]}), "invalid_session")


def test_idle_expiry_extended_when_used(daemon_factory):
    d = daemon_factory({"MAGICLINKD_SESSION_IDLE_TTL": "100", "MAGICLINKD_SESSION_TOUCH_INTERVAL": "1"})
    with d.client() as c:
        result = d.login(unique_email("touch"), c)
        before = result["idle_expires_at"]
        first = ok(c.call("session", {"session": result["session"]}))
        assert first["idle_expires_at"] >= before
        time.sleep(2.5)
        later = ok(c.call("session", {"session": result["session"]}))
        assert later["idle_expires_at"] > before, (before, later)
        assert later["idle_expires_at"] > first["idle_expires_at"], (first, later)
        assert later["idle_expires_at"] <= later["expires_at"]
        assert later["idle_expires_at"] <= now() + 100 + 1
        # what the daemon wrote is what the next call sees
        again = ok(c.call("session", {"session": result["session"]}))
        assert again["idle_expires_at"] >= later["idle_expires_at"]


def test_idle_expiry_not_rewritten_within_touch_interval(daemon, client):
    # default touch interval is 60 s: two calls 2 s apart see the same idle_expires_at
    result = daemon.login(unique_email("notouch"), client)
    first = ok(client.call("session", {"session": result["session"]}))
    time.sleep(2.0)
    second = ok(client.call("session", {"session": result["session"]}))
    assert first["idle_expires_at"] == second["idle_expires_at"], (first, second)
    assert second["idle_expires_at"] <= second["expires_at"]


# ------------------------------------------------------------------------------------ logout


def test_logout(daemon, client):
    result = daemon.login(unique_email("logout"), client)
    assert ok(client.call("logout", {"session": result["session"]})) == {}
    err(client.call("session", {"session": result["session"]}), "invalid_session")


def test_logout_twice_and_unknown(daemon, client):
    result = daemon.login(unique_email("logout2"), client)
    assert ok(client.call("logout", {"session": result["session"]})) == {}
    assert ok(client.call("logout", {"session": result["session"]})) == {}
    assert ok(client.call("logout", {"session": secrets.token_urlsafe(32)})) == {}
    assert ok(client.call("logout", {"session": "garbage"})) == {}


def test_logout_only_ends_that_session(daemon, client):
    addr = unique_email("two")
    a = daemon.login(addr, client)
    b = daemon.login(addr, client)
    ok(client.call("logout", {"session": a["session"]}))
    err(client.call("session", {"session": a["session"]}), "invalid_session")
    ok(client.call("session", {"session": b["session"]}))


def test_logout_all(daemon, client):
    addr = unique_email("all")
    sessions = [daemon.login(addr, client) for _ in range(3)]
    user_id = sessions[0]["user"]["id"]
    assert all(s["user"]["id"] == user_id for s in sessions)
    other = daemon.login(unique_email("other"), client)

    assert ok(client.call("logout_all", {"user_id": user_id})) == {"revoked": 3}
    for s in sessions:
        err(client.call("session", {"session": s["session"]}), "invalid_session")
    ok(client.call("session", {"session": other["session"]}))
    # nothing left to revoke
    assert ok(client.call("logout_all", {"user_id": user_id})) == {"revoked": 0}
    # the user can log in again afterwards, same id
    again = daemon.login(addr, client)
    assert again["user"]["id"] == user_id


def test_logout_all_counts_only_live_sessions(daemon, client):
    addr = unique_email("live")
    a = daemon.login(addr, client)
    daemon.login(addr, client)
    ok(client.call("logout", {"session": a["session"]}))
    assert ok(client.call("logout_all", {"user_id": a["user"]["id"]})) == {"revoked": 1}


def test_logout_all_unknown_user(client):
    assert ok(client.call("logout_all", {"user_id": str(uuid.uuid4())})) == {"revoked": 0}
