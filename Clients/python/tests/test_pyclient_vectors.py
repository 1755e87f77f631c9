"""Every case of every Protocol/vectors/*.json file, against a real daemon, with the matching
rules of Protocol/vectors/README.md.

A case whose line is a valid request envelope (strict JSON object, string ``op``, ``params``
absent or an object, a valid ``id``) goes through ``Client.call``: the same encode → send →
decode → exception path as the per-op methods; the client sends its own ``id``, so the expected
``id`` is not compared there (the client checks its own echo). Every other case (malformed
bytes, ``request_base64``, wrong-typed envelope members) is sent byte for byte through the
client's raw-line method and the whole reply is matched.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import pytest

from mld_support import REPO, Daemon

import magiclinkd

VECTORS = REPO / "Protocol" / "vectors"


def load_cases() -> List[Tuple[str, Dict[str, Any]]]:
    files = sorted(VECTORS.glob("*.json"))
    assert files, f"no vector files in {VECTORS}"
    cases = []
    for path in files:
        doc = json.loads(path.read_text("utf-8"))
        for case in doc["cases"]:
            cases.append((path.name, case))
    return cases


CASES = load_cases()


def request_bytes(case: Mapping[str, Any]) -> bytes:
    if "request" in case:
        return str(case["request"]).encode("utf-8")
    return base64.b64decode(case["request_base64"], validate=True)


# --- the strict envelope check that decides the path -------------------------------------------


def _pairs(items: List[Tuple[str, Any]]) -> Dict[str, Any]:
    names = [k for k, _ in items]
    if len(set(names)) != len(names):
        raise ValueError("duplicate member name")
    return dict(items)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("number beyond the range of a double")
    return value


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            deepest = max(deepest, d)
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            deepest = max(deepest, d)
            stack.extend((x, d + 1) for x in v)
    return deepest


def strict_json(line: bytes) -> Any:
    """RFC 8259 strictly, as Protocol/README.md section 2 says; ValueError otherwise."""
    text = line.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if text.startswith("\ufeff"):
        raise ValueError("byte order mark")
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if _depth(value) > 64:
        raise ValueError("nested too deeply")
    return value


def _valid_id(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) <= 2**53 - 1
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass")) <= 256
    return False


def as_call(line: bytes) -> Optional[Tuple[str, Optional[Dict[str, Any]]]]:
    """(op, params) when the line is a valid request envelope, else None (raw path)."""
    try:
        request = strict_json(line)
    except ValueError:
        return None
    if not isinstance(request, dict) or not isinstance(request.get("op"), str):
        return None
    if "params" in request and not isinstance(request["params"], dict):
        return None
    if not _valid_id(request.get("id")):
        return None
    return request["op"], request.get("params")


# --- matching rules ------------------------------------------------------------------------------


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value, booleans never equal to numbers, strings by code point."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return False


def subset_match(expected: Any, actual: Any) -> bool:
    """``result`` matching: objects as subsets (recursively), everything else exactly."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and subset_match(v, actual[k]) for k, v in expected.items()
        )
    return json_equal(expected, actual)


def check_details(expected: Mapping[str, Any], details: Any) -> None:
    assert isinstance(details, dict), f"error.details is not an object: {details!r}"
    for name, value in expected.items():
        assert name in details and json_equal(details[name], value), (
            f"details.{name}: expected {value!r}, got {details.get(name, '<absent>')!r}"
        )


def check_result(expect: Mapping[str, Any], result: Any) -> None:
    assert isinstance(result, dict), f"result is not an object: {result!r}"
    if "result" in expect:
        assert subset_match(expect["result"], result), f"result {result!r} does not match {expect['result']!r}"
    for name in expect.get("result_keys", []):
        assert name in result, f"result has no member {name!r}: {sorted(result)}"


