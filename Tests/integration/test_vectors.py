"""Runs every case of Protocol/vectors/*.json against the real daemon (one pytest param per case)
and validates every reply against Protocol/schemas/response.schema.json when it exists."""

import base64
import json
from pathlib import Path

import pytest

from conftest import PROTOCOL_DIR, serve_daemon, parse_reply_line

VECTORS_DIR = PROTOCOL_DIR / "vectors"
SCHEMAS_DIR = PROTOCOL_DIR / "schemas"

CALLBACK_URL = "https://app.example.com/auth/callback"
ALLOWED_ORIGINS = "https://app.example.com"


def vector_files():
    if not VECTORS_DIR.is_dir():
        return []
    return sorted(VECTORS_DIR.glob("*.json"))


def file_cases(path: Path):
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        cases = data.get("cases")
        if cases is None:
            raise ValueError(f"{path.name}: no 'cases' list")
    else:
        cases = data
    if not isinstance(cases, list):
        raise ValueError(f"{path.name}: cases is not a list")
    return cases


def collect():
    params = []
    for path in vector_files():
        try:
            cases = file_cases(path)
        except (ValueError, json.JSONDecodeError) as e:
            params.append(pytest.param(path.name, None, str(e), id=f"{path.name}:UNREADABLE"))
            continue
        seen = {}
        for i, case in enumerate(cases):
            name = str(case.get("name", i)) if isinstance(case, dict) else str(i)
            n = seen.get(name, 0)
            seen[name] = n + 1
            pid = f"{path.name}:{name}" + (f"#{n}" if n else "")
            params.append(pytest.param(path.name, case, None, id=pid))
    return params


PARAMS = collect()


def test_vectors_present():
    assert vector_files(), f"no vector files in {VECTORS_DIR}"
    assert PARAMS, "vector files hold no cases"


# ------------------------------------------------------------------------------------ schema


def load_validator():
    """Validator for response.schema.json with every schema file registered under its $id
    (the files refer to each other with relative $refs)."""
    schema_path = SCHEMAS_DIR / "response.schema.json"
    if not schema_path.is_file():
        return None
    from jsonschema import validators
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    resources = []
    for p in sorted(SCHEMAS_DIR.rglob("*.json")):
        contents = json.loads(p.read_text(encoding="utf-8"))
        resource = Resource.from_contents(contents, default_specification=DRAFT202012)
        uri = contents.get("$id") if isinstance(contents, dict) else None
        resources.append((uri or p.resolve().as_uri(), resource))
    registry = Registry().with_resources(resources)
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    cls.check_schema(schema)
    if "$id" not in schema:
        schema = dict(schema, **{"$id": schema_path.resolve().as_uri()})
    return cls(schema, registry=registry)


@pytest.fixture(scope="module")
def validator():
    return load_validator()


# ------------------------------------------------------------------------------------ matching


def json_equal(a, b) -> bool:
    """JSON equality (vectors/README.md): numbers by value, booleans never equal to numbers,
    strings by code points, arrays element-wise, objects member-wise."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) or isinstance(b, (int, float)):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == b
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(
            json_equal(x, y) for x, y in zip(a, b)
        )
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys() and all(
            json_equal(a[k], b[k]) for k in a
        )
    return type(a) is type(b) and a == b


def subset_match(expected, actual, path="result"):
    """`result` rule: objects match as subsets (recursively); everything else, arrays included,
    must be JSON-equal."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        for k, v in expected.items():
            assert k in actual, f"{path}.{k} missing in {actual!r}"
            subset_match(v, actual[k], f"{path}.{k}")
    else:
        assert json_equal(expected, actual), f"{path}: expected {expected!r}, got {actual!r}"


def request_bytes(case) -> bytes:
    """The request line plus one line feed, nothing added or stripped (vectors/README.md)."""
    if "request_base64" in case:
        data = base64.b64decode(case["request_base64"], validate=True)
    elif "request" in case:
        data = case["request"].encode("utf-8")
    else:
        raise AssertionError(f"case has neither request nor request_base64: {case!r}")
    assert b"\n" not in data, "a vector request must not contain a line feed"
    return data + b"\n"


def check_expectation(expect: dict, reply: dict):
    if "ok" in expect:
        assert reply["ok"] is expect["ok"], f"expected ok={expect['ok']}, got {reply!r}"
    if "id" in expect:
        assert json_equal(expect["id"], reply["id"]), f"expected id {expect['id']!r}, got {reply!r}"
    if "error_code" in expect:
        assert reply["ok"] is False and reply["error"]["code"] == expect["error_code"], (
            f"expected error {expect['error_code']}, got {reply!r}"
        )
    if "retryable" in expect:
        assert reply["ok"] is False and reply["error"]["retryable"] is expect["retryable"], (
            f"expected retryable={expect['retryable']}, got {reply!r}"
        )
    if "details" in expect:
        assert reply["ok"] is False, f"expected an error with details {expect['details']!r}, got {reply!r}"
        details = reply["error"]["details"]
        for k, v in expect["details"].items():
            assert k in details and json_equal(v, details[k]), (
                f"expected error.details.{k}={v!r}, got {reply!r}"
            )
    if "result" in expect:
        assert reply["ok"] is True, f"expected a result, got {reply!r}"
        subset_match(expect["result"], reply["result"], "result")
    if "result_keys" in expect:
        assert reply["ok"] is True, f"expected a result, got {reply!r}"
        missing = [k for k in expect["result_keys"] if k not in reply["result"]]
        assert not missing, f"result lacks {missing}: {reply!r}"


# ------------------------------------------------------------------------------------ run


@pytest.fixture(scope="module")
def vector_daemon():
    yield from serve_daemon({"MAGICLINKD_CALLBACK_URL": CALLBACK_URL, "MAGICLINKD_ALLOWED_REDIRECT_ORIGINS": ALLOWED_ORIGINS})


@pytest.mark.parametrize("file, case, problem", PARAMS)
def test_vector(vector_daemon, validator, file, case, problem):
    assert problem is None, problem
    assert isinstance(case, dict), f"case is not an object: {case!r}"
    expect = case.get("expect")
    assert isinstance(expect, dict), f"case has no expect object: {case!r}"
    data = request_bytes(case)
    with vector_daemon.client() as c:
        c.send(data)
        line = c.read_line()
        reply = parse_reply_line(line)
        if validator is not None:
            errors = sorted(validator.iter_errors(reply), key=lambda e: list(e.path))
            assert not errors, "reply does not match response.schema.json: " + "; ".join(
                f"{list(e.path)}: {e.message}" for e in errors
            ) + f"\nreply: {reply!r}"
        check_expectation(expect, reply)
