"""Shared helpers for the magiclinkd socket-level integration tests.

The tests drive the real, already built binary (``MAGICLINKD_BIN`` or
``<repo>/.build/debug/magiclinkd``) over its real Unix socket, with a real SQLite
file and the real Maildir outbox. Nothing here builds Swift.

Helpers (importable from test modules with ``from conftest import ...``):

- ``Daemon``: one daemon instance in its own temp dir; ``start``/``stop``/``kill``/``restart``.
- ``Client``: one connection; ``call(op, params, id=...)`` and ``send_raw(bytes)``.
- ``Outbox``: the Maildir reader; ``Daemon.wait_for_mail(to)`` -> ``(message, token)``.
- ``ok(reply)`` / ``err(reply, code, **details)``: reply assertions.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PROTOCOL_DIR = REPO / "Protocol"
SHARED_DIR = REPO.parent / "shared"

READ_TIMEOUT = 5.0  # every socket read in this suite is bounded by this
READY_TIMEOUT = 15.0
READY_POLL = 0.02
STOP_TIMEOUT = 10.0
MAIL_TIMEOUT = 10.0

TOKEN_RE = re.compile(r"[?&]token=([A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])")
B64URL43_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")

ERROR_RETRYABLE = {
    "invalid_request": False,
    "unknown_op": False,
    "request_too_large": False,
    "invalid_email": False,
    "redirect_not_allowed": False,
    "rate_limited": True,
    "invalid_token": False,
    "invalid_session": False,
    "unavailable": True,
    "internal_error": False,
    "permission_denied": False,
    "invalid_code": False,
    "confirmation_required": False,
    "flow_mismatch": False,
}

ALL_OPS = [
    "hello", "start", "callback", "verify_code", "peek", "session", "logout", "logout_all",
    "admin_status", "admin_sessions", "admin_revoke", "admin_dead_letters", "admin_retry", "admin_purge",
    "admin_create_user",
]

DEFAULT_CALLBACK_URL = "https://app.example.com/auth/callback"
DEFAULT_ALLOWED_ORIGINS = "https://app.example.com"


# --------------------------------------------------------------------------------------------
# pytest plumbing: binary discovery and a per-test watchdog that needs no plugin
# --------------------------------------------------------------------------------------------


def binary_path() -> Path:
    env = os.environ.get("MAGICLINKD_BIN")
    return Path(env) if env else REPO / ".build" / "debug" / "magiclinkd"


def pytest_addoption(parser):
    parser.addini(
        "test_timeout",
        "seconds after which one test phase (setup, call, teardown) is aborted (SIGALRM)",
        default="90",
    )


class PhaseTimeout(Exception):
    pass


def _arm(item, phase):
    seconds = float(item.config.getini("test_timeout") or 0)
    if seconds <= 0 or not hasattr(signal, "SIGALRM"):
        return None

    def on_alarm(signum, frame):
        raise PhaseTimeout(f"{phase} of {item.nodeid} took longer than {seconds:g} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    return old


def _disarm(old):
    if old is None:
        return
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    old = _arm(item, "setup")
    try:
        yield
    finally:
        _disarm(old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    old = _arm(item, "call")
    try:
        yield
    finally:
        _disarm(old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    old = _arm(item, "teardown")
    try:
        yield
    finally:
        _disarm(old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, attach the tail of every involved daemon's output to the report."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    daemons = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, Daemon):
            daemons.append(value)
        daemons.extend(getattr(value, "made", []))
    for i, d in enumerate(daemons):
        report.sections.append((f"magiclinkd output #{i} ({d.dir})", d.log_tail(6000)))


def require_binary() -> Path:
    """Ends the whole session (not a skip) when the binary is missing. Called lazily by every
    helper that runs it, so tests that need no daemon (test_schemas.py) still run."""
    path = binary_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.exit(
            f"magiclinkd binary not found or not executable at {path}. Build it first "
            "(swift build) or point MAGICLINKD_BIN at it.",
            returncode=3,
        )
    return path


# --------------------------------------------------------------------------------------------
# JSON and reply helpers
# --------------------------------------------------------------------------------------------


def _no_duplicates(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError(f"duplicate member {k!r} in a reply")
        obj[k] = v
    return obj


def _no_constants(name):
    raise ValueError(f"non-JSON constant {name} in a reply")


def parse_reply_line(line: bytes) -> dict:
    """Parse one reply line strictly (valid UTF-8, strict JSON, object, no duplicates)."""
    text = line.decode("utf-8")
    reply = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    assert_envelope(reply)
    return reply


def assert_envelope(reply) -> None:
    """Invariants of section 3 that hold for every reply."""
    assert isinstance(reply, dict), f"reply is not an object: {reply!r}"
    assert "id" in reply, f"reply without id: {reply!r}"
    rid = reply["id"]
    assert rid is None or isinstance(rid, str) or (isinstance(rid, int) and not isinstance(rid, bool)), (
        f"reply id has a bad type: {reply!r}"
    )
    assert isinstance(reply.get("ok"), bool), f"reply without boolean ok: {reply!r}"
    if reply["ok"]:
        assert isinstance(reply.get("result"), dict), f"success without result object: {reply!r}"
        assert "error" not in reply, f"success with an error member: {reply!r}"
    else:
        error = reply.get("error")
        assert isinstance(error, dict), f"failure without error object: {reply!r}"
        assert "result" not in reply, f"failure with a result member: {reply!r}"
        code = error.get("code")
        assert code in ERROR_RETRYABLE, f"unknown error code {code!r}: {reply!r}"
        assert isinstance(error.get("message"), str) and error["message"], f"error without message: {reply!r}"
        assert error.get("retryable") is ERROR_RETRYABLE[code], (
            f"error {code} must have retryable={ERROR_RETRYABLE[code]}: {reply!r}"
        )
        assert isinstance(error.get("details"), dict), f"error.details must be an object: {reply!r}"


def ok(reply: dict) -> dict:
    assert reply.get("ok") is True, f"expected success, got {reply!r}"
    return reply["result"]


def err(reply: dict, code: str, **details) -> dict:
    assert reply.get("ok") is False, f"expected error {code}, got {reply!r}"
    error = reply["error"]
    assert error["code"] == code, f"expected error {code}, got {reply!r}"
    for key, value in details.items():
        assert error["details"].get(key) == value, f"expected details.{key}={value!r}, got {reply!r}"
    return error


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def unique_email(tag: str = "u", domain: str = "example.com") -> str:
    return f"{tag}-{uuid.uuid4().hex[:16]}@{domain}"


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------

AUTO = object()  # call(): pick a fresh integer id and check it is echoed
ABSENT = object()  # call(): send no id member at all


class ConnectionClosed(AssertionError):
    pass


class Client:
    """One connection to the daemon's socket. Every read is bounded by READ_TIMEOUT."""

    _next_id = 1

    def __init__(self, path, timeout: float = READ_TIMEOUT):
        self.path = str(path)
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(self.path)
        except Exception:
            self.sock.close()
            raise
        self.buf = b""

    # context manager
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes) -> None:
        """sendall that tolerates the server having closed (it may, e.g. after request_too_large)."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def read_line(self, timeout: float | None = None) -> bytes:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout(f"no complete reply line within the timeout; have {self.buf[:200]!r}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            finally:
                self.sock.settimeout(self.timeout)
            if not chunk:
                raise ConnectionClosed(f"connection closed by the server; pending bytes {self.buf[:200]!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def read_reply(self, timeout: float | None = None) -> dict:
        return parse_reply_line(self.read_line(timeout))

    def request_line(self, obj) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"

    def call(self, op, params=None, id=AUTO, **extra) -> dict:
        req = {}
        if id is AUTO:
            sent_id = Client._next_id
            Client._next_id += 1
            req["id"] = sent_id
        elif id is not ABSENT:
            req["id"] = id
        req["op"] = op
        if params is not None:
            req["params"] = params
        req.update(extra)
        self.send(self.request_line(req))
        reply = self.read_reply()
        if id is AUTO:
            assert reply["id"] == sent_id and type(reply["id"]) is int, (
                f"reply id {reply['id']!r} does not echo request id {sent_id}: {reply!r}"
            )
        return reply

    @staticmethod
    def count_reply_lines(data: bytes) -> int:
        lines = data.split(b"\n")[:-1]  # the part after the last \n is not a line yet
        return sum(1 for ln in lines if ln not in (b"", b"\r"))

    def send_raw(self, data: bytes, n: int | None = None) -> list:
        """Send bytes as is; read the replies the framing rules promise (one per non-empty line)."""
        if n is None:
            n = self.count_reply_lines(data)
        self.send(data)
        return [self.read_reply() for _ in range(n)]

    def expect_nothing(self, wait: float = 0.3) -> None:
        """Assert that no byte arrives within `wait` seconds (and the connection stays open)."""
        if self.buf:
            raise AssertionError(f"unexpected pending data: {self.buf[:200]!r}")
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return
        finally:
            self.sock.settimeout(self.timeout)
        if data == b"":
            raise AssertionError("the server closed the connection")
        raise AssertionError(f"unexpected data from the server: {data[:200]!r}")

    def expect_closed(self, timeout: float | None = None) -> None:
        """Assert that the server closes the connection (EOF). A reset counts as closed too:
        Linux reports ECONNRESET to the peer of a Unix socket closed with unread input."""
        assert not self.buf, f"unexpected pending data before close: {self.buf[:200]!r}"
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("the server did not close the connection")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return
            except socket.timeout:
                raise AssertionError("the server did not close the connection") from None
            if data == b"":
                return
            raise AssertionError(f"expected the connection to be closed, got data {data[:200]!r}")


# --------------------------------------------------------------------------------------------
# Outbox (Maildir)
# --------------------------------------------------------------------------------------------


def raw_header(raw: bytes, name: str) -> str | None:
    """The unfolded value of the first header `name`, decoded as UTF-8 (RFC 6532 allows raw
    UTF-8, e.g. a non-ASCII local part in To)."""
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    head = re.sub(rb"\r?\n[ \t]", b" ", head)
    for ln in re.split(rb"\r?\n", head):
        key, sep, value = ln.partition(b":")
        if sep and key.strip().lower() == name.lower().encode():
            return value.strip().decode("utf-8", "replace")
    return None


def recipient(raw: bytes) -> str:
    """The address in the To header, as written (no decoding beyond UTF-8)."""
    to = raw_header(raw, "To") or ""
    m = re.search(r"<([^<>]*)>\s*$", to)
    return (m.group(1) if m else to).strip()


def text_part(msg) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None, "the message has no text/plain part"
    return part.get_content()


def html_part(msg) -> str:
    part = msg.get_body(preferencelist=("html",))
    assert part is not None, "the message has no text/html part"
    return part.get_content()


def token_from_message(msg) -> str:
    m = TOKEN_RE.search(text_part(msg))
    assert m, f"no login link with a token in the text part:\n{text_part(msg)}"
    return m.group(1)


class Outbox:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.new = self.root / "new"
        self.seen: set[str] = set()

    def files(self) -> list[Path]:
        try:
            entries = [p for p in self.new.iterdir() if not p.name.startswith(".")]
        except FileNotFoundError:
            return []
        return sorted(entries, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def count(self) -> int:
        return len(self.files())

    @staticmethod
    def parse(path: Path):
        raw = path.read_bytes()
        return email.parser.BytesParser(policy=email.policy.default).parsebytes(raw), raw

    def all_messages(self):
        return [(p,) + self.parse(p) for p in self.files()]

    def recipients(self) -> list[str]:
        return [recipient(raw) for _, _, raw in self.all_messages()]

    def wait_for_mail(self, to: str, timeout: float = MAIL_TIMEOUT, raw: bool = False, link: bool = True):
        """Newest message for `to` not returned before -> (message, token) (or + raw bytes).
        With link=False (a code-only mail) the token is None."""
        deadline = time.monotonic() + timeout
        want = to.casefold()
        while True:
            found = None
            for path in self.files():
                if path.name in self.seen:
                    continue
                msg, data = self.parse(path)
                if recipient(data).casefold() == want:
                    found = (path, msg, data)  # files() is oldest first: keep the newest
            if found:
                path, msg, data = found
                self.seen.add(path.name)
                token = token_from_message(msg) if link else None
                return (msg, token, data) if raw else (msg, token)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no new mail for {to} in {self.new} within {timeout} s; "
                    f"recipients there: {self.recipients()}"
                )
            time.sleep(0.05)

    def assert_no_mail_for(self, addresses) -> None:
        wanted = {a.casefold() for a in addresses}
        got = [r for r in self.recipients() if r.casefold() in wanted]
        assert not got, f"mail was written for refused requests: {got}"


# --------------------------------------------------------------------------------------------
# Daemon
# --------------------------------------------------------------------------------------------


def clean_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGICLINKD_")}
    for k, v in (extra or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def make_tempdir(prefix="mld-") -> Path:
    # Short paths: a Unix socket path must fit in 108 bytes.
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def run_cli(args, env_extra=None, cwd=None, timeout=15.0, defaults=True) -> subprocess.CompletedProcess:
    """Run the binary with arguments (e.g. --version, check-config) and capture its output."""
    tmp = None
    if cwd is None:
        tmp = make_tempdir("mld-cli-")
        cwd = tmp
    try:
        extra = {}
        if defaults:
            extra = {
                "MAGICLINKD_SOCKET": str(Path(cwd) / "magiclinkd.sock"),
                "MAGICLINKD_DATABASE": str(Path(cwd) / "magiclinkd.sqlite"),
                "MAGICLINKD_OUTBOX_DIR": str(Path(cwd) / "outbox"),
            }
        extra.update(env_extra or {})
        return subprocess.run(
            [str(require_binary()), *args],
            cwd=str(cwd),
            env=clean_env(extra),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
        )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


class Daemon:
    """One magiclinkd process (and its successors after restart) in its own temp dir."""

    def __init__(self, env: dict | None = None, args=(), dir: Path | None = None, defaults: bool = True):
        require_binary()
        self.dir = Path(dir) if dir else make_tempdir()
        self.owns_dir = dir is None
        self.args = list(args)
        base = {}
        if defaults:
            base = {
                "MAGICLINKD_SOCKET": str(self.dir / "magiclinkd.sock"),
                "MAGICLINKD_DATABASE": str(self.dir / "magiclinkd.sqlite"),
                "MAGICLINKD_KEY_FILE": str(self.dir / "magiclinkd.key"),
                "MAGICLINKD_OUTBOX_DIR": str(self.dir / "outbox"),
                "MAGICLINKD_CALLBACK_URL": DEFAULT_CALLBACK_URL,
                "MAGICLINKD_ALLOWED_REDIRECT_ORIGINS": DEFAULT_ALLOWED_ORIGINS,
                # Many tests start twice for one address on purpose; test_limits.py covers the cooldown.
                "MAGICLINKD_RATE_LIMIT_EMAIL_COOLDOWN": "0",
            }
        base.update(env or {})
        self.env_extra = base
        self.env = clean_env(base)
        self.log_path = self.dir / "daemon.log"
        self.proc: subprocess.Popen | None = None
        self.outbox = Outbox(Path(self.env.get("MAGICLINKD_OUTBOX_DIR", self.dir / "outbox")))
        if not self.outbox.root.is_absolute():
            self.outbox = Outbox(self.dir / self.outbox.root)

    # paths ---------------------------------------------------------------------------------
    def _path(self, key, default) -> Path:
        p = Path(self.env.get(key, default))
        return p if p.is_absolute() else self.dir / p

    @property
    def socket_path(self) -> Path:
        return self._path("MAGICLINKD_SOCKET", "magiclinkd.sock")

    @property
    def db_path(self) -> Path:
        return self._path("MAGICLINKD_DATABASE", "magiclinkd.sqlite")

    @property
    def key_path(self) -> Path:
        return self._path("MAGICLINKD_KEY_FILE", str(self.db_path) + ".key")

    # lifecycle -----------------------------------------------------------------------------
    def log(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=4000) -> str:
        text = self.log()
        return text[-n:]

    def spawn(self) -> subprocess.Popen:
        assert self.proc is None or self.proc.poll() is not None, "daemon already running"
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== spawn {time.strftime('%H:%M:%S')} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [str(require_binary()), *self.args],
                cwd=str(self.dir),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self.proc

    def start(self) -> "Daemon":
        self.spawn()
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"magiclinkd exited with {rc} before it was ready; output:\n{self.log_tail()}")
            try:
                with Client(self.socket_path, timeout=1.0) as c:
                    reply = c.call("hello")
                    if reply.get("ok"):
                        return
                    last = reply
            except (OSError, AssertionError, ValueError) as e:
                last = e
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"magiclinkd not ready within {timeout} s (last: {last!r}); output:\n{self.log_tail()}"
                )
            time.sleep(READY_POLL)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM; the daemon must exit 0 within `timeout` seconds."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"magiclinkd had already exited with {self.proc.returncode}; output:\n{self.log_tail()}")
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"magiclinkd did not exit within {timeout} s of SIGTERM; output:\n{self.log_tail()}")
        assert rc == 0, f"magiclinkd exited with {rc} after SIGTERM (expected 0); output:\n{self.log_tail()}"
        # The daemon shuts its own event loops down last: nothing may be handed to them after.
        assert "Cannot schedule tasks on an EventLoop" not in self.log(), f"work scheduled on a stopped loop:\n{self.log_tail()}"
        return rc

    def kill(self) -> None:
        """SIGKILL, no chance to clean up."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT)

    def restart(self, hard: bool = False) -> "Daemon":
        if hard:
            self.kill()
        else:
            self.stop()
        return self.start()

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"magiclinkd still running after {timeout} s; output:\n{self.log_tail()}")

    def close(self, check: bool = True) -> None:
        """Teardown: stop a running daemon (checking the clean exit) and remove the temp dir."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                if check:
                    self.stop()
                else:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.owns_dir and not os.environ.get("MAGICLINKD_TEST_KEEP"):
                shutil.rmtree(self.dir, ignore_errors=True)

    # conveniences ----------------------------------------------------------------------------
    def client(self, timeout: float = READ_TIMEOUT) -> Client:
        return Client(self.socket_path, timeout=timeout)

    def call(self, op, params=None, **kw) -> dict:
        with self.client() as c:
            return c.call(op, params, **kw)

    def wait_for_mail(self, to: str, timeout: float = MAIL_TIMEOUT, raw: bool = False, link: bool = True):
        return self.outbox.wait_for_mail(to, timeout, raw=raw, link=link)

    def login(self, email_addr: str, client: Client | None = None, **start_params) -> dict:
        """start -> mail -> callback; returns the callback result (plus 'token')."""
        c = client or self.client()
        try:
            flow = ok(c.call("start", {"email": email_addr, **start_params}))["flow"]
            _, token = self.wait_for_mail(email_addr)
            # Same browser: the flow from start comes back with the link.
            result = ok(c.call("callback", {"token": token, "flow": flow}))
            result["token"] = token
            result["flow"] = flow
            return result
        finally:
            if client is None:
                c.close()


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture
def daemon_factory():
    """Function-scoped: make_daemon(env=..., start=True) for tests whose config differs."""
    made: list[Daemon] = []

    def make(env=None, start=True, **kw) -> Daemon:
        d = Daemon(env, **kw)
        made.append(d)
        if start:
            d.start()
        return d

    make.made = made
    yield make
    errors = []
    for d in made:
        try:
            d.close()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("daemon teardown failed:\n" + "\n".join(errors))


def serve_daemon(env: dict | None = None, **kw):
    """Generator for fixtures: a started daemon, stopped (exit 0 checked) and cleaned up after,
    also when it failed to start."""
    d = Daemon(env, **kw)
    try:
        d.start()
        yield d
    finally:
        d.close()


@pytest.fixture(scope="module")
def daemon():
    """Module-scoped daemon with the default test configuration (callback
    https://app.example.com/auth/callback, redirects allowed to https://app.example.com)."""
    yield from serve_daemon()


@pytest.fixture
def client(daemon):
    c = daemon.client()
    yield c
    c.close()
