"""Server errors: each wire code raises its own class, with its details; unknown codes raise the
base class. Real daemon where it can produce the error, a fake server for the rest."""

from __future__ import annotations

import json
import pickle
import socket
from typing import Any, Dict

import pytest

from mld_support import Daemon, FakeServer, client, daemon, request_of, unique_email  # noqa: F401

import magiclinkd
from magiclinkd import Client


def test_rate_limit_after_five_starts_for_one_address(daemon: Daemon, client: Client) -> None:
    who = unique_email("busy")
    for i in range(5):
        client.start(who, ip=f"198.51.100.{i + 1}")
    with pytest.raises(magiclinkd.RateLimited) as limited:
        client.start(who, ip="198.51.100.9")
    e = limited.value
    assert isinstance(e, magiclinkd.ServerError) and isinstance(e, magiclinkd.MagicLinkError)
    assert e.code == "rate_limited" and e.retryable is True
    assert isinstance(e.retry_after, int) and 0 < e.retry_after <= 3600
    assert e.details["retry_after_s"] == e.retry_after


def test_cooldown_between_two_starts_for_one_address() -> None:
    d = Daemon(rate_limit_email_cooldown="60")
    try:
        d.start()
        with Client(d.socket) as c:
            who = unique_email("cool")
            c.start(who, ip="198.51.100.30")
            with pytest.raises(magiclinkd.RateLimited) as limited:
                c.start(who, ip="198.51.100.31")
            assert limited.value.retry_after is not None and 0 < limited.value.retry_after <= 60
        d.stop()
    finally:
        d.cleanup()


def test_session_with_ip_is_throttled_after_failures() -> None:
    d = Daemon(rate_limit_failures_max="3")
    try:
        d.start()
        with Client(d.socket) as c:
            for _ in range(3):
                with pytest.raises(magiclinkd.InvalidSession):
                    c.session("nope" * 11, ip="198.51.100.40")
            with pytest.raises(magiclinkd.RateLimited) as limited:
                c.session("nope" * 11, ip="198.51.100.40")
            assert limited.value.retry_after is not None and limited.value.retry_after > 0
            with pytest.raises(magiclinkd.InvalidSession):
                c.session("nope" * 11, ip="198.51.100.41")  # another IP is not throttled
        d.stop()
    finally:
        d.cleanup()


def test_invalid_email(client: Client) -> None:
    with pytest.raises(magiclinkd.InvalidEmail) as bad:
        client.start("not an address", ip="198.51.100.20")
    assert bad.value.code == "invalid_email" and bad.value.retryable is False
    assert not isinstance(bad.value, magiclinkd.TransportError)


def test_redirect_not_allowed(client: Client) -> None:
    with pytest.raises(magiclinkd.RedirectNotAllowed) as bad:
        client.start(unique_email("redir"), redirect="https://evil.example/", ip="198.51.100.21")
    assert bad.value.code == "redirect_not_allowed"


def test_invalid_request_names_the_field(client: Client) -> None:
    with pytest.raises(magiclinkd.InvalidRequest) as bad:
        client.call("start", {"email": 5})
    assert bad.value.field == "params.email"
    with pytest.raises(magiclinkd.InvalidRequest) as bad_ip:
        client.start(unique_email("ip"), ip="not-an-ip")
    assert bad_ip.value.field == "params.ip"


def test_unknown_op(client: Client) -> None:
    with pytest.raises(magiclinkd.UnknownOp) as unknown:
        client.call("frobnicate")
    assert unknown.value.op == "frobnicate"
    assert client.hello().server == "magiclinkd", "the connection stays usable"


def test_unknown_token_and_session(client: Client) -> None:
    with pytest.raises(magiclinkd.InvalidToken) as token:
        client.callback("A" * 43)
    assert token.value.reason == "unknown"
    with pytest.raises(magiclinkd.InvalidSession):
        client.session("B" * 43)


def test_request_too_large_then_the_client_reconnects(client: Client) -> None:
    # The daemon replies with "id": null and closes: the error is still this call's.
    with pytest.raises(magiclinkd.RequestTooLarge) as big:
        client.start(unique_email("big"), user_agent="x" * 70000)
    assert big.value.max_line_bytes == 65536
    assert client._conn is None, "dropped"
    assert client.hello().server == "magiclinkd"


# --- every code through a fake server --------------------------------------------------------------


def error_server(code: str, details: Dict[str, Any], retryable: bool = False) -> FakeServer:
    def handler(conn: socket.socket) -> None:
        while True:
            line = server.read_line(conn)
            if line is None:
                return
            reply = {"id": request_of(line)["id"], "ok": False,
                     "error": {"code": code, "message": f"A {code} happened.", "retryable": retryable,
                               "details": details}}
            conn.sendall(json.dumps(reply).encode() + b"\n")

    server = FakeServer(handler)
    return server.serve()


@pytest.mark.parametrize("code", sorted(magiclinkd.ERROR_CLASSES))
def test_each_code_has_its_class(code: str) -> None:
    server = error_server(code, {"reason": "mail_queue_full", "retry_after_s": 7})
    try:
        with Client(server.path) as c, pytest.raises(magiclinkd.ServerError) as caught:
            c.hello()
        e = caught.value
        assert type(e) is magiclinkd.ERROR_CLASSES[code] and type(e).CODE == code
        assert e.code == code and e.message == f"A {code} happened." and code in str(e)
    finally:
        server.close()


def test_unknown_future_code_is_a_plain_server_error() -> None:
    server = error_server("quota_exceeded", {"limit": 3}, retryable=True)
    try:
        with Client(server.path) as c:
            with pytest.raises(magiclinkd.ServerError) as caught:
                c.hello()
            assert type(caught.value) is magiclinkd.ServerError
            assert caught.value.code == "quota_exceeded" and caught.value.retryable is True
            assert caught.value.details == {"limit": 3}
            # The connection is still good for the next call.
            with pytest.raises(magiclinkd.ServerError):
                c.hello()
            assert server.accepted == 1
    finally:
        server.close()


def test_unavailable_reason_and_retryable() -> None:
    server = error_server("unavailable", {"reason": "mail_queue_full"}, retryable=True)
    try:
        with Client(server.path) as c, pytest.raises(magiclinkd.Unavailable) as caught:
            c.start("a@example.com")
        assert caught.value.reason == "mail_queue_full" and caught.value.retryable
    finally:
        server.close()


def test_exceptions_pickle_and_keep_their_fields() -> None:
    e = magiclinkd.RateLimited("rate_limited", "Too many.", True, {"retry_after_s": 30})
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is magiclinkd.RateLimited and back.retry_after == 30 and back.retryable
    t = magiclinkd.MagicLinkTimeout("slow", request_sent=True)
    back_t = pickle.loads(pickle.dumps(t))
    assert type(back_t) is magiclinkd.MagicLinkTimeout and back_t.request_sent and str(back_t) == "slow"


def test_hierarchy() -> None:
    assert issubclass(magiclinkd.MagicLinkConnectionError, magiclinkd.TransportError)
    assert issubclass(magiclinkd.MagicLinkConnectionError, ConnectionError)
    assert issubclass(magiclinkd.MagicLinkTimeout, TimeoutError)
    assert issubclass(magiclinkd.ProtocolError, magiclinkd.TransportError)
    assert issubclass(magiclinkd.TransportError, magiclinkd.MagicLinkError)
    assert not issubclass(magiclinkd.ServerError, magiclinkd.TransportError)
    for cls in magiclinkd.ERROR_CLASSES.values():
        assert issubclass(cls, magiclinkd.ServerError)
    assert len(magiclinkd.ERROR_CLASSES) == 14