def check_raw_reply(expect: Mapping[str, Any], reply: Any) -> None:
    assert isinstance(reply, dict), f"reply is not an object: {reply!r}"
    assert json_equal(reply.get("ok"), expect["ok"]), f"ok: expected {expect['ok']!r}, reply {reply!r}"
    if "id" in expect:
        assert "id" in reply and json_equal(reply["id"], expect["id"]), (
            f"id: expected {expect['id']!r}, got {reply.get('id', '<absent>')!r}"
        )
    if expect["ok"]:
        check_result(expect, reply.get("result"))
        return
    error = reply.get("error")
    assert isinstance(error, dict), f"no error object: {reply!r}"
    if "error_code" in expect:
        assert json_equal(error.get("code"), expect["error_code"]), f"error.code {error.get('code')!r}"
    if "retryable" in expect:
        assert json_equal(error.get("retryable"), expect["retryable"]), f"error.retryable {error.get('retryable')!r}"
    if "details" in expect:
        check_details(expect["details"], error.get("details"))


# --- the run ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vectors_daemon() -> Iterator[Daemon]:
    d = Daemon()
    try:
        d.start()
        yield d
        d.stop()
    finally:
        d.cleanup()


@pytest.fixture(scope="module")
def shared_client(vectors_daemon: Daemon) -> Iterator[magiclinkd.Client]:
    # One client (one connection, reused) for all cases, as the vectors allow.
    with magiclinkd.Client(vectors_daemon.socket) as c:
        yield c


@pytest.mark.parametrize("file,case", CASES, ids=[c["name"] for _, c in CASES])
def test_vector(file: str, case: Dict[str, Any], shared_client: magiclinkd.Client) -> None:
    expect = case["expect"]
    line = request_bytes(case)
    envelope = as_call(line)
    if envelope is None:
        reply = json.loads(shared_client._call_raw(line))
        check_raw_reply(expect, reply)
        return
    op, params = envelope
    if expect["ok"]:
        result = shared_client.call(op, params)
        check_result(expect, result)
        return
    with pytest.raises(magiclinkd.ServerError) as caught:
        shared_client.call(op, params)
    error = caught.value
    code = expect.get("error_code")
    if code is not None:
        assert error.code == code, f"error code {error.code!r}, expected {code!r}"
        expected_class = magiclinkd.ERROR_CLASSES.get(code, magiclinkd.ServerError)
        assert type(error) is expected_class, f"{type(error).__name__} raised for {code}"
    if "retryable" in expect:
        assert error.retryable is expect["retryable"]
    if "details" in expect:
        check_details(expect["details"], error.details)


def test_vector_files_are_all_run_and_both_paths_are_used() -> None:
    names = [c["name"] for _, c in CASES]
    assert len(names) == len(set(names)), "vector names must be unique"
    files = {f for f, _ in CASES}
    assert files == {p.name for p in VECTORS.glob("*.json")}
    assert {"envelope.json", "start.json", "callback.json", "session.json", "admin.json"} <= files
    via_call = [c["name"] for _, c in CASES if as_call(request_bytes(c)) is not None]
    via_raw = [c["name"] for _, c in CASES if as_call(request_bytes(c)) is None]
    assert len(via_call) > 100 and len(via_raw) > 40, (len(via_call), len(via_raw))
    # Spot checks of the classification.
    assert "envelope-duplicate-op" in via_raw and "envelope-bom-prefixed" in via_raw
    assert "envelope-invalid-id-float" in via_raw and "envelope-params-null" in via_raw
    assert "envelope-nesting-65-levels-refused" in via_raw and "envelope-malformed-nan" in via_raw
    assert "envelope-nesting-64-levels-accepted" in via_call and "callback-unknown-token-nul" in via_call


def test_json_equality_is_strict_about_types() -> None:
    assert json_equal(1, 1.0) and not json_equal(1, True) and not json_equal(0, False)
    assert not json_equal("1", 1) and json_equal(None, None) and not json_equal(None, {})
    assert subset_match({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}, "d": 3})
    assert not subset_match({"a": [1]}, {"a": [1, 2]})
