"""Self-checks of the protocol's machine-readable half: Protocol/schemas and Protocol/vectors.

Needs only python3, pytest, jsonschema 4.x and referencing; no daemon. Run from the repo root:

    python3 -m pytest -q Tests/integration/test_schemas.py
"""

import base64
import binascii
import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "Protocol" / "schemas"
VECTORS = ROOT / "Protocol" / "vectors"
BASE = "https://magiclinkd.invalid/protocol/v1/"
APP_OPS = ["hello", "start", "callback", "verify_code", "peek", "session", "logout", "logout_all"]
ADMIN_OPS = ["admin_status", "admin_sessions", "admin_revoke", "admin_dead_letters", "admin_retry", "admin_purge",
             "admin_create_user"]
OPS = APP_OPS + ADMIN_OPS
ERROR_CODES = [
    "invalid_request", "unknown_op", "request_too_large", "invalid_email", "redirect_not_allowed",
    "rate_limited", "invalid_token", "invalid_session", "invalid_code", "confirmation_required", "flow_mismatch",
    "permission_denied", "unavailable", "internal_error",
]
EXPECT_MEMBERS = {"ok", "id", "error_code", "retryable", "details", "result", "result_keys"}
NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
FORMATS = Draft202012Validator.FORMAT_CHECKER


# ---------------------------------------------------------------- loading

def _schema_files():
    return sorted(p for p in SCHEMAS.rglob("*.json"))


def _load_schemas():
    schemas = {}
    for path in _schema_files():
        with path.open(encoding="utf-8") as f:
            schemas[path.relative_to(SCHEMAS).as_posix()] = json.load(f)
    return schemas


SCHEMA_DOCS = _load_schemas()
REGISTRY = Registry().with_resources(
    (doc["$id"], Resource.from_contents(doc, default_specification=DRAFT202012))
    for doc in SCHEMA_DOCS.values()
)


def validator(relpath, formats=False):
    kwargs = {"registry": REGISTRY}
    if formats:
        kwargs["format_checker"] = FORMATS
    return Draft202012Validator(SCHEMA_DOCS[relpath], **kwargs)


def _vector_files():
    return sorted(VECTORS.glob("*.json"))


def _load_vectors():
    out = {}
    for path in _vector_files():
        with path.open(encoding="utf-8") as f:
            out[path.name] = json.load(f)
    return out


VECTOR_DOCS = _load_vectors()
ALL_CASES = [(fname, case) for fname, doc in VECTOR_DOCS.items() for case in doc.get("cases", [])]


def request_bytes(case):
    if "request" in case:
        return case["request"].encode("utf-8")
    return base64.b64decode(case["request_base64"], validate=True)


def _reject_duplicates(pairs):
    names = [k for k, _ in pairs]
    if len(names) != len(set(names)):
        raise ValueError("duplicate member name")
    return dict(pairs)


def _reject_constant(name):
    raise ValueError(f"non-JSON constant {name}")


def strict_parse(raw):
    """Parse a line roughly as strictly as the protocol asks; raise ValueError if it is not acceptable."""
    text = raw.decode("utf-8")  # raises UnicodeDecodeError (a ValueError) on invalid UTF-8
    if text.endswith("\r"):
        text = text[:-1]
    if text.startswith("\ufeff"):
        raise ValueError("byte order mark")
    return json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)


def depth(value):
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


# ---------------------------------------------------------------- schemas

def test_expected_schema_files_exist():
    expected = {"request.schema.json", "response.schema.json", "error.schema.json"}
    for op in OPS:
        expected |= {f"ops/{op}.params.schema.json", f"ops/{op}.result.schema.json"}
    assert expected <= set(SCHEMA_DOCS)


@pytest.mark.parametrize("relpath", sorted(SCHEMA_DOCS))
def test_schema_is_valid_draft_2020_12(relpath):
    doc = SCHEMA_DOCS[relpath]
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"] == BASE + relpath


