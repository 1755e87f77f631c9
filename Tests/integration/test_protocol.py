"""Framing and envelope rules (Protocol/README.md sections 1-3 and `hello`)."""

import json
import re
import time

import pytest

from conftest import ABSENT, ALL_OPS, Client, serve_daemon, err, ok


def line(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


# ------------------------------------------------------------------------------------ hello


def test_hello_result(client):
    reply = client.call("hello")
    result = ok(reply)
    assert result["server"] == "magiclinkd"
    assert isinstance(result["version"], str) and re.fullmatch(r"\d+\.\d+\.\d+\S*", result["version"]), result
    assert result["protocol"] == 1 and type(result["protocol"]) is int
    assert result["ops"] == ALL_OPS, result
    assert result["max_line_bytes"] == 65536 and type(result["max_line_bytes"]) is int


def test_hello_accepts_empty_params(client):
    ok(client.call("hello", {}))


# ------------------------------------------------------------------------------------ ids


@pytest.mark.parametrize(
    "rid",
    ["abc", "", "ünïcødé ✓", "x" * 256, 0, 7, -1, 9007199254740991, -9007199254740991],
    ids=["str", "empty-str", "unicode-str", "str-256-bytes", "zero", "int", "negative", "max-safe", "min-safe"],
)
def test_id_echoed_same_type_and_value(client, rid):
    reply = client.call("hello", id=rid)
    ok(reply)
    assert reply["id"] == rid and type(reply["id"]) is type(rid), reply


def test_id_echoed_on_errors(client):
    reply = client.call("no_such_op", id="err-1")
    err(reply, "unknown_op")
    assert reply["id"] == "err-1"
    reply = client.call("session", {"session": "nope"}, id=99)
    err(reply, "invalid_session")
    assert reply["id"] == 99 and type(reply["id"]) is int


def test_absent_id_gives_null(client):
    reply = client.call("hello", id=ABSENT)
    ok(reply)
    assert reply["id"] is None


def test_null_id_is_like_absent(client):
    # vectors/README.md "Decisions": "id": null is processed normally, reply id null
    reply = client.send_raw(b'{"id":null,"op":"hello"}\n')[0]
    ok(reply)
    assert reply["id"] is None


@pytest.mark.parametrize(
    "raw_id",
    [
        "true",
        "1.5",
        "1.0",
        "1e3",
        "9007199254740992",
        "-9007199254740992",
        "[1]",
        '{"a":1}',
        '"' + "x" * 257 + '"',
    ],
    ids=["bool", "fraction", "int-with-fraction", "exponent", "over-2^53", "under-minus-2^53", "array", "object", "str-257-bytes"],
)
def test_invalid_id(client, raw_id):
    reply = client.send_raw(b'{"id":' + raw_id.encode() + b',"op":"hello"}\n')[0]
    err(reply, "invalid_request", field="id")
    assert reply["id"] is None


def test_string_id_limit_counts_bytes(client):
    # 128 two-byte characters = 256 bytes: allowed; 129 = 258 bytes: refused.
    reply = client.call("hello", id="é" * 128)
    ok(reply)
    reply = client.send_raw(line({"id": "é" * 129, "op": "hello"}))[0]
    err(reply, "invalid_request", field="id")
    assert reply["id"] is None


# ------------------------------------------------------------------------------------ ops and members


def test_unknown_op(client):
    reply = client.call("frobnicate", id="u1")
    err(reply, "unknown_op", op="frobnicate")
    assert reply["id"] == "u1"


def test_unknown_op_is_case_sensitive(client):
    err(client.call("HELLO"), "unknown_op", op="HELLO")


@pytest.mark.parametrize(
    "request_obj, field",
    [
        ({"id": 1}, "op"),
        ({"id": 1, "op": 5}, "op"),
        ({"id": 1, "op": None}, "op"),
        ({"id": 1, "op": ["hello"]}, "op"),
        ({"id": 1, "op": "hello", "params": []}, "params"),
        ({"id": 1, "op": "hello", "params": "x"}, "params"),
        ({"id": 1, "op": "hello", "params": None}, "params"),
        ({"id": 1, "op": "start"}, "params.email"),
        ({"id": 1, "op": "start", "params": {}}, "params.email"),
        ({"id": 1, "op": "start", "params": {"email": 5}}, "params.email"),
        ({"id": 1, "op": "start", "params": {"email": ["a@example.com"]}}, "params.email"),
        ({"id": 1, "op": "start", "params": {"email": "a@example.com", "redirect": 1}}, "params.redirect"),
        ({"id": 1, "op": "start", "params": {"email": "a@example.com", "ip": 1}}, "params.ip"),
        ({"id": 1, "op": "start", "params": {"email": "a@example.com", "user_agent": {}}}, "params.user_agent"),
        ({"id": 1, "op": "callback", "params": {}}, "params.token"),
        ({"id": 1, "op": "callback", "params": {"token": 42}}, "params.token"),
        ({"id": 1, "op": "session", "params": {}}, "params.session"),
        ({"id": 1, "op": "session", "params": {"session": None}}, "params.session"),
        ({"id": 1, "op": "logout", "params": {}}, "params.session"),
        ({"id": 1, "op": "logout", "params": {"session": True}}, "params.session"),
        ({"id": 1, "op": "logout_all", "params": {}}, "params.user_id"),
        ({"id": 1, "op": "logout_all", "params": {"user_id": 3}}, "params.user_id"),
    ],
)
def test_missing_or_wrong_typed_member(client, request_obj, field):
    reply = client.send_raw(line(request_obj))[0]
    err(reply, "invalid_request", field=field)
    assert reply["id"] == 1, "a valid id is echoed even when another member is at fault"


def test_unknown_members_ignored(client):
    reply = client.send_raw(line({"id": "x", "op": "hello", "future": {"a": [1]}, "params": {"also": 1}}))[0]
    ok(reply)
    assert reply["id"] == "x"
    # unknown params of an op with params
    reply = client.call("session", {"session": "nope", "newer_client_field": 1})
    err(reply, "invalid_session")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"op":"hello","op":"hello"}',
        b'{"id":1,"id":2,"op":"hello"}',
        b'{"op":"session","params":{"session":"a","session":"b"}}',
        b'{"op":"hello","x":{"k":1,"k":1}}',
        b'{"id":3,"op":"hello","o\\u0070":"hello"}',
    ],
    ids=["op", "id", "in-params", "in-ignored-member", "equal-after-unescaping"],
)
def test_duplicate_members_refused(client, raw):
    reply = client.send_raw(raw + b"\n")[0]
    err(reply, "invalid_request")
    assert reply["id"] is None, reply


