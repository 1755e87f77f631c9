"""Several apps on one daemon: ``Client(app=…)`` (or ``MAGICLINKD_APP``) names the app in every
op but ``hello``; against a real daemon configured by a YAML file with two apps, and against the
single-app daemon of the other tests."""

from __future__ import annotations

import json
import re
import socket
from typing import Any, Dict, Iterator, List

import pytest

from mld_support import Daemon, FakeServer, client, daemon, request_of, sign_in, unique_email  # noqa: F401

import magiclinkd
from magiclinkd import Client, InvalidRequest, InvalidSession, InvalidToken

CONFIG = """\
callback_url: https://www.example.com/auth/callback
allowed_redirect_origins: [https://www.example.com]
rate_limit_email_cooldown: 0
apps:
  - id: shop
    callback_url: https://shop.example.com/auth/callback
  - id: wiki
    callback_url: https://wiki.example.com/login?from=mail
"""

LINK_RE = re.compile(r"(https://\S+?[?&])token=[A-Za-z0-9_-]{43}")


@pytest.fixture(scope="module")
def apps_daemon() -> Iterator[Daemon]:
    d = Daemon(config=CONFIG)
    try:
        d.start()
        yield d
        d.stop()
    finally:
        d.cleanup()


def link_prefix(daemon: Daemon, who: str) -> str:
    """The mail's sign-in link up to ``token=``."""
    match = LINK_RE.search(daemon.wait_for_text(who))
    assert match, f"no sign-in link in the mail to {who}"
    return match.group(1)


# --- a daemon with two apps ----------------------------------------------------------------------


def test_the_environment_has_no_callback_settings_so_the_file_decides(apps_daemon: Daemon) -> None:
    env = apps_daemon.env()
    assert "MAGICLINKD_CONFIG" in env
    assert not {"MAGICLINKD_CALLBACK_URL", "MAGICLINKD_ALLOWED_REDIRECT_ORIGINS",
                "MAGICLINKD_RATE_LIMIT_EMAIL_COOLDOWN", "MAGICLINKD_APP"} & set(env)


def test_hello_lists_both_apps(apps_daemon: Daemon) -> None:
    with Client(apps_daemon.socket) as anonymous, Client(apps_daemon.socket, app="nope") as unknown:
        assert anonymous.hello().apps == ("shop", "wiki")
        # hello never sends app, so even an unknown one does not get in its way.
        assert unknown.hello().apps == ("shop", "wiki")


def test_without_app_start_names_the_missing_field(apps_daemon: Daemon) -> None:
    with Client(apps_daemon.socket) as c, pytest.raises(InvalidRequest) as caught:
        c.start(unique_email("noapp"), ip="192.0.2.20")
    assert caught.value.field == "params.app" and caught.value.details["field"] == "params.app"
    assert caught.value.code == "invalid_request" and not caught.value.retryable


def test_an_unknown_app_is_an_invalid_request(apps_daemon: Daemon) -> None:
    before = apps_daemon.mail_count()
    with Client(apps_daemon.socket, app="blog") as c:
        with pytest.raises(InvalidRequest) as started:
            c.start(unique_email("blog"), ip="192.0.2.21")
        with pytest.raises(InvalidRequest) as created:
            c.admin_create_user(unique_email("blog"))
        with pytest.raises(InvalidRequest) as session:
            c.session("S" * 43)
    for caught in (started, created, session):
        assert caught.value.field == "params.app" and not caught.value.retryable
    assert apps_daemon.mail_count() == before, "nothing was sent"


def test_shop_login_is_valid_for_the_shop_only(apps_daemon: Daemon) -> None:
    who = unique_email("shop")
    with Client(apps_daemon.socket, app="shop") as shop, Client(apps_daemon.socket, app="shop") as shop2, \
            Client(apps_daemon.socket, app="wiki") as wiki:
        started = shop.start(who, redirect="/cart", ip="192.0.2.22", user_agent="pytest-apps/1.0")
        assert started.flow is not None
        text = apps_daemon.wait_for_text(who)
        match = LINK_RE.search(text)
        assert match and match.group(1) == "https://shop.example.com/auth/callback?", "the shop's callback_url"
        token = text[match.end() - 43:match.end()]

        # The shop's link is unknown to the wiki (and using it there uses nothing).
        with pytest.raises(InvalidToken) as elsewhere:
            wiki.callback(token, flow=started.flow)
        assert elsewhere.value.reason == "unknown"

        login = shop.callback(token, flow=started.flow, ip="192.0.2.22", user_agent="pytest-apps/1.0")
        assert login.user.email == who and login.redirect == "/cart"

        assert shop2.session(login.session).user == login.user, "another client of the same app"
        with pytest.raises(InvalidSession):
            wiki.session(login.session)
        wiki.logout(login.session)  # ends nothing in another app
        assert shop.session(login.session).user == login.user
        shop.logout(login.session)
        with pytest.raises(InvalidSession):
            shop2.session(login.session)


def test_the_wiki_uses_its_own_callback_url(apps_daemon: Daemon) -> None:
    who = unique_email("wikilink")
    with Client(apps_daemon.socket, app="wiki") as wiki:
        wiki.start(who, ip="192.0.2.23")
        assert link_prefix(apps_daemon, who) == "https://wiki.example.com/login?from=mail&"


