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


def inherit_as_fd3(d: Daemon, source: str, pass_fds=()) -> subprocess.CompletedProcess:
    """Runs the daemon as systemd would with one socket: fd 3 redirected from `source` (a sh
    redirection word such as `<file` or `<&5`), LISTEN_PID the daemon's own pid."""
    script = f'export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=magiclinkd; exec "$0" serve 3{source}'
    return subprocess.run(["bash", "-c", script, str(require_binary())], cwd=str(d.dir), env=d.env,
                          pass_fds=pass_fds, stdin=subprocess.DEVNULL, capture_output=True, timeout=20)


@pytest.mark.parametrize("kind", ["file", "datagram", "not-listening", "tcp"])
def test_an_inherited_descriptor_that_is_no_listening_unix_socket_is_refused(kind):
    # A misconfigured socket unit must fail fast and say why, not hang or serve garbage.
    d = Daemon(dir=make_tempdir())
    held = None
    try:
        if kind == "file":
            (d.dir / "not-a-socket").write_text("x")
            r = inherit_as_fd3(d, "<not-a-socket")
            expected = "is not a socket"
        else:
            if kind == "datagram":
                held = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                held.bind(str(d.dir / "dgram.sock"))
                expected = "is not a stream socket"
            elif kind == "not-listening":
                held = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                held.bind(str(d.dir / "bound.sock"))
                expected = "is not listening"
            else:
                held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.bind(("127.0.0.1", 0))
                held.listen(5)
                expected = "is not a Unix domain socket"
            r = inherit_as_fd3(d, f"<&{held.fileno()}", pass_fds=(held.fileno(),))
        out = (r.stdout + r.stderr).decode()
        assert r.returncode == 1, out
        assert "the socket passed by systemd (fd 3) " + expected in out, out
        assert not d.db_path.exists(), "refused before the database is opened"
    finally:
        if held:
            held.close()
        d.close(check=False)


