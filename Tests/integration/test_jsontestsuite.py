"""JSONTestSuite sweep: every parsing case sent as one request line on one long-lived connection.

Framing is by line feed, so a case file's own LF and CR bytes are replaced with spaces before
sending (for JSON, both are just whitespace outside strings; inside a string the raw control
character was invalid anyway, and the replacement cannot turn any case into a valid request:
no case holds an object with a string `op`). Every case is followed, in the same write, by a
sentinel `hello` with a unique id, so "exactly one reply per case" is checked precisely.

None of the cases is a valid request (the top level is not an object, or the object has no
`op`), so every case must get `invalid_request`; `n_` cases (invalid JSON) must get `"id": null`.
The empty case (n_structure_no_data) becomes an empty line, which gets no reply by the framing
rules. Cases longer than max_line_bytes get `request_too_large`, then the daemon closes the
connection and the sweep reconnects.
"""

import json

from conftest import SHARED_DIR, ok

SUITE_DIR = SHARED_DIR / "conformance" / "JSONTestSuite" / "test_parsing"


def load_cases():
    if not SUITE_DIR.is_dir():
        return None
    return sorted(p for p in SUITE_DIR.iterdir() if p.suffix == ".json")


def test_suite_present():
    cases = load_cases()
    assert cases, f"JSONTestSuite not found (or empty) at {SUITE_DIR}"


def test_jsontestsuite_sweep(daemon):
    cases = load_cases()
    assert cases, f"JSONTestSuite not found (or empty) at {SUITE_DIR}"
    max_line = ok(daemon.call("hello"))["max_line_bytes"]

    failures = []
    c = daemon.client()
    reconnects = 0
    try:
        for n, path in enumerate(cases):
            name = path.name
            body = path.read_bytes().replace(b"\n", b" ").replace(b"\r", b" ")
            try:
                if len(body) > max_line:
                    c.send(body + b"\n")
                    reply = c.read_reply()
                    if reply.get("ok") is not False or reply["error"]["code"] != "request_too_large" or reply["id"] is not None:
                        failures.append(f"{name}: expected request_too_large with id null, got {reply!r}")
                    c.expect_closed()
                    c.close()
                    c = daemon.client()
                    reconnects += 1
                    continue

                sentinel = f"sentinel-{n}"
                c.send(body + b"\n" + json.dumps({"id": sentinel, "op": "hello"}).encode() + b"\n")
                replies = []
                while True:
                    reply = c.read_reply()
                    if reply.get("id") == sentinel and reply.get("ok") is True:
                        break
                    replies.append(reply)
                expected_count = 0 if body == b"" else 1
                if len(replies) != expected_count:
                    failures.append(f"{name}: expected {expected_count} reply, got {len(replies)}: {replies!r}")
                    continue
                if not replies:
                    continue
                reply = replies[0]
                if reply.get("ok") is not False or reply["error"]["code"] != "invalid_request":
                    failures.append(f"{name}: expected invalid_request, got {reply!r}")
                elif name.startswith("n_") and reply["id"] is not None:
                    failures.append(f"{name}: invalid JSON must get id null, got {reply!r}")
            except AssertionError as e:  # includes envelope violations and a closed connection
                failures.append(f"{name}: {e}")
                c.close()
                c = daemon.client()
                reconnects += 1
            except OSError as e:
                failures.append(f"{name}: {type(e).__name__}: {e}")
                c.close()
                c = daemon.client()
                reconnects += 1
        # afterwards the connection still works and the daemon is alive
        ok(c.call("hello"))
    finally:
        c.close()

    assert daemon.running, f"daemon died during the sweep; output:\n{daemon.log_tail()}"
    ok(daemon.call("hello"))
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures)
    # 2 cases exceed 65536 bytes; any other reconnect means a case broke the connection
    expected_reconnects = sum(1 for p in cases if p.stat().st_size > max_line)
    assert reconnects == expected_reconnects