@pytest.mark.parametrize("relpath", sorted(SCHEMA_DOCS))
def test_schema_refs_resolve(relpath):
    """Every $ref in every schema resolves offline through the registry."""
    doc = SCHEMA_DOCS[relpath]
    resolver = REGISTRY.resolver(base_uri=doc["$id"])

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                resolver.lookup(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)


def test_params_schemas_allow_unknown_members():
    for op in OPS:
        doc = SCHEMA_DOCS[f"ops/{op}.params.schema.json"]
        assert doc.get("additionalProperties", True) is not False
        assert "unevaluatedProperties" not in doc


def test_error_code_is_not_an_enum():
    code = SCHEMA_DOCS["error.schema.json"]["properties"]["code"]
    assert "enum" not in code and "const" not in code
    assert set(code["examples"]) == set(ERROR_CODES)


# ---------------------------------------------------------------- vectors: format

def test_vector_files_exist():
    assert set(VECTOR_DOCS) == {f"{name}.json" for name in ["envelope"] + APP_OPS + ["admin"]}


@pytest.mark.parametrize("fname", sorted(VECTOR_DOCS))
def test_vector_file_shape(fname):
    doc = VECTOR_DOCS[fname]
    assert set(doc) == {"description", "cases"}
    assert isinstance(doc["description"], str) and doc["description"].strip()
    assert isinstance(doc["cases"], list) and doc["cases"]


def test_vector_names_unique_across_files():
    seen = {}
    for fname, case in ALL_CASES:
        name = case.get("name")
        assert name not in seen, f"{name} in {fname} and {seen.get(name)}"
        seen[name] = fname


@pytest.mark.parametrize("fname,case", ALL_CASES, ids=[c.get("name", "?") for _, c in ALL_CASES])
def test_vector_case_format(fname, case):
    assert set(case) in ({"name", "request", "expect"}, {"name", "request_base64", "expect"}), sorted(case)
    assert isinstance(case["name"], str) and NAME_RE.match(case["name"])
    prefix = fname[: -len(".json")].replace("_", "-") + "-"
    assert case["name"].startswith(prefix)

    if "request" in case:
        assert isinstance(case["request"], str)
        assert "\n" not in case["request"]
        case["request"].encode("utf-8")  # no lone surrogates
    else:
        assert isinstance(case["request_base64"], str)
        try:
            raw = base64.b64decode(case["request_base64"], validate=True)
        except binascii.Error as e:
            pytest.fail(f"bad base64: {e}")
        assert b"\n" not in raw
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")  # base64 is only for bytes that are not UTF-8

    expect = case["expect"]
    assert isinstance(expect, dict)
    assert set(expect) <= EXPECT_MEMBERS, sorted(set(expect) - EXPECT_MEMBERS)
    assert isinstance(expect.get("ok"), bool)
    if "id" in expect:
        idv = expect["id"]
        assert idv is None or isinstance(idv, str) or (isinstance(idv, int) and not isinstance(idv, bool))
    if "error_code" in expect:
        assert isinstance(expect["error_code"], str)
    if "retryable" in expect:
        assert isinstance(expect["retryable"], bool)
    if "details" in expect:
        assert isinstance(expect["details"], dict)
    if "result" in expect:
        assert isinstance(expect["result"], dict)
    if "result_keys" in expect:
        keys = expect["result_keys"]
        assert isinstance(keys, list) and all(isinstance(k, str) for k in keys)
        assert len(keys) == len(set(keys))
    if expect["ok"]:
        assert not {"error_code", "retryable", "details"} & set(expect)
    else:
        assert not {"result", "result_keys"} & set(expect)
        assert "error_code" in expect
        if expect["error_code"] in ERROR_CODES:
            assert expect.get("retryable", expect["error_code"] in ("rate_limited", "unavailable")) == (
                expect["error_code"] in ("rate_limited", "unavailable"))


# ---------------------------------------------------------------- vectors: content

OK_CASES = [(f, c) for f, c in ALL_CASES if c["expect"]["ok"]]


