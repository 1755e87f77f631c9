"""The whole login flow and every op's typed result, against a real daemon."""

from __future__ import annotations

import time
import uuid
from typing import Optional

import pytest

from mld_support import Daemon, FakeServer, client, daemon, unique_email  # noqa: F401 (fixtures)
from mld_support import sign_in as support_sign_in

import magiclinkd
from magiclinkd import Client, InvalidSession, InvalidToken, Login, SessionInfo, User


def sign_in(daemon: Daemon, client: Client, who: str, redirect: Optional[str] = "/account") -> Login:
    return support_sign_in(daemon, client, who, redirect=redirect, user_agent="pytest-flow/1.0")


def test_hello_describes_the_daemon(client: Client) -> None:
    info = client.hello()
    assert isinstance(info, magiclinkd.ServerInfo)
    assert info.server == "magiclinkd" and info.protocol == 1 and info.max_line_bytes == 65536
    assert info.ops[:3] == ("hello", "start", "callback")
    assert {"session", "logout", "logout_all", "admin_status", "admin_purge"} <= set(info.ops)
    assert info.version


def test_full_login_flow(daemon: Daemon, client: Client) -> None:
    who = unique_email("Flow")
    before = int(time.time())
    started = client.start(who, redirect="/account", ip="192.0.2.10", user_agent="pytest-flow/1.0")
    assert before < started.expires_at <= int(time.time()) + 600 + 5
    assert started.flow is not None and len(started.flow) == 43

    token = daemon.wait_for_token(who)
    login = client.callback(token, flow=started.flow, ip="192.0.2.10", user_agent="pytest-flow/1.0")
    assert isinstance(login, Login)
    assert len(login.session) == 43
    assert login.user.email == who and len(login.user.id) == 36
    assert login.redirect == "/account"
    assert before < login.idle_expires_at <= login.expires_at

    info = client.session(login.session)
    assert isinstance(info, SessionInfo)
    assert info.user == login.user
    assert info.expires_at == login.expires_at

    # The link works once.
    with pytest.raises(InvalidToken) as replay:
        client.callback(token, flow=started.flow)
    assert replay.value.reason == "used" and replay.value.code == "invalid_token" and not replay.value.retryable

    assert client.logout(login.session) is None
    with pytest.raises(InvalidSession):
        client.session(login.session)
    client.logout(login.session)  # idempotent


def test_same_address_is_the_same_user_and_logout_all_ends_every_session(daemon: Daemon, client: Client) -> None:
    who = unique_email("twice")
    first = sign_in(daemon, client, who)
    second = sign_in(daemon, client, who.upper().replace("@EXAMPLE.COM", "@example.com"))
    assert first.user.id == second.user.id and first.session != second.session
    assert first.user.email == who, "the address as first seen"
    assert client.logout_all(first.user.id) == 2
    for login in (first, second):
        with pytest.raises(InvalidSession):
            client.session(login.session)
    assert client.logout_all(first.user.id) == 0
    assert client.logout_all(str(uuid.uuid4())) == 0


def test_redirect_to_an_allowed_origin_comes_back(daemon: Daemon, client: Client) -> None:
    login = sign_in(daemon, client, unique_email("abs"), redirect="https://app.example.com/welcome?x=1")
    assert login.redirect == "https://app.example.com/welcome?x=1"
    login2 = sign_in(daemon, client, unique_email("default"), redirect=None)
    assert login2.redirect == "/", "no redirect sent: the daemon's default"


def test_locale_is_passed(daemon: Daemon, client: Client) -> None:
    who = unique_email("locale")
    assert client.start(who, locale="de", ip="192.0.2.11").expires_at > 0
    assert daemon.wait_for_token(who)
    with pytest.raises(magiclinkd.InvalidRequest) as bad:
        client.start(unique_email("locale-bad"), locale="de_DE")
    assert bad.value.field == "params.locale"