# ------------------------------------------------------------------------------------ malformed lines


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b'{"op":"hello"',
        b'{"op":"hello",}',
        b"{'op':'hello'}",
        b'{"op":"hello", /* c */ "id":1}',
        b'{"op":"hello","id":NaN}',
        b'{"op":"hello"} {"op":"hello"}',
        b'{"op":"hello"}x',
        b"[]",
        b'["hello"]',
        b'"hello"',
        b"42",
        b"null",
        b"true",
        b" ",
        b'{"op":"hel\xfflo"}',
        b'{"op":"hello","id":"\xc3\x28"}',
        b'{"op":"hello","id":"\xed\xa0\x80"}',
        b'\xef\xbb\xbf{"op":"hello"}',
        b'{"op":"hello","id":"a\x01b"}',
        b'{"op":"hello","x":' + b"[" * 200 + b"]" * 200 + b"}",
    ],
    ids=[
        "garbage", "unterminated", "trailing-comma", "single-quotes", "comment", "nan", "two-values",
        "trailing-garbage", "array", "array-of-string", "string", "number", "null", "true", "only-space",
        "invalid-utf8-byte", "invalid-utf8-seq", "utf8-encoded-surrogate", "bom", "raw-control-char",
        "nested-200-deep",
    ],
)
def test_malformed_line_gets_null_id_and_connection_survives(client, raw):
    replies = client.send_raw(raw + b"\n" + line({"id": "after", "op": "hello"}))
    assert len(replies) == 2
    err(replies[0], "invalid_request")
    assert replies[0]["id"] is None, replies[0]
    ok(replies[1])
    assert replies[1]["id"] == "after"


def nested(depth: int) -> bytes:
    """A hello whose deepest value is at `depth` (the top-level object is depth 1)."""
    return b'{"id":"n","op":"hello","x":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}\n"


def test_nesting_depth_limit(client):
    ok(client.send_raw(nested(10))[0])
    ok(client.send_raw(nested(64))[0])
    reply = client.send_raw(nested(65))[0]
    err(reply, "invalid_request")
    assert reply["id"] is None
    ok(client.call("hello"))


def test_whitespace_around_the_object_is_allowed(client):
    reply = client.send_raw(b' \t{"id":"ws","op":"hello"} \t\n')[0]
    ok(reply)
    assert reply["id"] == "ws"


def test_carriage_return_before_line_feed_ignored(client):
    replies = client.send_raw(b'{"id":"crlf","op":"hello"}\r\n')
    ok(replies[0])
    assert replies[0]["id"] == "crlf"


def test_empty_lines_get_no_reply(client):
    data = b"\n\r\n\n" + line({"id": 1, "op": "hello"}) + b"\n\n\r\n" + line({"id": 2, "op": "hello"}) + b"\n"
    replies = client.send_raw(data)
    assert [r["id"] for r in replies] == [1, 2]
    client.expect_nothing(0.3)


def test_server_never_speaks_first(daemon):
    with daemon.client() as c:
        c.expect_nothing(0.3)
        ok(c.call("hello"))


# ------------------------------------------------------------------------------------ pipelining