@pytest.mark.parametrize("fname,case", OK_CASES, ids=[c["name"] for _, c in OK_CASES])
def test_successful_vector_request_matches_request_schema(fname, case):
    """A request the daemon accepts is strict JSON and valid under request.schema.json."""
    request = strict_parse(request_bytes(case))
    assert depth(request) <= 64
    errors = sorted(validator("request.schema.json", formats=True).iter_errors(request), key=str)
    assert not errors, [e.message for e in errors]
    assert request["op"] in OPS
    assert fname in ("envelope.json", "admin.json" if request["op"] in ADMIN_OPS else f"{request['op']}.json")


def test_expected_results_match_result_schemas():
    """Where a case gives a whole-enough result, it agrees with the op's result schema types."""
    for fname, case in OK_CASES:
        op = strict_parse(request_bytes(case))["op"]
        props = SCHEMA_DOCS[f"ops/{op}.result.schema.json"].get("properties", {})
        for key in case["expect"].get("result", {}):
            assert key in props, (case["name"], key)
        for key in case["expect"].get("result_keys", []):
            assert key in props, (case["name"], key)
        required = SCHEMA_DOCS[f"ops/{op}.result.schema.json"].get("required", [])
        if "result_keys" in case["expect"]:
            assert set(required) <= set(case["expect"]["result_keys"]) | set(case["expect"].get("result", {})), case["name"]


def test_hello_vectors_state_the_section_4_result():
    for case in VECTOR_DOCS["hello.json"]["cases"]:
        assert case["expect"]["result"] == {"server": "magiclinkd", "protocol": 1, "ops": OPS, "max_line_bytes": 65536}


def _start_params(case):
    try:
        request = strict_parse(request_bytes(case))
    except (ValueError, RecursionError):
        return None
    if not isinstance(request, dict) or request.get("op") != "start" or not isinstance(request.get("params"), dict):
        return None
    return request["params"]


def test_start_addresses_stay_under_rate_limits():
    """Vectors are stateless: no address in more than 4 start cases, under 50 accepted starts per ip bucket."""
    per_address = {}
    per_ip = {}
    for _, case in ALL_CASES:
        params = _start_params(case)
        if params is None or not isinstance(params.get("email"), str):
            continue
        email = params["email"]
        local, _, domain = email.rpartition("@")
        try:
            domain = domain.lower().encode("idna").decode("ascii")
        except UnicodeError:
            domain = domain.lower()
        key = (local.lower() + "@" + domain) if local else email.lower()
        per_address[key] = per_address.get(key, 0) + 1
        if case["expect"]["ok"]:
            ip = params.get("ip")
            per_ip[ip] = per_ip.get(ip, 0) + 1
    crowded = {k: n for k, n in per_address.items() if n > 4}
    assert not crowded
    assert all(n < 50 for n in per_ip.values()), per_ip


def test_invalid_request_vectors_name_a_field_or_reply_null_id():
    """invalid_request with a non-null id is always about one member, which details.field names."""
    for _, case in ALL_CASES:
        expect = case["expect"]
        if expect.get("error_code") == "invalid_request" and expect.get("id") is not None:
            assert "field" in expect.get("details", {}), case["name"]
        if expect.get("details", {}).get("field") == "id":
            assert expect["id"] is None, case["name"]


def _line_is_acceptable(case):
    try:
        request = strict_parse(request_bytes(case))
    except (ValueError, RecursionError):
        return False
    return isinstance(request, dict) and depth(request) <= 64


def test_line_level_failures_are_exactly_the_unparseable_lines():
    """A case expects invalid_request without details (a line-level failure, id null) exactly when
    its line is not strict UTF-8 JSON, not an object, or nested deeper than 64 levels."""
    for _, case in ALL_CASES:
        expect = case["expect"]
        line_level = expect.get("error_code") == "invalid_request" and "details" not in expect
        assert _line_is_acceptable(case) != line_level, case["name"]
        if line_level:
            assert expect.get("id", None) is None, case["name"]


# ---------------------------------------------------------------- example replies

UUID = "5b0b7c1e-3f0a-4d5e-9a1b-2c3d4e5f6a7b"
SESSION = "Qm9uam91ciwgY2VjaSBlc3QgdW5lIHNlc3Npb24gaWQ"
USER = {"id": UUID, "email": "Alice@example.com"}
assert len(SESSION) == 43

