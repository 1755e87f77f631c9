"""Tokens and session ids never show up in repr/str of results, in exception messages or
tracebacks, or in the client's log output."""

from __future__ import annotations

import json
import logging
import socket
import traceback

import pytest

from mld_support import Daemon, FakeServer, daemon, request_of, unique_email  # noqa: F401

import magiclinkd
from magiclinkd import Client


def everything_about(e: BaseException) -> str:
    return "\n".join([str(e), repr(e), repr(e.args), "".join(traceback.format_exception(type(e), e, e.__traceback__))])


def test_results_and_errors_never_show_secrets(daemon: Daemon, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="magiclinkd")
    with Client(daemon.socket) as c:
        who = unique_email("secret")
        started = c.start(who, ip="192.0.2.30", send="both")
        assert started.flow
        token = daemon.wait_for_token(who)
        with pytest.raises(magiclinkd.ConfirmationRequired) as elsewhere:
            c.callback(token, flow="wrong")
        login = c.callback(token, flow=started.flow, ip="192.0.2.30")
        secrets = [token, login.session, started.flow]

        shown = [repr(started), str(started), repr(login), str(login), repr(c.session(login.session)), repr(c),
                 everything_about(elsewhere.value)]
        with pytest.raises(magiclinkd.InvalidToken) as code_used:
            c.verify_code(started.flow, "123456")
        shown.append(everything_about(code_used.value))
        with pytest.raises(magiclinkd.InvalidToken) as used:
            c.callback(token, flow=started.flow)
        shown.append(everything_about(used.value))
        c.logout(login.session)
        with pytest.raises(magiclinkd.InvalidSession) as ended:
            c.session(login.session)
        shown.append(everything_about(ended.value))
        daemon.restart()  # the reconnect path logs too
        with pytest.raises(magiclinkd.InvalidSession):
            c.session(login.session)

    assert "session=" not in repr(login) and login.user.email in repr(login)
    assert "flow=" not in repr(started) and "expires_at=" in repr(started)
    logged = caplog.text
    for secret in secrets:
        for text in shown + [logged]:
            assert secret not in text


def test_transport_errors_never_show_the_request_or_reply() -> None:
    session = "S3cr3tS3ss10n_aaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

    def handler(conn: socket.socket) -> None:
        line = server.read_line(conn)
        if line is None:
            return
        # A broken reply that carries the secret back: the error must not quote it.
        conn.sendall(b'{"id":' + str(request_of(line)["id"]).encode() + b',"ok":true,"result":{"session":"'
                     + session.encode() + b'"} garbage\n')

    server = FakeServer(handler).serve()
    try:
        with Client(server.path) as c, pytest.raises(magiclinkd.ProtocolError) as caught:
            c.callback(session)
        assert session not in everything_about(caught.value)
        assert caught.value.__cause__ is None and caught.value.__context__ is None or session not in repr(
            caught.value.__context__)
    finally:
        server.close()

    silent = FakeServer(lambda conn: server.read_line(conn) and None).serve()
    try:
        with Client(silent.path, read_timeout=0.2) as c, pytest.raises(magiclinkd.MagicLinkTimeout) as slow:
            c.session(session)
        assert session not in everything_about(slow.value)
    finally:
        silent.close()


def test_the_session_is_still_there_for_the_app() -> None:
    login = magiclinkd.Login(session="s" * 43, expires_at=2, idle_expires_at=1,
                             user=magiclinkd.User("u", "a@example.com"), redirect="/")
    assert login.session == "s" * 43 and "s" * 43 not in repr(login)
    assert json.dumps(login.session)