def test_pipelining_50_requests_in_one_write(client):
    reqs = []
    expected = []
    for i in range(50):
        kind = i % 5
        if kind == 0:
            reqs.append({"id": i, "op": "hello"})
            expected.append(("ok", None))
        elif kind == 1:
            reqs.append({"id": i, "op": "session", "params": {"session": f"bogus-{i}"}})
            expected.append(("error", "invalid_session"))
        elif kind == 2:
            reqs.append({"id": i, "op": f"nope{i}"})
            expected.append(("error", "unknown_op"))
        elif kind == 3:
            reqs.append({"id": i, "op": "logout", "params": {"session": f"bogus-{i}"}})
            expected.append(("ok", None))
        else:
            reqs.append({"id": i})
            expected.append(("error", "invalid_request"))
    data = b"".join(line(r) for r in reqs)
    replies = client.send_raw(data)
    assert [r["id"] for r in replies] == list(range(50))
    for reply, (kind, code) in zip(replies, expected):
        if kind == "ok":
            ok(reply)
        else:
            err(reply, code)
    client.expect_nothing(0.2)


def test_request_split_across_many_small_writes(client):
    data = line({"id": "split-ü", "op": "hello", "params": {}})
    for i in range(len(data)):
        client.sock.sendall(data[i : i + 1])
        time.sleep(0.002)
    reply = client.read_reply()
    ok(reply)
    assert reply["id"] == "split-ü"


def test_two_requests_across_write_boundaries(client):
    data = line({"id": "a", "op": "hello"}) + line({"id": "b", "op": "hello"})
    client.sock.sendall(data[:10])
    time.sleep(0.05)
    client.sock.sendall(data[10:40])
    time.sleep(0.05)
    client.sock.sendall(data[40:])
    assert [client.read_reply()["id"] for _ in range(2)] == ["a", "b"]


def test_many_connections_at_once(daemon):
    conns = []
    try:
        for _ in range(200):
            conns.append(Client(daemon.socket_path))
        for i, c in enumerate(conns):
            c.send(line({"id": i, "op": "hello"}))
        for i, c in enumerate(conns):
            reply = c.read_reply()
            ok(reply)
            assert reply["id"] == i
    finally:
        for c in conns:
            c.close()
    ok(daemon.call("hello"))


def test_client_disconnect_mid_request_is_harmless(daemon):
    with daemon.client() as c:
        c.send(b'{"op":"hel')
    with daemon.client() as c:
        c.send(line({"id": 1, "op": "hello"}))
    # the daemon still serves
    ok(daemon.call("hello"))


# ------------------------------------------------------------------------------------ line limit


LIMIT = 1024


@pytest.fixture(scope="module")
def small_daemon():
    yield from serve_daemon({"MAGICLINKD_MAX_LINE_BYTES": str(LIMIT)})


def padded_hello(total_len: int, rid="pad") -> bytes:
    """A hello request of exactly total_len bytes (line feed not counted)."""
    head = b'{"id":"' + rid.encode() + b'","op":"hello","pad":"'
    tail = b'"}'
    body = head + b"a" * (total_len - len(head) - len(tail)) + tail
    assert len(body) == total_len
    json.loads(body)
    return body


def test_hello_reports_configured_limit(small_daemon):
    assert ok(small_daemon.call("hello"))["max_line_bytes"] == LIMIT


def test_line_of_exactly_the_limit_is_accepted(small_daemon):
    with small_daemon.client() as c:
        reply = c.send_raw(padded_hello(LIMIT) + b"\n")[0]
        ok(reply)
        assert reply["id"] == "pad"
        ok(c.call("hello"))


def test_over_long_line_gets_request_too_large_then_close(small_daemon):
    with small_daemon.client() as c:
        ok(c.call("hello"))
        data = padded_hello(2000) + b"\n" + line({"id": "after", "op": "hello"})
        reply = c.send_raw(data, n=1)[0]
        err(reply, "request_too_large", max_line_bytes=LIMIT)
        assert reply["id"] is None
        c.expect_closed()
    with small_daemon.client() as c:
        ok(c.call("hello"))


def test_line_one_byte_over_the_limit(small_daemon):
    with small_daemon.client() as c:
        reply = c.send_raw(padded_hello(LIMIT + 1) + b"\n", n=1)[0]
        err(reply, "request_too_large")
        assert reply["id"] is None
        c.expect_closed()


def test_over_long_line_without_line_feed_yet(small_daemon):
    # The limit applies as soon as more than max_line_bytes arrive without a line feed.
    with small_daemon.client() as c:
        c.send(b'{"op":"hello","pad":"' + b"a" * 3000)
        reply = c.read_reply()
        err(reply, "request_too_large")
        assert reply["id"] is None
        c.expect_closed()
    ok(small_daemon.call("hello"))


def test_over_long_line_after_pipelined_requests(small_daemon):
    with small_daemon.client() as c:
        data = line({"id": 1, "op": "hello"}) + line({"id": 2, "op": "hello"}) + padded_hello(5000) + b"\n"
        replies = c.send_raw(data, n=3)
        assert [r["id"] for r in replies[:2]] == [1, 2]
        ok(replies[0])
        ok(replies[1])
        err(replies[2], "request_too_large")
        assert replies[2]["id"] is None
        c.expect_closed()