GOOD_RESULTS = {
    "hello": {"server": "magiclinkd", "version": "0.1.0", "protocol": 1, "ops": OPS, "max_line_bytes": 65536, "apps": ["default"]},
    "start": {"expires_at": 1764170000, "flow": "Zmxvdy1zZWNyZXQtZm9yLXRoZS1icm93c2VyLXRoYXQ"},
    "callback": {"session": SESSION, "expires_at": 1766762000, "idle_expires_at": 1764774800, "user": USER,
                 "redirect": "/account"},
    "verify_code": {"session": SESSION, "expires_at": 1766762000, "idle_expires_at": 1764774800, "user": USER,
                    "redirect": "/account"},
    "peek": {"valid": True, "flow_matches": True, "email_masked": "a***@example.com", "expires_at": 1764170000},
    "session": {"user": USER, "expires_at": 1766762000, "idle_expires_at": 1764774800},
    "logout": {},
    "logout_all": {"revoked": 2},
    "admin_status": {"version": "0.1.0", "started_at": 1764100000, "uptime_s": 70000, "users": 42, "live_sessions": 57,
                     "mail": {"queued": 0, "sending": 1, "sent": 311, "failed": 1, "expired": 2},
                     "links": {"peeked_never_used": 3, "peeked_then_used": 40},
                     "session_cache": {"capacity": 100000, "entries": 57, "hits": 91234, "misses": 310}},
    "admin_sessions": {"sessions": [
        {"handle": "3f9a0c2be41d7765", "user_id": UUID, "email": "Alice@example.com", "created_at": 1764100000,
         "expires_at": 1766692000, "idle_expires_at": 1764704800, "ip": "192.0.2.10", "user_agent": "Mozilla/5.0"},
        {"handle": "0123456789abcdef", "user_id": UUID, "email": "Alice@example.com", "created_at": 1764000000,
         "expires_at": 1766592000, "idle_expires_at": 1764604800},
    ]},
    "admin_revoke": {"revoked": 1},
    "admin_dead_letters": {"messages": [
        {"message_id": "9c1e0f5a2b3c4d5e6f708192a3b4c5d6@localhost", "recipient": "alice@example.com", "state": "failed",
         "attempts": 3, "created_at": 1764100000, "expires_at": 1764100600, "finished_at": 1764100042,
         "last_error": "550 5.1.1 mailbox unavailable"},
        {"message_id": "0c1e0f5a2b3c4d5e6f708192a3b4c5d6@localhost", "recipient": "bob@example.com", "state": "expired",
         "attempts": 0, "created_at": 1764000000, "expires_at": 1764000600, "finished_at": 1764000601},
    ]},
    "admin_retry": {"retried": False, "reason": "link_expired"},
    "admin_purge": {"removed": 12},
    "admin_create_user": {"user": USER, "created": True},
}

GOOD_ERRORS = {
    "invalid_request": {"retryable": False, "details": {"field": "params.email"}},
    "unknown_op": {"retryable": False, "details": {"op": "frobnicate"}},
    "request_too_large": {"retryable": False, "details": {"max_line_bytes": 65536}},
    "invalid_email": {"retryable": False, "details": {}},
    "redirect_not_allowed": {"retryable": False, "details": {}},
    "rate_limited": {"retryable": True, "details": {"retry_after_s": 42}},
    "invalid_token": {"retryable": False, "details": {"reason": "expired"}},
    "invalid_session": {"retryable": False, "details": {}},
    "invalid_code": {"retryable": False, "details": {"attempts_left": 2}},
    "confirmation_required": {"retryable": False, "details": {"email_masked": "a***@example.com", "requested_at": 1764169400}},
    "flow_mismatch": {"retryable": False, "details": {}},
    "permission_denied": {"retryable": False, "details": {}},
    "unavailable": {"retryable": True, "details": {}},
    "internal_error": {"retryable": False, "details": {}},
}


def success(result, id=7):
    return {"id": id, "ok": True, "result": result}


