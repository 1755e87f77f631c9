"""Transport behaviour: connection errors, connect and read timeouts, protocol errors, reply
framing, and the silent reconnect / single retry when the daemon restarts."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

from mld_support import Daemon, FakeServer, client, daemon, request_of, short_tmpdir, sign_in, unique_email  # noqa: F401

import magiclinkd
from magiclinkd import Client
from magiclinkd._transport import Connection

HELLO = {"server": "magiclinkd", "version": "9.9.9", "protocol": 1, "ops": ["hello"], "max_line_bytes": 65536}


def ok_line(request_line: bytes, result: object) -> bytes:
    return json.dumps({"id": request_of(request_line)["id"], "ok": True, "result": result}).encode() + b"\n"


def scripted(replies: Callable[[FakeServer, int, bytes], Optional[bytes]]) -> FakeServer:
    """A fake server calling ``replies(server, connection_number, line)`` for each request line;
    None closes the connection without an answer."""

    def handler(conn: socket.socket) -> None:
        number = server.accepted
        while True:
            line = server.read_line(conn)
            if line is None:
                return
            answer = replies(server, number, line)
            if answer is None:
                conn.close()
                return
            if answer:
                conn.sendall(answer)

    server = FakeServer(handler)
    return server.serve()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    d = short_tmpdir("mldpyx-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def servers() -> Iterator[List[FakeServer]]:
    made: List[FakeServer] = []
    yield made
    for s in made:
        s.close()


# --- connecting ----------------------------------------------------------------------------------


def test_missing_socket_is_a_connection_error(short_dir: Path) -> None:
    path = str(short_dir / "none.sock")
    with Client(path) as c, pytest.raises(magiclinkd.MagicLinkConnectionError) as caught:
        c.hello()
    e = caught.value
    assert isinstance(e, ConnectionError) and isinstance(e, magiclinkd.TransportError)
    assert e.request_sent is False and path in str(e) and "no such socket" in str(e)


def test_socket_without_listener_is_refused(short_dir: Path) -> None:
    path = str(short_dir / "stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)  # a socket file nobody listens on, as a crashed daemon leaves it
    try:
        with Client(path) as c, pytest.raises(magiclinkd.MagicLinkConnectionError) as caught:
            c.hello()
        assert "refused" in str(caught.value)
    finally:
        stale.close()


def test_connect_timeout_when_the_backlog_is_full(short_dir: Path) -> None:
    path = str(short_dir / "full.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)  # and never accept
    fillers = []
    try:
        for _ in range(8):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            fillers.append(s)
            try:
                s.connect(path)
            except BlockingIOError:
                break
        else:
            pytest.fail("could not fill the listen backlog")
        with Client(path, connect_timeout=0.3) as c:
            began = time.monotonic()
            with pytest.raises(magiclinkd.MagicLinkTimeout) as caught:
                c.hello()
            elapsed = time.monotonic() - began
        assert 0.25 <= elapsed < 3, elapsed
        assert isinstance(caught.value, TimeoutError) and caught.value.request_sent is False
    finally:
        for s in fillers:
            s.close()
        listener.close()


# --- read timeout ------------------------------------------------------------------------------


def test_read_timeout_on_a_silent_server_drops_the_connection(servers: List[FakeServer]) -> None:
    server = scripted(lambda srv, n, line: b"")  # reads every request, never answers
    servers.append(server)
    with Client(server.path, read_timeout=0.3) as c:
        began = time.monotonic()
        with pytest.raises(magiclinkd.MagicLinkTimeout) as caught:
            c.session("S" * 43)
        assert 0.25 <= time.monotonic() - began < 3
        assert caught.value.request_sent is True and "0.3 s" in str(caught.value)
        assert c._conn is None
        with pytest.raises(magiclinkd.MagicLinkTimeout):
            c.hello()
    assert server.accepted == 2, "the timed-out connection was not reused"
    assert len(server.lines) == 2, "a timeout is not retried"


def test_a_late_reply_is_never_taken_for_the_next_one(servers: List[FakeServer]) -> None:
    release = threading.Event()

    def replies(srv: FakeServer, n: int, line: bytes) -> bytes:
        if n == 1:
            release.wait(5)  # answers the first request only after the client gave up
            return ok_line(line, {"expires_at": 1})
        return ok_line(line, {"expires_at": 2})

    server = scripted(replies)
    servers.append(server)
    with Client(server.path, read_timeout=0.2) as c:
        with pytest.raises(magiclinkd.MagicLinkTimeout):
            c.start("late@example.com")
        release.set()
        assert c.start("next@example.com").expires_at == 2


# --- protocol errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [b"this is not json\n", b"[1,2]\n", b'{"id":1}\n', b'{"id":1,"ok":true}\n', b'{"id":1,"ok":false,"error":7}\n',
     b'{"id":1,"ok":true,"result":{"session":"x"}}\xff\n', b"\xff\xfe\n"],
    ids=["not-json", "not-object", "no-ok", "no-result", "bad-error", "not-utf8-tail", "not-utf8"],
)
def test_garbage_reply_is_a_protocol_error(reply: bytes, servers: List[FakeServer]) -> None:
    server = scripted(lambda srv, n, line: reply)
    servers.append(server)
    with Client(server.path) as c:
        with pytest.raises(magiclinkd.ProtocolError) as caught:
            c.call("hello")
        assert caught.value.request_sent is True
        assert c._conn is None


def test_id_mismatch_is_a_protocol_error_and_drops_the_connection(servers: List[FakeServer]) -> None:
    server = scripted(lambda srv, n, line: json.dumps({"id": request_of(line)["id"] + 1, "ok": True,
                                                       "result": HELLO}).encode() + b"\n")
    servers.append(server)
    with Client(server.path) as c:
        with pytest.raises(magiclinkd.ProtocolError, match="id"):
            c.hello()
        assert c._conn is None
        with pytest.raises(magiclinkd.ProtocolError):
            c.hello()
    assert server.accepted == 2


def test_string_id_echo_is_a_mismatch(servers: List[FakeServer]) -> None:
    server = scripted(lambda srv, n, line: json.dumps({"id": str(request_of(line)["id"]), "ok": True,
                                                       "result": HELLO}).encode() + b"\n")
    servers.append(server)
    with Client(server.path) as c, pytest.raises(magiclinkd.ProtocolError):
        c.hello()


def test_reply_longer_than_the_cap(servers: List[FakeServer]) -> None:
    server = scripted(lambda srv, n, line: b'{"id":1,"ok":true,"result":{"x":"' + b"y" * 10000)
    servers.append(server)
    with Client(server.path, max_reply_bytes=4096) as c:
        with pytest.raises(magiclinkd.ProtocolError, match="longer than 4096"):
            c.hello()
        assert c._conn is None


def test_reply_in_pieces_and_unicode_line_separators(servers: List[FakeServer]) -> None:
    def handler(conn: socket.socket) -> None:
        while True:
            line = server.read_line(conn)
            if line is None:
                return
            # U+2028 / U+2029 / U+0085 are not line ends; \r\n is the JSON whitespace before \n.
            result = dict(HELLO, version="1.0\u2028\u2029\u0085x")
            data = json.dumps({"id": request_of(line)["id"], "ok": True, "result": result},
                              ensure_ascii=False).encode() + b"\r\n"
            for i in range(0, len(data), 7):
                conn.sendall(data[i:i + 7])
                time.sleep(0.001)

    server = FakeServer(handler).serve()
    servers.append(server)
    with Client(server.path) as c:
        assert c.hello().version == "1.0\u2028\u2029\u0085x"
        assert c.hello().server == "magiclinkd"
    assert server.accepted == 1


def test_malformed_result_is_a_protocol_error(servers: List[FakeServer]) -> None:
    server = scripted(lambda srv, n, line: ok_line(line, {"expires_at": "soon"}))
    servers.append(server)
    with Client(server.path) as c, pytest.raises(magiclinkd.ProtocolError, match="expires_at"):
        c.start("a@example.com")


def test_unsolicited_bytes_make_the_connection_unusable(servers: List[FakeServer]) -> None:
    # Two lines for one request: the second must never be read as the next reply.
    server = scripted(lambda srv, n, line: ok_line(line, HELLO) + ok_line(line, HELLO))
    servers.append(server)
    with Client(server.path) as c:
        c.hello()
        c.hello()
    assert server.accepted == 2


# --- the daemon goes away between calls --------------------------------------------------------


def test_restart_between_calls_is_transparent(daemon: Daemon) -> None:
    with Client(daemon.socket) as c:
        login = sign_in(daemon, c, unique_email("restart"), ip="192.0.2.50")
        first = c._conn
        daemon.restart()  # SIGTERM, then a new daemon on the same socket path and database
        assert c.hello().server == "magiclinkd"
        assert c._conn is not first
        daemon.restart()
        assert c.session(login.session).user == login.user
        daemon.restart()
        # Nothing was sent on the dead connection, so even a non-repeatable op is fine.
        assert c.start(unique_email("after"), ip="192.0.2.51").expires_at > 0


def test_broken_connection_after_writing_retries_only_safe_ops(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    # Blind the idle check so the request is written to the dead connection (EPIPE / EOF),
    # as when the daemon goes away between the check and the write.
    monkeypatch.setattr(Connection, "is_idle_and_open", lambda self: True)
    with Client(daemon.socket) as c:
        who = unique_email("blind")
        login = sign_in(daemon, c, who, ip="192.0.2.60")

        daemon.restart()
        assert c.hello().server == "magiclinkd", "hello is sent again on a new connection"
        daemon.restart()
        assert c.session(login.session).user.email == who, "so is session"
        daemon.restart()
        assert isinstance(c.admin_status(), magiclinkd.Status)
        daemon.restart()
        with pytest.raises(magiclinkd.MagicLinkConnectionError) as caught:
            c.logout(login.session)
        assert caught.value.request_sent is True and "may or may not" in str(caught.value)
        assert c._conn is None
        assert c.session(login.session).user.email == who, "the next call reconnects"


def test_eof_before_the_reply_retries_safe_ops_once(servers: List[FakeServer]) -> None:
    # The first connection takes the request and closes; later ones answer.
    server = scripted(lambda srv, n, line: None if n == 1 else ok_line(line, HELLO))
    servers.append(server)
    with Client(server.path) as c:
        assert c.hello().version == "9.9.9"
    assert server.accepted == 2 and len(server.lines) == 2


def test_eof_before_the_reply_is_not_retried_for_start(servers: List[FakeServer]) -> None:
    server = scripted(lambda srv, n, line: None if n == 1 else ok_line(line, {"expires_at": 5}))
    servers.append(server)
    with Client(server.path) as c:
        with pytest.raises(magiclinkd.MagicLinkConnectionError) as caught:
            c.start("once@example.com")
        assert caught.value.request_sent is True and "may or may not" in str(caught.value)
        assert server.accepted == 1 and len(server.lines) == 1
        assert c.start("twice@example.com").expires_at == 5


def test_peek_is_retried_like_hello(servers: List[FakeServer]) -> None:
    server = scripted(lambda srv, n, line: None if n == 1 else ok_line(
        line, {"valid": False, "reason": "unknown", "flow_matches": False}))
    servers.append(server)
    with Client(server.path) as c:
        assert c.peek("T" * 43) == magiclinkd.PeekResult(valid=False, flow_matches=False, reason="unknown")
    assert server.accepted == 2


def test_typed_results_of_newer_ops(servers: List[FakeServer]) -> None:
    user = {"id": "00000000-0000-4000-8000-000000000001", "email": "bob@example.com"}
    server = scripted(lambda srv, n, line: ok_line(line, {"user": user, "created": True, "extra": [1]}))
    servers.append(server)
    with Client(server.path) as c:
        made = c.admin_create_user("bob@example.com")
    assert made == magiclinkd.CreatedUser(user=magiclinkd.User(**user), created=True)
    assert request_of(server.lines[0])["params"] == {"email": "bob@example.com"}


def test_only_given_params_are_sent(servers: List[FakeServer]) -> None:
    server = scripted(lambda srv, n, line: ok_line(line, {"expires_at": 1, "flow": "F" * 43}))
    servers.append(server)
    with Client(server.path) as c:
        c.start("a@example.com")
        c.start("b@example.com", redirect="/x", ip="192.0.2.1", user_agent="UA", locale="de", send="both")
    first, second = (request_of(line) for line in server.lines)
    assert first["op"] == "start" and first["params"] == {"email": "a@example.com"}
    assert second["params"] == {"email": "b@example.com", "redirect": "/x", "ip": "192.0.2.1", "user_agent": "UA",
                                "locale": "de", "send": "both"}
    assert type(first["id"]) is int and second["id"] == first["id"] + 1


def test_safe_op_gives_up_after_one_retry(servers: List[FakeServer]) -> None:
    server = scripted(lambda srv, n, line: None)
    servers.append(server)
    with Client(server.path) as c, pytest.raises(magiclinkd.MagicLinkConnectionError) as caught:
        c.hello()
    assert caught.value.request_sent is True
    assert server.accepted == 2 and len(server.lines) == 2


def test_raw_line_reaches_the_daemon_byte_for_byte(client: Client) -> None:
    reply = json.loads(client._call_raw(b'{"id":"raw","op":"hello"}\r'))
    assert reply["id"] == "raw" and reply["ok"] is True
    reply = json.loads(client._call_raw(b'{"id":1,"op":"hello"'))
    assert reply == {"id": None, "ok": False, "error": reply["error"]} and reply["error"]["code"] == "invalid_request"