def test_an_inherited_socket_at_another_path_is_served_with_a_warning(tmp_path):
    d = Daemon(dir=make_tempdir())
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    elsewhere = d.dir / "elsewhere.sock"
    listening.bind(str(elsewhere))
    listening.listen(16)
    script = f'export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" serve 3<&{listening.fileno()}'
    log = open(d.log_path, "ab")
    d.proc = subprocess.Popen(["bash", "-c", script, str(require_binary())], cwd=str(d.dir), env=d.env,
                              pass_fds=(listening.fileno(),), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        with Client(elsewhere, timeout=10) as c:
            ok(c.call("hello"))
        assert "not at the configured path" in d.log() and str(elsewhere) in d.log(), d.log_tail()
        d.stop()
    finally:
        log.close()
        listening.close()
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
                    reply = c.call("callback", {"confirm": True, "token": token})
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
    assert status["session_cache"]["capacity"] > 0
    assert "session cache" in cli("status") and "answered from memory" in cli("status")
    assert "removed" in cli("purge")


def test_admin_cli_escapes_control_characters_from_clients(daemon_factory):
    # A user agent is whatever the browser (or an attacker) sent: it must not drive the
    # admin's terminal (ESC sequences) or fake extra lines.
    d = daemon_factory()
    env = clean_env({"MAGICLINKD_SOCKET": str(d.socket_path)})
    addr = unique_email("ansi")
    with d.client() as c:
        ok(c.call("start", {"email": addr}))
        _, token = d.wait_for_mail(addr)
        ok(c.call("callback", {"confirm": True, "token": token, "user_agent": "evil\x1b]0;owned\x07\x1b[2J\nfake line\rX"}))
    r = subprocess.run([str(require_binary()), "sessions", "--email", addr], env=env, capture_output=True, timeout=15)
    assert r.returncode == 0, r
    out = r.stdout.decode()
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out, repr(out)
    assert out.count("\n") == 1, repr(out)
    assert "evil\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\nfake line\\rX" in out, repr(out)
    r = subprocess.run([str(require_binary()), "sessions", "--email", addr, "--json"], env=env, capture_output=True, timeout=15)
    assert r.returncode == 0 and b"\x1b" not in r.stdout, r


def test_admin_cli_finds_the_systemd_socket_without_configuration(tmp_path):
    # An admin types `magiclinkd status` in a shell that has neither the unit's environment nor
    # its --config: the CLI must look at /run/magiclinkd/magiclinkd.sock. A private mount
    # namespace with its own /run keeps this away from any real installation.
    unshare = shutil.which("unshare")
    assert unshare, "unshare is missing (Debian package util-linux; scripts/setup installs it)"
    script = """
set -e
mount -t tmpfs tmpfs /run
mkdir /run/magiclinkd
MAGICLINKD_SOCKET=/run/magiclinkd/magiclinkd.sock "$BIN" serve 2>"$DIR/daemon.log" &
pid=$!
for _ in $(seq 1 300); do [ -S /run/magiclinkd/magiclinkd.sock ] && break; sleep 0.02; done
cd "$DIR"
set +e
env -u MAGICLINKD_SOCKET "$BIN" status --json
rc=$?
"$BIN" status --socket "$DIR/nowhere.sock" >/dev/null 2>&1
other=$?
kill -TERM $pid; wait $pid
echo "rc=$rc other=$other"
"""
    env = clean_env({
        "BIN": str(require_binary()), "DIR": str(tmp_path),
        "MAGICLINKD_DATABASE": str(tmp_path / "db.sqlite"), "MAGICLINKD_OUTBOX_DIR": str(tmp_path / "outbox"),
    })
    r = subprocess.run([unshare, "--mount", "--propagation", "private", "bash", "-c", script],
                       env=env, capture_output=True, timeout=60)
    out = r.stdout.decode()
    assert r.returncode == 0 and out.rstrip().endswith("rc=0 other=69"), (r, (tmp_path / "daemon.log").read_text())
    import json
    status = json.loads(out.splitlines()[0])
    assert "live_sessions" in status and "version" in status, out


def test_admin_cli_retry_fails_when_nothing_was_queued_also_with_json(daemon_factory):
    d = daemon_factory()
    env = clean_env({"MAGICLINKD_SOCKET": str(d.socket_path)})
    import json
    for extra in ([], ["--json"]):
        r = subprocess.run([str(require_binary()), "retry", "no-such-message", *extra], env=env, capture_output=True, timeout=15)
        assert r.returncode == 1, r
        if extra:
            assert json.loads(r.stdout) == {"retried": False, "reason": "not_found"}, r
        else:
            assert b"not queued" in r.stdout, r


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


def journal_daemon(daemon_factory, stream_value=None):
    """A daemon whose JOURNAL_STREAM names its own stderr (the log file), as systemd's would."""
    d = daemon_factory(start=False)
    d.log_path.touch()
    st = os.stat(d.log_path)
    d.env["JOURNAL_STREAM"] = stream_value or f"{st.st_dev}:{st.st_ino}"
    return d.start()


def test_journald_priority_prefixes_when_journal_stream_is_set(daemon_factory):
    d = journal_daemon(daemon_factory)
    login = d.login(unique_email("journal"))
    err(d.call("callback", {"confirm": True, "token": login["token"]}), "invalid_token", reason="used")
    lines = [l for l in d.log().splitlines() if l.startswith("<")]
    assert any(l.startswith("<6>") and "event=login " in l + " " for l in lines), lines
    assert any(l.startswith("<5>") and "event=login_refused" in l for l in lines), lines
    assert login["token"] not in d.log() and login["session"] not in d.log()


def test_journal_stream_of_another_file_is_ignored(daemon_factory):
    # Inherited from a parent whose stderr went to the journal, but ours goes to a file now:
    # plain timestamped lines, no "<6>" prefixes.
    d = journal_daemon(daemon_factory, stream_value="8:12345")
    ok(d.call("hello"))
    lines = [l for l in d.log().splitlines() if " info " in l]
    assert lines, d.log_tail()
    assert not any(l.startswith("<") for l in d.log().splitlines()), d.log_tail()


def test_request_values_cannot_forge_log_lines(daemon_factory):
    # admin_retry logs the message id it was given, unvalidated: NUL, CR, LF, ESC, C1 controls
    # and U+2028 in it must stay inside that one line (the suite runs as root, an admin).
    d = journal_daemon(daemon_factory)
    evil = "m\x00<3>forged-nul\r\n<2>forged-line\x1b[31mred\u2028sep\x85nel\\path"
    reply = ok(d.call("admin_retry", {"message_id": evil}))
    assert reply["retried"] is False
    raw = d.log_path.read_bytes()
    assert b"\x00" not in raw and b"\x1b" not in raw and b"\r" not in raw
    assert "\u2028".encode() not in raw and "\x85".encode() not in raw
    lines = raw.decode().splitlines()
    forged = [l for l in lines if "forged" in l]
    assert len(forged) == 1 and forged[0].startswith("<5>"), forged
    expected = "\\u{0}<3>forged-nul\\r\\n<2>forged-line\\u{1b}[31mred\\u{2028}sep\\u{85}nel\\\\path"
    assert f'message_id="m{expected}"' in forged[0], forged[0]


def test_long_request_values_are_cut_in_the_log(daemon_factory):
    d = journal_daemon(daemon_factory)
    long_id = "x" * 4000
    ok(d.call("admin_retry", {"message_id": long_id}))
    lines = [l for l in d.log().splitlines() if "event=admin_retry" in l]
    assert len(lines) == 1, d.log_tail()
    assert long_id not in lines[0] and "x" * 512 + "…(truncated)" in lines[0], lines[0]