def failure(code, retryable, details, id=7):
    return {"id": id, "ok": False, "error": {"code": code, "message": "Something went wrong.", "retryable": retryable,
                                             "details": details}}


@pytest.mark.parametrize("op", OPS)
def test_success_reply_validates(op):
    result = GOOD_RESULTS[op]
    validator("response.schema.json", formats=True).validate(success(result))
    validator(f"ops/{op}.result.schema.json", formats=True).validate(result)


@pytest.mark.parametrize("code", ERROR_CODES)
def test_error_reply_validates(code):
    good = GOOD_ERRORS[code]
    validator("response.schema.json").validate(failure(code, good["retryable"], good["details"]))


@pytest.mark.parametrize("reply", [
    success({}, id=None),
    success({}, id="req-1"),
    success({}, id=""),
    success({}, id=0),
    success({}, id=-9007199254740991),
    success({}, id=9007199254740991),
    failure("invalid_request", False, {}, id=None),
    failure("invalid_request", False, {"field": "id"}, id=None),
    failure("invalid_token", False, {"reason": "unknown"}),
    failure("invalid_token", False, {"reason": "used"}),
    failure("rate_limited", True, {"retry_after_s": 1}),
    failure("rate_limited", True, {"retry_after_s": 900, "limit": "email"}),
    failure("some_future_code", False, {}),
    failure("some_future_code", True, {"anything": [1, 2]}),
    success({"revoked": 0}),
], ids=lambda r: json.dumps(r, separators=(",", ":"))[:80])
def test_other_good_replies_validate(reply):
    validator("response.schema.json").validate(reply)


BAD_REPLIES = {
    "rate-limited-without-retry-after": failure("rate_limited", True, {}),
    "rate-limited-retry-after-zero": failure("rate_limited", True, {"retry_after_s": 0}),
    "rate-limited-retry-after-float": failure("rate_limited", True, {"retry_after_s": 1.5}),
    "rate-limited-not-retryable": failure("rate_limited", False, {"retry_after_s": 5}),
    "invalid-token-reason-bogus": failure("invalid_token", False, {"reason": "bogus"}),
    "invalid-token-without-reason": failure("invalid_token", False, {}),
    "unavailable-not-retryable": failure("unavailable", False, {}),
    "invalid-request-retryable": failure("invalid_request", True, {}),
    "invalid-request-field-not-string": failure("invalid_request", False, {"field": 1}),
    "unknown-op-without-op": failure("unknown_op", False, {}),
    "request-too-large-without-limit": failure("request_too_large", False, {}),
    "callback-session-10-chars": success({**GOOD_RESULTS["callback"], "session": "abcdefghij"}),
    "callback-session-44-chars": success({**GOOD_RESULTS["callback"], "session": SESSION + "A"}),
    "callback-session-padded": success({**GOOD_RESULTS["callback"], "session": SESSION[:42] + "="}),
    "session-time-as-string": success({**GOOD_RESULTS["session"], "expires_at": "1766762000"}),
    "session-time-fractional": success({**GOOD_RESULTS["session"], "idle_expires_at": 1764774800.5}),
    "session-user-without-id": success({**GOOD_RESULTS["session"], "user": {"email": "a@example.com"}}),
    "logout-all-revoked-negative": success({"revoked": -1}),
    "error-without-details": {"id": 1, "ok": False, "error": {"code": "invalid_session", "message": "x", "retryable": False}},
    "error-details-null": failure("invalid_session", False, None),
    "error-code-not-string": failure(17, False, {}),
    "error-retryable-not-bool": failure("invalid_session", "no", {}),
    "ok-true-with-error": {"id": 1, "ok": True, "error": failure("invalid_session", False, {})["error"]},
    "ok-false-with-result": {"id": 1, "ok": False, "result": {}},
    "both-result-and-error": {**success({}), "error": failure("invalid_session", False, {})["error"]},
    "missing-id": {"ok": True, "result": {}},
    "missing-ok": {"id": 1, "result": {}},
    "id-bool": success({}, id=True),
    "id-float": success({}, id=1.5),
    "id-object": success({}, id={"n": 1}),
    "id-too-large": success({}, id=9007199254740992),
    "id-string-257": success({}, id="x" * 257),
    "result-not-object": success([]),
    "invalid-code-without-attempts-left": failure("invalid_code", False, {}),
    "invalid-code-attempts-left-negative": failure("invalid_code", False, {"attempts_left": -1}),
    "invalid-code-retryable": failure("invalid_code", True, {"attempts_left": 1}),
    "confirmation-required-without-email": failure("confirmation_required", False, {"requested_at": 1764169400}),
    "confirmation-required-without-requested-at": failure("confirmation_required", False, {"email_masked": "a***@example.com"}),
    "confirmation-required-requested-at-string": failure("confirmation_required", False, {"email_masked": "a", "requested_at": "1"}),
    "flow-mismatch-retryable": failure("flow_mismatch", True, {}),
    "start-flow-short": success({"expires_at": 1, "flow": "abc"}),
    "peek-valid-not-bool": success({"valid": "yes", "flow_matches": False}),
    "peek-reason-bogus": success({"valid": False, "flow_matches": False, "reason": "bogus"}),
    "admin-status-links-negative": success({**GOOD_RESULTS["admin_status"], "links": {"peeked_never_used": -1, "peeked_then_used": 0}}),
}

