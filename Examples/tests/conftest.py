"""End-to-end harness for the example apps (Examples/<lang>/): each runs with its own one
command (`./run`, which starts a real magiclinkd beside it), and is driven over real HTTP.

- ``ExampleApp``: one running example (its process group, base URL, Maildir outbox).
- ``Browser``: a tiny cookie-keeping HTTP client that does not follow redirects, so each
  response (status, Location, Set-Cookie attributes) can be checked.
"""

from __future__ import annotations

import email.parser
import email.policy
import http.client
import http.cookies
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent
REPO = EXAMPLES.parent
LANGUAGES = ["php", "python", "ruby"]
START_TIMEOUT = 60.0
MAIL_TIMEOUT = 10.0
HTTP_TIMEOUT = 10.0
CODE_RE = re.compile(r"(?<![\d])(\d{6})(?![\d])")
LINK_RE = re.compile(r"(https?://[^\s\"'<>]+/auth/callback\?token=[A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])")


def binary() -> Path:
    env = os.environ.get("MAGICLINKD_BIN")
    path = Path(env) if env else REPO / ".build" / "debug" / "magiclinkd"
    assert path.is_file(), f"magiclinkd binary not found at {path}: build it (swift build) or set MAGICLINKD_BIN"
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ExampleApp:
    def __init__(self, lang: str, app_url: str | None = None):
        self.lang = lang
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.app_url = app_url or self.base
        self.state = Path(tempfile.mkdtemp(prefix=f"mldx-{lang}-", dir="/tmp"))
        self.outbox = self.state / "outbox" / "new"
        self.log_path = self.state / "run.log"
        self.seen: set[str] = set()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAGICLINKD_")}
        env.update({
            "MAGICLINKD_BIN": str(binary()),
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "APP_URL": self.app_url,
            "EXAMPLE_STATE_DIR": str(self.state),
        })
        run = EXAMPLES / lang / "run"
        assert os.access(run, os.X_OK), f"{run} is missing or not executable"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([str(run)], cwd=str(EXAMPLES / lang), env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_until_serving()

    def log(self) -> str:
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def wait_until_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.lang} example exited with {self.proc.returncode}:\n{self.log()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/")
                conn.getresponse().read()
                conn.close()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"{self.lang} example not serving within {START_TIMEOUT} s:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Ctrl-C as a developer would: the app and its daemon must both go away."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError(f"{self.lang} example did not stop on SIGINT:\n{self.log()}")
        deadline = time.monotonic() + 10
        while self.group_alive():
            if time.monotonic() > deadline:
                os.killpg(self.proc.pid, signal.SIGKILL)
                raise AssertionError(f"processes of the {self.lang} example outlived it:\n{self.log()}")
            time.sleep(0.05)

    def group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        # Zombies of our own children do not count; the group's others are not ours to reap.
        out = subprocess.run(["ps", "-o", "stat=", "-g", str(self.proc.pid)], capture_output=True, text=True).stdout
        return any(s and not s.startswith("Z") for s in out.split())

    def wait_for_mail(self, to: str) -> tuple[str | None, str | None]:
        """(link, code) of the next new mail to `to` (the body is quoted-printable)."""
        deadline = time.monotonic() + MAIL_TIMEOUT
        while True:
            for path in sorted(self.outbox.glob("*")) if self.outbox.exists() else []:
                if path.name in self.seen:
                    continue
                msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(path.read_bytes())
                if str(msg["To"]).casefold() != to.casefold():
                    continue
                self.seen.add(path.name)
                text = msg.get_body(preferencelist=("plain",)).get_content()
                link = LINK_RE.search(text)
                code = CODE_RE.search(LINK_RE.sub("", text))  # never digits inside the token
                assert link or code, f"neither a sign-in link nor a code in the mail to {to}:\n{text}"
                return (link.group(1) if link else None, code.group(1) if code else None)
            if time.monotonic() > deadline:
                raise AssertionError(f"no mail for {to} within {MAIL_TIMEOUT} s; log:\n{self.log()}")
            time.sleep(0.05)


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: str):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def set_cookies(self) -> list[str]:
        return [v for k, v in self.headers if k.lower() == "set-cookie"]

    def location_path(self) -> str:
        location = self.header("Location")
        assert location, f"no Location header (status {self.status})"
        parts = urllib.parse.urlsplit(location)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def __repr__(self) -> str:
        return f"<{self.status} {self.headers} {self.body[:500]!r}>"


class Browser:
    """Keeps cookies the way a browser would for one host; never follows redirects."""

    def __init__(self, app: ExampleApp):
        self.app = app
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None, headers: dict | None = None) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.app.port, timeout=HTTP_TIMEOUT)
        hdrs = {"User-Agent": "magiclinkd-e2e/1.0"}
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        hdrs.update(headers or {})
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        resp = Response(r.status, r.getheaders(), r.read().decode("utf-8", "replace"))
        conn.close()
        for raw in resp.set_cookies():
            jar = http.cookies.SimpleCookie()
            jar.load(raw)
            for name, morsel in jar.items():
                expired = morsel["max-age"] == "0" or (morsel["expires"] and _in_past(morsel["expires"]))
                if expired or morsel.value == "":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return resp

    def get(self, path: str, **kw) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, form: dict, **kw) -> Response:
        return self.request("POST", path, form=form, **kw)


def _in_past(expires: str) -> bool:
    from email.utils import parsedate_to_datetime
    try:
        return parsedate_to_datetime(expires).timestamp() < time.time()
    except (TypeError, ValueError):
        return False


@pytest.fixture(params=LANGUAGES)
def app(request):
    a = ExampleApp(request.param)
    try:
        yield a
    finally:
        a.stop()
