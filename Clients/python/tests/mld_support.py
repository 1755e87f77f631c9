"""Helpers for the Python client's tests: a real magiclinkd per test module, its Maildir outbox,
and fake socket servers for what the daemon cannot do (never answer, answer garbage).

Deliberately not a conftest.py: the repository's other pytest suites have their own conftest
modules imported as ``conftest``; the fixtures here are imported by name from this module.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Set

import pytest

HERE = Path(__file__).resolve().parent
CLIENT_ROOT = HERE.parent
REPO = CLIENT_ROOT.parent.parent
sys.path.insert(0, str(CLIENT_ROOT / "src"))

import magiclinkd  # noqa: E402

# The tests choose each client's app themselves: one from the environment running them would
# send every request to an app their daemons do not serve.
os.environ.pop("MAGICLINKD_APP", None)

READY_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
MAIL_TIMEOUT = 10.0
TOKEN_RE = re.compile(r"[?&]token=([A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])")
CODE_RE = re.compile(r"(?<!\d)(\d{6})(?!\d)")


def binary() -> Path:
    env = os.environ.get("MAGICLINKD_BIN")
    path = Path(env) if env else REPO / ".build" / "debug" / "magiclinkd"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"magiclinkd binary not found at {path}: set MAGICLINKD_BIN or build it (swift build)",
            pytrace=False,
        )
    return path


def short_tmpdir(prefix: str) -> Path:
    """A private directory under /tmp, short enough for a socket path (108 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def unique_email(tag: str) -> str:
    return f"py-{tag}-{uuid.uuid4().hex[:12]}@example.com"


class Daemon:
    """One real magiclinkd, configured only by environment variables, in its own temp dir."""

    def __init__(self, config: Optional[str] = None, **settings: str) -> None:
        """``settings`` become ``MAGICLINKD_*`` variables. With ``config`` (YAML text) the daemon
        reads that file (``MAGICLINKD_CONFIG``) and the environment sets no callback URL,
        redirect origins or cooldown, which would win over the file."""
        if config is None:
            # The tests sign one address in more than once within a minute: no per-address
            # cooldown unless a test asks for it (the hourly cap of 5 stays).
            settings.setdefault("rate_limit_email_cooldown", "0")
        self.config = config
        self.dir = short_tmpdir("mldpy-")
        self.socket = str(self.dir / "d.sock")
        self.outbox = self.dir / "outbox" / "new"
        self.log_path = self.dir / "daemon.log"
        self.settings = settings
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.seen_mail: Set[str] = set()

    def env(self) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAGICLINKD_")}
        env.update(
            MAGICLINKD_SOCKET=self.socket,
            MAGICLINKD_DATABASE=str(self.dir / "db.sqlite"),
            MAGICLINKD_OUTBOX_DIR=str(self.dir / "outbox"),
            MAGICLINKD_MAIL_TRANSPORT="outbox",
        )
        if self.config is None:
            env.update(
                MAGICLINKD_CALLBACK_URL="https://app.example.com/auth/callback",
                MAGICLINKD_ALLOWED_REDIRECT_ORIGINS="https://app.example.com",
            )
        else:
            path = self.dir / "config.yaml"
            path.write_text(self.config, "utf-8")
            env["MAGICLINKD_CONFIG"] = str(path)
        env.update({f"MAGICLINKD_{k.upper()}": v for k, v in self.settings.items()})
        return env

    def log(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def start(self) -> "Daemon":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(binary()), "serve"], env=self.env(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            code = self.proc.poll()
            if code is not None:
                pytest.fail(f"magiclinkd exited with {code} before it was ready:\n{self.log()}", pytrace=False)
            if raw_hello(self.socket):
                return
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"magiclinkd not ready within {READY_TIMEOUT} s:\n{self.log()}", pytrace=False)
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM; the daemon must exit 0."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"magiclinkd did not stop on SIGTERM:\n{self.log()}")
        assert code == 0, f"magiclinkd exited with {code} on SIGTERM:\n{self.log()}"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def wait_for_text(self, to: str) -> str:
        """The text part of the next new mail to ``to`` (quoted-printable decoded)."""
        deadline = time.monotonic() + MAIL_TIMEOUT
        while True:
            for path in sorted(self.outbox.glob("*")) if self.outbox.is_dir() else []:
                if path.name in self.seen_mail:
                    continue
                msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(path.read_bytes())
                if str(msg["To"]).casefold() != to.casefold():
                    continue
                self.seen_mail.add(path.name)
                body = msg.get_body(preferencelist=("plain",))
                assert body is not None, f"mail to {to} has no text part"
                return str(body.get_content())  # type: ignore[attr-defined]
            if time.monotonic() > deadline:
                raise AssertionError(f"no mail to {to} within {MAIL_TIMEOUT} s; daemon log:\n{self.log()}")
            time.sleep(0.02)

    def wait_for_token(self, to: str) -> str:
        """The token of the link in the next new mail to ``to``."""
        match = TOKEN_RE.search(self.wait_for_text(to))
        assert match, f"no sign-in link in the mail to {to}"
        return match.group(1)

    def wait_for_code(self, to: str) -> str:
        """The 6-digit code in the next new mail to ``to``."""
        text = re.sub(r"https?://\S+", "", self.wait_for_text(to))  # digits inside a link's token
        codes = CODE_RE.findall(text)
        assert len(codes) == 1, f"expected one 6-digit code in the mail to {to}"
        return str(codes[0])

    def mail_count(self) -> int:
        return len(list(self.outbox.glob("*"))) if self.outbox.is_dir() else 0


def sign_in(daemon: Daemon, c: "magiclinkd.Client", who: str, *, ip: str = "192.0.2.10",
            user_agent: str = "pytest/1.0", **start: Any) -> "magiclinkd.Login":
    """start → the mail in the outbox → callback with the start's flow (the same browser)."""
    flow = c.start(who, ip=ip, user_agent=user_agent, **start).flow
    return c.callback(daemon.wait_for_token(who), flow=flow, ip=ip, user_agent=user_agent)


def raw_hello(path: str) -> bool:
    """One hello over a plain socket (independent of the client under test)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(path)
            s.sendall(b'{"id":1,"op":"hello"}\n')
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    return False
                data += chunk
        return bool(json.loads(data).get("ok"))
    except (OSError, ValueError):
        return False


class FakeServer:
    """A Unix socket server run in threads; ``handler(conn)`` serves each connection."""

    def __init__(self, handler: Callable[[socket.socket], None], backlog: int = 16) -> None:
        self.dir = short_tmpdir("mldpyf-")
        self.path = str(self.dir / "f.sock")
        self.handler = handler
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(backlog)
        self.accepted = 0
        self.lines: List[bytes] = []
        self.conns: List[socket.socket] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def serve(self) -> "FakeServer":
        self.thread.start()
        return self

    def _serve(self) -> None:
        self.listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            self.conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except OSError:
            pass

    def read_line(self, conn: socket.socket, timeout: float = 10.0) -> Optional[bytes]:
        conn.settimeout(timeout)
        data = b""
        while b"\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        line = data.split(b"\n", 1)[0]
        self.lines.append(line)
        return line

    def close(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(5)
        self.listener.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def request_of(line: bytes) -> Dict[str, Any]:
    value = json.loads(line)
    assert isinstance(value, dict)
    return value


# --- fixtures (import them by name into a test module) -------------------------------------------


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    d = Daemon()
    try:
        d.start()
        yield d
        d.stop()
    finally:
        d.cleanup()


@pytest.fixture
def client(daemon: Daemon) -> Iterator[magiclinkd.Client]:
    with magiclinkd.Client(daemon.socket) as c:
        yield c