BAD_OP_RESULTS = {
    "start-without-flow": ("start", {"expires_at": 1764170000}),
    "start-flow-padded": ("start", {"expires_at": 1764170000, "flow": "Zmxvdy1zZWNyZXQtZm9yLXRoZS1icm93c2VyLXRoYX="}),
    "verify-code-without-session": ("verify_code", {k: v for k, v in GOOD_RESULTS["callback"].items() if k != "session"}),
    "peek-without-flow-matches": ("peek", {"valid": False, "reason": "unknown"}),
    "peek-invalid-without-reason": ("peek", {"valid": False, "flow_matches": False}),
    "peek-valid-with-reason": ("peek", {"valid": True, "reason": "used", "flow_matches": True, "email_masked": "a***@example.com", "expires_at": 1}),
    "peek-unknown-with-email": ("peek", {"valid": False, "reason": "unknown", "flow_matches": False, "email_masked": "a***@example.com", "expires_at": 1}),
    "peek-used-without-email": ("peek", {"valid": False, "reason": "used", "flow_matches": False}),
    "peek-email-without-expires-at": ("peek", {"valid": False, "reason": "expired", "flow_matches": False, "email_masked": "a***@example.com"}),
    "peek-valid-without-email": ("peek", {"valid": True, "flow_matches": True}),
    "admin-status-without-links": ("admin_status", {k: v for k, v in GOOD_RESULTS["admin_status"].items() if k != "links"}),
    "admin-status-links-missing-member": ("admin_status", {**GOOD_RESULTS["admin_status"], "links": {"peeked_never_used": 0}}),
}


@pytest.mark.parametrize("name", sorted(BAD_OP_RESULTS))
def test_bad_op_result_is_rejected(name):
    op, result = BAD_OP_RESULTS[name]
    with pytest.raises(ValidationError):
        validator(f"ops/{op}.result.schema.json").validate(result)


@pytest.mark.parametrize("result", [
    {"valid": False, "reason": "unknown", "flow_matches": False},
    {"valid": False, "reason": "used", "flow_matches": False, "email_masked": "a***@example.com", "expires_at": 1764170000},
    {"valid": False, "reason": "expired", "flow_matches": True, "email_masked": "a***@example.com", "expires_at": 1764170000},
    {"valid": True, "flow_matches": False, "email_masked": "a***@example.com", "expires_at": 1764170000, "future": 1},
], ids=lambda r: json.dumps(r, separators=(",", ":"))[:80])
def test_good_peek_results_validate(result):
    validator("ops/peek.result.schema.json").validate(result)
    validator("response.schema.json").validate(success(result))


@pytest.mark.parametrize("name", sorted(BAD_REPLIES))
def test_bad_reply_is_rejected(name):
    with pytest.raises(ValidationError):
        validator("response.schema.json").validate(BAD_REPLIES[name])