def test_admin_ops_have_typed_results(daemon: Daemon, client: Client) -> None:
    # The tests run as root, an administrator for the daemon (Protocol/README.md section 1).
    who = unique_email("admin")
    login = sign_in(daemon, client, who)

    status = client.admin_status()
    assert isinstance(status, magiclinkd.Status) and isinstance(status.mail, magiclinkd.MailCounts)
    assert status.users >= 1 and status.live_sessions >= 1 and status.uptime_s >= 0
    assert isinstance(status.session_cache, magiclinkd.SessionCacheCounts)
    assert status.session_cache.capacity > 0 and status.session_cache.misses >= 0

    sessions = client.admin_sessions(email=who)
    assert [s.user_id for s in sessions] == [login.user.id]
    record = sessions[0]
    assert isinstance(record, magiclinkd.SessionRecord)
    assert record.ip == "192.0.2.10" and record.user_agent == "pytest-flow/1.0" and len(record.handle) == 16
    assert record.handle not in login.session
    assert client.admin_sessions(user_id=login.user.id) == sessions

    assert client.admin_revoke(handle=record.handle) == 1
    with pytest.raises(InvalidSession):
        client.session(login.session)
    assert client.admin_sessions(email=who) == []
    assert client.admin_revoke(user_id=login.user.id) == 0

    letters = client.admin_dead_letters(limit=10)
    assert isinstance(letters, list)
    retry = client.admin_retry("nobody@localhost")
    assert retry == magiclinkd.RetryResult(retried=False, reason="not_found") and not retry
    assert isinstance(client.admin_purge(), int)


def test_admin_create_user_before_the_first_login(daemon: Daemon, client: Client) -> None:
    who = unique_email("precreated")
    made = client.admin_create_user(who)
    assert made.created is True and made.user.email == who
    again = client.admin_create_user(who.upper().replace("@EXAMPLE.COM", "@example.com"))
    assert again == magiclinkd.CreatedUser(user=made.user, created=False)
    assert sign_in(daemon, client, who).user == made.user


def test_admin_sessions_needs_exactly_one_selector(client: Client) -> None:
    with pytest.raises(magiclinkd.InvalidRequest) as neither:
        client.admin_sessions()
    assert neither.value.field == "params.user_id"


def test_socket_path_from_argument_env_or_default(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGICLINKD_SOCKET", daemon.socket)
    with Client() as from_env:
        assert from_env.socket_path == daemon.socket
        assert from_env.hello().server == "magiclinkd"
    # An argument wins over the environment.
    monkeypatch.setenv("MAGICLINKD_SOCKET", "/nonexistent/elsewhere.sock")
    with Client(daemon.socket) as from_arg:
        assert from_arg.socket_path == daemon.socket
        assert from_arg.hello().server == "magiclinkd"
    with pytest.raises(magiclinkd.MagicLinkConnectionError) as wrong:
        Client().hello()
    assert "/nonexistent/elsewhere.sock" in str(wrong.value)
    monkeypatch.delenv("MAGICLINKD_SOCKET")
    assert Client().socket_path == magiclinkd.DEFAULT_SOCKET == "/run/magiclinkd/magiclinkd.sock"


def test_constructing_never_connects() -> None:
    server = FakeServer(lambda conn: None).serve()
    try:
        c = Client(server.path)
        Client("/nonexistent/dir/none.sock")  # no error until used
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            assert server.accepted == 0
            time.sleep(0.02)
        c.close()
        assert server.accepted == 0
    finally:
        server.close()


def test_context_manager_closes_and_a_closed_client_reconnects(daemon: Daemon) -> None:
    with Client(daemon.socket) as c:
        c.hello()
        conn = c._conn
        assert conn is not None
    assert c._conn is None and conn.sock.fileno() == -1
    c.close()  # twice is fine
    assert c.hello().server == "magiclinkd"
    c.close()


def test_one_connection_is_reused(client: Client) -> None:
    client.hello()
    conn = client._conn
    fd = conn.sock.fileno() if conn else None
    for _ in range(20):
        client.hello()
    assert client._conn is conn and conn is not None and conn.sock.fileno() == fd


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError):
        Client("/x", read_timeout=0)
    with pytest.raises(ValueError):
        Client("/x", connect_timeout=-1)
    from pathlib import Path

    assert Client(Path("/x/y.sock")).socket_path == "/x/y.sock"


def test_user_is_a_value(client: Client) -> None:
    assert User("a", "b") == User("a", "b") and hash(User("a", "b")) == hash(User("a", "b"))
    with pytest.raises(Exception):
        User("a", "b").id = "c"  # type: ignore[misc]