def test_admin_create_user_per_app(apps_daemon: Daemon) -> None:
    who = unique_email("wikiuser")
    with Client(apps_daemon.socket, app="wiki") as wiki, Client(apps_daemon.socket, app="shop") as shop:
        made = wiki.admin_create_user(who)
        assert isinstance(made, magiclinkd.CreatedUser)
        assert made.created is True and made.user.email == who and len(made.user.id) == 36
        again = wiki.admin_create_user(who)
        assert again == magiclinkd.CreatedUser(user=made.user, created=False)
        # One address in two apps is two users.
        other = shop.admin_create_user(who)
        assert other.created is True and other.user.id != made.user.id
        assert sign_in(apps_daemon, wiki, who).user == made.user


def test_app_from_the_environment(apps_daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGICLINKD_APP", "wiki")
    with Client(apps_daemon.socket) as from_env, Client(apps_daemon.socket, app="shop") as from_arg:
        assert from_env.app == "wiki" and from_arg.app == "shop", "the argument wins"
        who = unique_email("envapp")
        user = from_env.admin_create_user(who).user
        assert from_env.admin_create_user(who).created is False
        assert from_arg.admin_create_user(who).user.id != user.id
    monkeypatch.setenv("MAGICLINKD_APP", "")
    assert Client(apps_daemon.socket).app is None, "empty means unset"
    monkeypatch.delenv("MAGICLINKD_APP")
    assert Client(apps_daemon.socket).app is None


# --- the single-app daemon of the other tests ------------------------------------------------------


def test_single_app_daemon_with_and_without_app(daemon: Daemon, client: Client) -> None:
    assert client.app is None
    assert client.hello().apps == ("default",)
    with Client(daemon.socket, app="default") as named:
        login = sign_in(daemon, named, unique_email("default"))
        assert client.session(login.session).user == login.user, "the same app, named or not"
        assert named.session(login.session).user == login.user
        anonymous_login = sign_in(daemon, client, unique_email("anon"))
        assert named.session(anonymous_login.session).user == anonymous_login.user
        made = named.admin_create_user(unique_email("precreate"))
        assert client.admin_create_user(made.user.email) == magiclinkd.CreatedUser(user=made.user, created=False)
    with Client(daemon.socket, app="shop") as wrong, pytest.raises(InvalidRequest) as caught:
        wrong.start(unique_email("wrong"), ip="192.0.2.24")
    assert caught.value.field == "params.app"


# --- what goes on the wire -------------------------------------------------------------------------

HELLO_WITHOUT_APPS = {"server": "magiclinkd", "version": "0.0.9", "protocol": 1, "ops": ["hello"],
                      "max_line_bytes": 65536}


@pytest.fixture
def recorder() -> Iterator[FakeServer]:
    """A fake daemon answering every request with a result fitting its op."""
    results: Dict[str, Any] = {
        "hello": HELLO_WITHOUT_APPS,
        "start": {"expires_at": 1, "flow": "F" * 43},
        "session": {"user": {"id": "u", "email": "e@example.com"}, "expires_at": 2, "idle_expires_at": 2},
        "logout": {},
        "admin_status": {"version": "0.0.9", "started_at": 1, "uptime_s": 1, "users": 0, "live_sessions": 0,
                         "mail": {"queued": 0, "sending": 0, "sent": 0, "failed": 0, "expired": 0}},
        "admin_create_user": {"user": {"id": "u", "email": "e@example.com"}, "created": True},
    }

    def handler(conn: socket.socket) -> None:
        while True:
            line = server.read_line(conn)
            if line is None:
                return
            request = request_of(line)
            reply = {"id": request["id"], "ok": True, "result": results.get(request["op"], {})}
            conn.sendall(json.dumps(reply).encode() + b"\n")

    server = FakeServer(handler).serve()
    yield server
    server.close()


def sent_params(server: FakeServer) -> List[Any]:
    return [request_of(line).get("params") for line in server.lines]


def test_every_op_but_hello_sends_the_app(recorder: FakeServer) -> None:
    with Client(recorder.path, app="shop") as c:
        info = c.hello()
        c.start("a@example.com", ip="192.0.2.1")
        c.session("S" * 43)
        c.logout("S" * 43)
        c.admin_status()
        c.admin_create_user("a@example.com")
        c.call("logout", {"session": "S", "app": "wiki"})  # the generic call may name another
        c.call("logout", {"session": "S", "app": None})  # None is "not given": the client's
        c.call("hello", {"app": "wiki"})  # sent as given
    assert info.apps is None, "a daemon older than apps"
    assert sent_params(recorder) == [
        None,
        {"email": "a@example.com", "ip": "192.0.2.1", "app": "shop"},
        {"session": "S" * 43, "app": "shop"},
        {"session": "S" * 43, "app": "shop"},
        {"app": "shop"},
        {"email": "a@example.com", "app": "shop"},
        {"session": "S", "app": "wiki"},
        {"session": "S", "app": "shop"},
        {"app": "wiki"},
    ]


def test_without_app_nothing_is_added(recorder: FakeServer) -> None:
    with Client(recorder.path) as c:
        c.hello()
        c.start("a@example.com")
        c.admin_status()
    assert sent_params(recorder) == [None, {"email": "a@example.com"}, None]


def test_app_argument_checks_and_repr() -> None:
    with pytest.raises(ValueError):
        Client("/x", app="")
    with pytest.raises(ValueError):
        Client("/x", app=7)  # type: ignore[arg-type]
    c = Client("/x/y.sock", app="shop")
    assert c.app == "shop" and "app='shop'" in repr(c)