def test_callback_result_schema_rejects_short_session():
    bad = {**GOOD_RESULTS["callback"], "session": "abcdefghij"}
    with pytest.raises(ValidationError):
        validator("ops/callback.result.schema.json").validate(bad)


# ---------------------------------------------------------------- example requests

@pytest.mark.parametrize("request_obj", [
    {"op": "hello"},
    {"id": None, "op": "hello"},
    {"id": 1, "op": "hello", "params": {"x": 1}, "extra": True},
    {"id": "a", "op": "start", "params": {"email": "a@example.com", "redirect": "/", "ip": "2001:db8::1",
                                          "user_agent": "u" * 5000, "future": 1}},
    {"op": "callback", "params": {"token": ""}},
    {"op": "callback", "params": {"token": "t", "flow": "not-a-flow", "confirm": True}},
    {"op": "start", "params": {"email": "a@example.com", "send": "both"}},
    {"op": "verify_code", "params": {"flow": "x", "code": "123456"}},
    {"op": "verify_code", "params": {"flow": "x", "code": "12-34 56"}},
    {"op": "peek", "params": {"token": ""}},
    {"op": "peek", "params": {"token": "t", "flow": "f"}},
    {"op": "session", "params": {"session": "not-a-session"}},
    {"op": "logout", "params": {"session": "x"}},
    {"op": "logout_all", "params": {"user_id": "nobody"}},
    {"op": "some_future_op", "params": {"anything": 1}},
], ids=lambda r: json.dumps(r, separators=(",", ":"))[:80])
def test_good_requests_validate(request_obj):
    validator("request.schema.json", formats=True).validate(request_obj)


@pytest.mark.parametrize("request_obj", [
    {"id": 1},
    {"op": 1},
    {"op": "hello", "params": []},
    {"op": "hello", "params": None},
    {"id": True, "op": "hello"},
    {"id": 1.5, "op": "hello"},
    {"id": 9007199254740992, "op": "hello"},
    {"id": "x" * 257, "op": "hello"},
    {"op": "start"},
    {"op": "start", "params": {}},
    {"op": "start", "params": {"email": 1}},
    {"op": "start", "params": {"email": "a@example.com", "redirect": 1}},
    {"op": "start", "params": {"email": "a@example.com", "redirect": "/" + "a" * 2048}},
    {"op": "start", "params": {"email": "a@example.com", "ip": "not-an-ip"}},
    {"op": "start", "params": {"email": "a@example.com", "user_agent": 5}},
    {"op": "callback", "params": {}},
    {"op": "callback", "params": {"token": 1}},
    {"op": "callback", "params": {"token": "t", "flow": 1}},
    {"op": "callback", "params": {"token": "t", "confirm": "true"}},
    {"op": "start", "params": {"email": "a@example.com", "send": "sms"}},
    {"op": "start", "params": {"email": "a@example.com", "send": "CODE"}},
    {"op": "verify_code", "params": {"flow": "x"}},
    {"op": "verify_code", "params": {"code": "123456"}},
    {"op": "verify_code"},
    {"op": "verify_code", "params": {"flow": "x", "code": "12345"}},
    {"op": "verify_code", "params": {"flow": "x", "code": "1234567"}},
    {"op": "verify_code", "params": {"flow": "x", "code": "abcdef"}},
    {"op": "verify_code", "params": {"flow": "x", "code": "\uff11\uff12\uff13\uff14\uff15\uff16"}},
    {"op": "verify_code", "params": {"flow": "x", "code": 123456}},
    {"op": "peek", "params": {}},
    {"op": "peek"},
    {"op": "peek", "params": {"token": "t", "flow": 1}},
    {"op": "session"},
    {"op": "logout", "params": {"session": None}},
    {"op": "logout_all", "params": {"user_id": 7}},
    [],
], ids=lambda r: json.dumps(r, separators=(",", ":"))[:80])
def test_bad_requests_are_rejected(request_obj):
    with pytest.raises(ValidationError):
        validator("request.schema.json", formats=True).validate(request_obj)
