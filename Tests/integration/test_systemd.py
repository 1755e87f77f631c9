"""Running under systemd: socket activation (systemd-socket-activate), sd_notify (READY=1,
WATCHDOG=1, STOPPING=1, STATUS=) to a test NOTIFY_SOCKET, SIGTERM during a burst of requests,
SIGHUP reload, journald priority prefixes, and the admin ops' peer-credential check."""

import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import (
    Client,
    Daemon,
    clean_env,
    err,
    make_tempdir,
    ok,
    require_binary,
    unique_email,
)


class NotifyListener:
    """A datagram socket standing in for systemd's notification socket."""

    def __init__(self, directory, abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"magiclinkd-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.address = str(directory / "notify.sock")
            self.sock.bind(self.address)
        self.sock.settimeout(0.2)
        self.messages = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def wait_for(self, needle, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, message in list(self.messages):
                if needle in message.split("\n"):
                    return message
            time.sleep(0.02)
        raise AssertionError(f"no {needle!r} among {self.messages}")

    def count(self, needle):
        return sum(1 for _, m in list(self.messages) if needle in m.split("\n"))

    def close(self):
        self._stop = True
        self.sock.close()
        self._thread.join(2)


@pytest.fixture
def notify(tmp_path):
    listener = NotifyListener(tmp_path)
    yield listener
    listener.close()


def test_socket_activation_serves_a_login_and_leaves_the_socket(tmp_path):
    activate = shutil.which("systemd-socket-activate")
    assert activate, "systemd-socket-activate is missing (Debian package systemd; scripts/setup installs it)"
    d = Daemon(dir=make_tempdir())
    sock = d.socket_path
    log = open(d.log_path, "ab")
    proc = subprocess.Popen(
        [activate, "-l", str(sock), "--fdname=magiclinkd", str(require_binary())],
        cwd=str(d.dir), env=d.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )
    d.proc = proc
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline, d.log_tail()
            time.sleep(0.02)
        # The first connection starts the daemon, which adopts the listening socket (fd 3).
        with Client(sock, timeout=15) as c:
            hello = ok(c.call("hello"))
            assert hello["server"] == "magiclinkd"
            login = d.login(unique_email("activated"), client=c)
            ok(c.call("session", {"session": login["session"]}))
        assert "fd 3 from systemd" in d.log()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0, d.log_tail()
        assert sock.exists(), "an inherited socket is systemd's: the daemon must not remove it"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        d.close(check=False)


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notify_ready_watchdog_stopping(tmp_path, abstract):
    listener = NotifyListener(tmp_path, abstract=abstract)
    d = Daemon({"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "200000"})
    try:
        d.spawn()
        ready = listener.wait_for("READY=1")
        # READY=1 comes only when the socket is served.
        with Client(d.socket_path, timeout=5) as c:
            ok(c.call("hello"))
        assert any(line.startswith("STATUS=") for line in ready.split("\n")), ready
        time.sleep(0.6)
        assert listener.count("WATCHDOG=1") >= 3, listener.messages  # every ~100 ms
        d.stop()
        listener.wait_for("STOPPING=1")
    finally:
        listener.close()
        d.close(check=False)


def test_no_watchdog_pings_without_watchdog_usec(notify):
    d = Daemon({"NOTIFY_SOCKET": notify.address})
    try:
        d.start()
        notify.wait_for("READY=1")
        time.sleep(0.5)
        assert notify.count("WATCHDOG=1") == 0
    finally:
        d.close()


def test_sigterm_during_a_burst_loses_no_acknowledged_request(daemon_factory):
    d = daemon_factory({"MAGICLINKD_RATE_LIMIT_IP_MAX": "100000", "MAGICLINKD_RATE_LIMIT_EMAIL_MAX": "100000"})
    # Tokens made beforehand, so the burst is pure callbacks (each one a durable write).
    tokens = []
    with d.client() as c:
        for i in range(60):
            addr = unique_email(f"burst{i}")
            ok(c.call("start", {"email": addr}))
            tokens.append(d.wait_for_mail(addr)[1])
    acknowledged = []
    lock = threading.Lock()

    def worker(chunk):
        try:
            with Client(d.socket_path, timeout=10) as c:
                for token in chunk:
                    reply = c.call("callback", {"token": token})
                    if reply.get("ok"):
                        with lock:
                            acknowledged.append(reply["result"]["session"])
        except Exception:
            pass  # the daemon closing the connection mid-burst is expected

    threads = [threading.Thread(target=worker, args=(tokens[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    d.stop()  # SIGTERM; asserts exit 0
    for t in threads:
        t.join(15)
    assert acknowledged, "some requests should have been answered before the shutdown"
    d.start()
    with d.client() as c:
        for session in acknowledged:
            ok(c.call("session", {"session": session}))


def test_admin_ops_refuse_an_unprivileged_peer(daemon_factory):
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to connect as another user"
    d = daemon_factory({"MAGICLINKD_SOCKET_MODE": "0666"})
    os.chmod(d.dir, 0o711)  # let "nobody" reach the socket; the admin check is the daemon's
    env = clean_env({"MAGICLINKD_SOCKET": str(d.socket_path)})
    as_nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    r = subprocess.run(as_nobody + [str(require_binary()), "status"], env=env, capture_output=True, timeout=15)
    assert r.returncode == 77, (r.returncode, r.stdout, r.stderr)
    assert b"permission_denied" in r.stderr
    # An app op from the same peer works.
    script = (
        "import socket,sys;s=socket.socket(socket.AF_UNIX);s.connect(sys.argv[1]);"
        "s.sendall(b'{\"op\":\"hello\"}\\n');print(s.recv(4096).decode())"
    )
    r = subprocess.run(as_nobody + ["python3", "-c", script, str(d.socket_path)], capture_output=True, timeout=15)
    assert b'"ok":true' in r.stdout, r
    # Root may.
    r = subprocess.run([str(require_binary()), "status", "--json"], env=env, capture_output=True, timeout=15)
    assert r.returncode == 0, r
    assert b'"live_sessions"' in r.stdout
    assert "admin_refused" in d.log()


def test_admin_cli_sessions_revoke_and_dead_letters(daemon_factory):
    d = daemon_factory()
    env = clean_env({"MAGICLINKD_SOCKET": str(d.socket_path)})
    addr = unique_email("admin")
    first = d.login(addr)
    second = d.login(addr)

    def cli(*args):
        r = subprocess.run([str(require_binary()), *args], env=env, capture_output=True, timeout=15)
        assert r.returncode == 0, r
        return r.stdout.decode()

    import json

    listing = json.loads(cli("sessions", "--email", addr, "--json"))["sessions"]
    assert len(listing) == 2 and {s["user_id"] for s in listing} == {first["user"]["id"]}
    assert first["session"] not in json.dumps(listing), "a handle is not the session id"
    handle = listing[0]["handle"]
    assert "revoked 1" in cli("revoke", "--handle", handle)
    alive = [s for s in (first, second) if d.call("session", {"session": s["session"]}).get("ok")]
    assert len(alive) == 1
    assert "revoked 1" in cli("revoke", "--user", first["user"]["id"])
    err(d.call("session", {"session": alive[0]["session"]}), "invalid_session")
    assert "no dead letters" in cli("dead-letters")
    status = json.loads(cli("status", "--json"))
    assert status["users"] >= 1 and status["mail"]["sent"] >= 2
    assert "removed" in cli("purge")


def test_sighup_reloads_templates_without_dropping_connections(daemon_factory, tmp_path):
    templates = tmp_path / "templates"
    (templates / "en").mkdir(parents=True)
    subject = templates / "en" / "login.subject.mustache"
    subject.write_text("First subject")
    d = daemon_factory({"MAGICLINKD_TEMPLATES_DIR": str(templates)})
    with d.client() as c:
        a = unique_email("hup-a")
        ok(c.call("start", {"email": a}))
        assert str(d.wait_for_mail(a)[0]["Subject"]) == "First subject"
        subject.write_text("Second subject")
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "configuration reloaded" not in d.log():
            assert time.monotonic() < deadline, d.log_tail()
            time.sleep(0.05)
        ok(c.call("hello"))  # same connection still served
        b = unique_email("hup-b")
        ok(c.call("start", {"email": b}))
        assert str(d.wait_for_mail(b)[0]["Subject"]) == "Second subject"
        # A broken template on reload keeps the running ones.
        subject.write_text("{{#broken}}")
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "reload failed" not in d.log():
            assert time.monotonic() < deadline, d.log_tail()
            time.sleep(0.05)
        e = unique_email("hup-c")
        ok(c.call("start", {"email": e}))
        assert str(d.wait_for_mail(e)[0]["Subject"]) == "Second subject"


def test_journald_priority_prefixes_when_journal_stream_is_set(daemon_factory):
    d = daemon_factory({"JOURNAL_STREAM": "8:12345"})
    login = d.login(unique_email("journal"))
    err(d.call("callback", {"token": login["token"]}), "invalid_token", reason="used")
    lines = [l for l in d.log().splitlines() if l.startswith("<")]
    assert any(l.startswith("<6>") and "event=login " in l + " " for l in lines), lines
    assert any(l.startswith("<5>") and "event=login_refused" in l for l in lines), lines
    assert login["token"] not in d.log() and login["session"] not in d.log()
