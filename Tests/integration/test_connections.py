"""Peers and connections (Protocol/README.md section 1): the SO_PEERCRED allow lists,
max_connections with eviction of the connection idle longest, request_timeout (a line that is
not completed, a reply that is not read) and idle_timeout. Every test drives the real binary
over its real socket; other uids connect through `setpriv` (util-linux)."""

import fcntl
import json
import os
import re
import resource
import shutil
import socket
import struct
import subprocess
import termios
import threading
import time

import pytest

from conftest import clean_env, err, ok, require_binary, run_cli, unique_email
from test_schemas import validator

SETPRIV = shutil.which("setpriv")
# root's python may live where other users cannot reach it (pyenv under /root).
OTHER_PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else shutil.which("python3")

# Connects `count` times as whoever runs it, sends hello on each and prints, per connection, the
# first reply line or CLOSED (EOF or reset before a reply).
PEER_SCRIPT = r"""
import socket, sys
path, count = sys.argv[1], int(sys.argv[2])
for _ in range(count):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(path)
    try:
        s.sendall(b'{"id":1,"op":"hello"}\n')
    except OSError:
        pass
    buf = b""
    try:
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except ConnectionResetError:
        pass
    print(buf.split(b"\n")[0].decode() if b"\n" in buf else "CLOSED", flush=True)
    s.close()
"""


def as_peer(d, uid, gid, count=1, groups=None):
    """The replies (parsed, or "CLOSED") of `count` connections made as uid:gid."""
    assert SETPRIV, "setpriv (util-linux) is needed to connect as another user"
    cred = [SETPRIV, f"--reuid={uid}", f"--regid={gid}"]
    cred += [f"--groups={','.join(map(str, groups))}"] if groups else ["--clear-groups"]
    r = subprocess.run(cred + [OTHER_PYTHON, "-c", PEER_SCRIPT, str(d.socket_path), str(count)],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r
    out = []
    for line in r.stdout.decode().splitlines():
        out.append(line if line == "CLOSED" else json.loads(line))
    return out


def open_to_others(d):
    os.chmod(d.dir, 0o711)  # let other uids reach the socket (mode 0666): the check is the daemon's


def others_env(extra=None):
    env = {"MAGICLINKD_SOCKET_MODE": "0666"}
    env.update(extra or {})
    return env


def settle():
    """Lets the daemon finish closing the connection its readiness check used (tests that count
    connections against max_connections must not find it still there)."""
    time.sleep(0.3)


def log_events(d, event):
    return [ln for ln in d.log().splitlines() if f"event={event}" in ln]


# ------------------------------------------------------------------------------ allow lists


def test_a_peer_not_on_the_uid_list_is_closed_and_logged_while_listed_peers_and_root_are_served(daemon_factory):
    d = daemon_factory(others_env({"MAGICLINKD_ALLOWED_UIDS": "1000,1001", "MAGICLINKD_ADMIN_UIDS": "1500"}))
    open_to_others(d)
    assert ok(as_peer(d, 1000, 1000)[0])["server"] == "magiclinkd"
    assert ok(as_peer(d, 1001, 3000)[0])["server"] == "magiclinkd"
    assert as_peer(d, 2000, 2000) == ["CLOSED"], "a peer not on the list gets no reply"
    assert ok(as_peer(d, 1500, 1500)[0]), "an admin uid is always allowed (the admin CLI must work)"
    with d.client() as c:  # root
        ok(c.call("hello"))
        login = d.login(unique_email("root"), client=c)
        ok(c.call("session", {"session": login["session"]}))
    r = subprocess.run([str(require_binary()), "status", "--json"],
                       env=clean_env({"MAGICLINKD_SOCKET": str(d.socket_path)}), capture_output=True, timeout=15)
    assert r.returncode == 0, r
    refused = log_events(d, "peer_refused")
    assert len(refused) == 1, d.log_tail()
    assert "peer_uid=2000" in refused[0] and "peer_gid=2000" in refused[0] and re.search(r"peer_pid=\d+", refused[0])
    assert "event=peer_refused" not in d.log().split(refused[0])[1], "one line per refused connection"


def test_the_gid_list_matches_the_primary_group(daemon_factory):
    d = daemon_factory(others_env({"MAGICLINKD_ALLOWED_GIDS": "1005"}))
    open_to_others(d)
    assert ok(as_peer(d, 1003, 1005)[0])
    assert as_peer(d, 1003, 1003) == ["CLOSED"]
    # SO_PEERCRED carries the primary group only: a supplementary group does not count.
    assert as_peer(d, 1003, 1003, groups=[1005]) == ["CLOSED"]
    ok(d.call("hello"))  # root


def test_empty_lists_let_anyone_who_can_open_the_socket_in(daemon_factory):
    d = daemon_factory(others_env())
    open_to_others(d)
    assert ok(as_peer(d, 2001, 2001)[0])
    assert not log_events(d, "peer_refused")


def test_refusal_log_lines_are_limited_and_counted(daemon_factory):
    d = daemon_factory(others_env({"MAGICLINKD_ALLOWED_UIDS": "1000"}))
    open_to_others(d)
    assert as_peer(d, 2002, 2002, count=60) == ["CLOSED"] * 60
    # Every refusal is accounted for: logged, or counted in a later line's suppressed=.
    deadline = time.monotonic() + 5
    while True:
        lines = log_events(d, "peer_refused")
        counted = sum(1 for ln in lines if "last_peer_uid" not in ln)
        counted += sum(int(m) for ln in lines for m in re.findall(r"suppressed=(\d+)", ln))
        if counted == 60 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert counted == 60, "\n".join(lines)
    assert len(lines) <= 8, lines  # a burst of 60 gives a line a second at most
    assert any("suppressed=" in ln for ln in lines), lines


# ------------------------------------------------------------------------------ capacity


@pytest.fixture
def many_descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 1200, "the test needs 1000+ descriptors"
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def is_closed(sock, wait=0.0):
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except (socket.timeout, BlockingIOError):
        return False


@pytest.mark.parametrize("max_connections", [None, 2000, 100], ids=["default-1024", "above-1000", "below-1000"])
def test_1000_idle_connections_do_not_stop_a_real_client(daemon_factory, many_descriptors, max_connections):
    env = {} if max_connections is None else {"MAGICLINKD_MAX_CONNECTIONS": str(max_connections)}
    d = daemon_factory(env)
    before = rss_kib(d.proc.pid)
    idle = []
    started = time.monotonic()
    try:
        for _ in range(1000):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(d.socket_path))  # blocking: waits while the listen backlog is full
            idle.append(s)
        opened = time.monotonic() - started
        time.sleep(0.3)  # let the daemon take them all in
        t0 = time.monotonic()
        with d.client() as c:
            ok(c.call("hello"))
            login = d.login(unique_email("busyday"), client=c)
            ok(c.call("session", {"session": login["session"]}))
        served_in = time.monotonic() - t0
        after = rss_kib(d.proc.pid)
        print(f"\n1000 idle connections (max_connections={max_connections or 1024}): opened in {opened:.2f} s; "
              f"daemon RSS {before} KiB -> {after} KiB; a login (start, mail, callback, session) took {served_in:.2f} s")
        assert served_in < 5, f"the real client waited {served_in:.2f} s"
        closed = sum(1 for s in idle if is_closed(s, 0.0 if s is not idle[0] else 1.0))
        if max_connections == 100:
            # The newest stay; the oldest made room, one by one.
            assert closed >= 900, closed
            assert is_closed(idle[0]) and not is_closed(idle[-1])
            assert log_events(d, "connection_evicted"), d.log_tail()
        else:
            assert closed == 0, closed
        # A survivor is still served.
        idle[-1].sendall(b'{"id":5,"op":"hello"}\n')
        idle[-1].settimeout(5)
        assert b'"ok":true' in idle[-1].recv(65536)
        # SIGTERM closes the idle connections at once and exits cleanly.
        t0 = time.monotonic()
        d.stop()
        assert time.monotonic() - t0 < 5
        assert is_closed(idle[-1], 1.0)
    finally:
        for s in idle:
            s.close()


def test_the_connection_idle_longest_makes_room(daemon_factory):
    d = daemon_factory({"MAGICLINKD_MAX_CONNECTIONS": "3"})
    settle()
    # Idle since their last reply, which a request makes certain (accepting has no set order).
    a, b, c = d.client(), d.client(), d.client()
    try:
        for x in (a, b, c, a):
            ok(x.call("hello"))
            time.sleep(0.02)
        # b is now the one idle longest.
        with d.client() as newcomer:
            ok(newcomer.call("hello"))
        b.expect_closed(timeout=2)
        ok(a.call("hello"))
        ok(c.call("hello"))
    finally:
        for x in (a, b, c):
            x.close()


def fill_with_unread_replies(sock, n=4000):
    """Pipelines n hellos and reads nothing: the replies back up and the connection stays busy."""
    sock.sendall(b'{"op":"hello"}\n' * n)


def wait_backed_up(sock, timeout=10.0):
    """Until the replies waiting in the socket stop growing: the daemon can write no more."""
    deadline = time.monotonic() + timeout
    last = -1
    while True:
        waiting = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
        if waiting > 0 and waiting == last:
            return waiting
        assert time.monotonic() < deadline, f"replies still flowing ({waiting} bytes waiting)"
        last = waiting
        time.sleep(0.2)


def drain(sock, n):
    """Reads n reply lines."""
    sock.settimeout(10)
    buf = b""
    while buf.count(b"\n") < n:
        chunk = sock.recv(1 << 20)
        assert chunk, "closed while draining"
        buf += chunk
    return buf


def test_when_every_connection_is_busy_a_newcomer_gets_unavailable(daemon_factory):
    d = daemon_factory({"MAGICLINKD_MAX_CONNECTIONS": "3", "MAGICLINKD_REQUEST_TIMEOUT": "60"})
    settle()
    busy = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
    try:
        for s in busy:
            s.connect(str(d.socket_path))
            fill_with_unread_replies(s)
        for s in busy:
            wait_backed_up(s)
        with d.client() as newcomer:
            reply = newcomer.read_reply()  # said at once, before any request
            error = err(reply, "unavailable", reason="too_many_connections")
            assert error["retryable"] is True and reply["id"] is None
            validator("response.schema.json").validate(reply)
            newcomer.expect_closed()
        assert log_events(d, "connection_refused"), d.log_tail()
        # Once one reads its replies it is idle again, and makes room.
        drain(busy[0], 4000)
        time.sleep(0.1)
        with d.client() as newcomer:
            ok(newcomer.call("hello"))
        assert is_closed(busy[0], 2.0)
    finally:
        for s in busy:
            s.close()


# ------------------------------------------------------------------------------ timeouts


def test_a_slow_sender_is_cut_off_after_request_timeout_while_others_are_served(daemon_factory):
    d = daemon_factory({"MAGICLINKD_REQUEST_TIMEOUT": "1"})
    with d.client() as slow, d.client() as other, d.client() as dribbler:
        started = time.monotonic()
        slow.send(b'{"id":1,"op":"hel')
        dribbler.send(b"{")
        served = 0
        while time.monotonic() - started < 0.7:
            ok(other.call("hello"))
            served += 1
            dribbler.send(b" ")  # bytes keep coming, the line does not end
            time.sleep(0.05)
        assert served >= 3
        reply = slow.read_reply(timeout=3)
        elapsed = time.monotonic() - started
        err(reply, "invalid_request", reason="request_timeout", request_timeout_s=1)
        assert reply["id"] is None
        validator("response.schema.json").validate(reply)
        assert 0.9 <= elapsed < 4, elapsed
        slow.expect_closed()
        err(dribbler.read_reply(timeout=3), "invalid_request", reason="request_timeout")
        dribbler.expect_closed()
        ok(other.call("hello"))
    assert log_events(d, "request_timeout"), d.log_tail()


def test_requests_ahead_of_an_unfinished_line_are_answered_first(daemon_factory):
    d = daemon_factory({"MAGICLINKD_REQUEST_TIMEOUT": "1"})
    with d.client() as c:
        c.send(b"".join(c.request_line({"id": i, "op": "hello"}) for i in range(20)) + b'{"id":99,')
        replies = [c.read_reply() for _ in range(20)]
        assert [r["id"] for r in replies] == list(range(20))
        err(c.read_reply(timeout=3), "invalid_request", reason="request_timeout")
        c.expect_closed()


def test_a_client_that_does_not_read_its_replies_is_cut_off(daemon_factory):
    d = daemon_factory({"MAGICLINKD_REQUEST_TIMEOUT": "1"})
    hog = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        hog.connect(str(d.socket_path))
        fill_with_unread_replies(hog)
        with d.client() as other:
            ok(other.call("hello"))
        deadline = time.monotonic() + 6
        while not log_events(d, "write_timeout"):
            assert time.monotonic() < deadline, d.log_tail()
            time.sleep(0.05)
        # What was written before the cut can still be read; then the connection ends.
        hog.settimeout(5)
        received = b""
        while True:
            try:
                chunk = hog.recv(1 << 20)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        assert 0 < received.count(b"\n") < 4000
        ok(d.call("hello"))
    finally:
        hog.close()


def test_a_client_that_reads_slowly_but_steadily_is_not_cut_off(daemon_factory):
    """request_timeout limits how long the socket makes no progress, not how long a backlog of
    replies takes: a client that reads a little every 0.2 s keeps its connection however long
    its replies take in all, and gets every one of them in order."""
    d = daemon_factory({"MAGICLINKD_REQUEST_TIMEOUT": "1"})
    n = 12_000  # about 4.5 MB of replies: far more than the socket buffers hold
    payload = b"".join(b'{"id":%d,"op":"hello"}\n' % i for i in range(n))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.connect(str(d.socket_path))
    writer = threading.Thread(target=s.sendall, args=(payload,), daemon=True)
    writer.start()
    started = time.monotonic()
    received = b""
    try:
        while received.count(b"\n") < n:
            time.sleep(0.2)
            s.settimeout(2)
            chunk = s.recv(300_000)
            assert chunk, f"cut off after {len(received.splitlines())} replies and {time.monotonic() - started:.1f} s"
            received += chunk
    finally:
        s.close()
    assert time.monotonic() - started > 2.5, "the replies took longer than request_timeout in all"
    replies = [json.loads(line) for line in received.splitlines()]
    assert [r["id"] for r in replies] == list(range(n)) and all(r["ok"] for r in replies)
    assert not log_events(d, "write_timeout")
    writer.join(timeout=10)


def test_an_idle_connection_is_closed_after_idle_timeout(daemon_factory):
    d = daemon_factory({"MAGICLINKD_IDLE_TIMEOUT": "2"})
    with d.client() as used, d.client() as silent, d.client() as blank, d.client() as active:
        started = time.monotonic()
        ok(used.call("hello"))
        while time.monotonic() - started < 3.5:
            ok(active.call("hello"))  # a request every 0.3 s keeps it open
            blank.send(b"\n")  # blank lines are not requests
            time.sleep(0.3)
        used.expect_closed(timeout=1)
        silent.expect_closed(timeout=1)
        blank.expect_closed(timeout=1)
        ok(active.call("hello"))
    assert not log_events(d, "idle_timeout"), "idle closes are logged at debug level only"


def test_pipelined_requests_still_work(daemon_factory):
    d = daemon_factory({"MAGICLINKD_REQUEST_TIMEOUT": "1", "MAGICLINKD_IDLE_TIMEOUT": "2"})
    with d.client() as c:
        payload = b"".join(c.request_line({"id": i, "op": "hello"}) for i in range(500))
        c.send(payload[:7000])
        time.sleep(0.2)
        c.send(payload[7000:])
        replies = [c.read_reply() for _ in range(500)]
        assert [r["id"] for r in replies] == list(range(500))
        assert all(r["ok"] for r in replies)
        # Empty lines between requests get nothing and change nothing.
        assert [r["id"] for r in c.send_raw(b'\n{"id":"a","op":"hello"}\r\n\r\n{"id":"b","op":"hello"}\n')] == ["a", "b"]


def test_a_client_that_pipelines_without_reading_fills_its_own_buffers(daemon_factory):
    """Replies wait for the client to read them: the daemon stops answering (and reading) while
    the connection cannot take more, instead of piling replies up in memory."""
    d = daemon_factory()
    n = 60_000
    payload = b"".join(b'{"id":%d,"op":"hello"}\n' % i for i in range(n))  # 1.6 MB; replies 23 MB
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(d.socket_path))
    before = rss_kib(d.proc.pid)
    writer = threading.Thread(target=s.sendall, args=(payload,), daemon=True)
    writer.start()
    time.sleep(2.0)  # long enough to answer everything, were replies not held back
    grown = rss_kib(d.proc.pid) - before
    assert grown < 8 * 1024, f"daemon RSS grew by {grown} KiB while the client was not reading"
    # Now read: every reply arrives, in order, and the daemon carries on.
    f = s.makefile("rb")
    for i in range(n):
        reply = json.loads(f.readline())
        assert reply["id"] == i and reply["ok"], reply
    writer.join(timeout=30)
    s.close()
    with d.client() as c:
        ok(c.call("hello"))


# ------------------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    "key, value",
    [
        ("MAGICLINKD_MAX_CONNECTIONS", "0"),
        ("MAGICLINKD_MAX_CONNECTIONS", "-3"),
        ("MAGICLINKD_MAX_CONNECTIONS", "lots"),
        ("MAGICLINKD_MAX_CONNECTIONS", "100001"),
        ("MAGICLINKD_REQUEST_TIMEOUT", "0"),
        ("MAGICLINKD_REQUEST_TIMEOUT", "1.5"),
        ("MAGICLINKD_REQUEST_TIMEOUT", "soon"),
        ("MAGICLINKD_IDLE_TIMEOUT", "0"),
        ("MAGICLINKD_IDLE_TIMEOUT", "-1m"),
        ("MAGICLINKD_ALLOWED_UIDS", "www-data"),
        ("MAGICLINKD_ALLOWED_UIDS", "1000,-1"),
        ("MAGICLINKD_ALLOWED_UIDS", "65534"),
        ("MAGICLINKD_ALLOWED_GIDS", "33,65534"),
        ("MAGICLINKD_ALLOWED_GIDS", "4294967295"),
        ("MAGICLINKD_EVENT_LOOP_THREADS", "-1"),
        ("MAGICLINKD_EVENT_LOOP_THREADS", "257"),
        ("MAGICLINKD_EVENT_LOOP_THREADS", "two"),
    ],
)
def test_bad_connection_settings_are_refused_naming_the_key(key, value):
    r = run_cli(["check-config"], {key: value})
    assert r.returncode == 78, (key, value, r)
    assert key in r.stderr.decode(), r.stderr.decode()


def test_check_config_shows_the_connection_settings(tmp_path):
    cfg = tmp_path / "magiclinkd.yaml"
    cfg.write_text("allowed_uids: [33, 1000]\nallowed_gids:\n  - 33\nmax_connections: 500\nrequest_timeout: 5s\nidle_timeout: 2m\n")
    r = run_cli(["check-config", "--config", str(cfg)])
    assert r.returncode == 0, r
    out = r.stdout.decode()
    for expected in ["allowed_uids: 33,1000", "allowed_gids: 33", "max_connections: 500", "request_timeout: 5", "idle_timeout: 120"]:
        assert expected + "\n" in out, out
    r = run_cli(["check-config"])
    out = r.stdout.decode()
    for expected in ["allowed_uids: \n", "allowed_gids: \n", "max_connections: 1024", "request_timeout: 10", "idle_timeout: 300"]:
        assert expected in out, out


def serving_threads(pid: int) -> dict[str, int]:
    """The daemon's event loop threads (SwiftNIO names them NIO-ELT-<group>-#<n>; its shared
    group's are NIO-SGLTN-...), each with its time on a CPU so far in ns (schedstat)."""
    threads = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                ran = int(f.read().split()[0])
        except FileNotFoundError:
            continue
        if name.startswith("NIO-ELT-"):
            threads[task] = ran
    return threads


def test_event_loop_threads_sets_the_serving_threads_and_every_one_serves(daemon_factory):
    d = daemon_factory({"MAGICLINKD_EVENT_LOOP_THREADS": "3"})
    before = serving_threads(d.proc.pid)
    assert len(before) == 3, before
    # Connections are handed to the loops in turn: six connections, two on each loop, each
    # gets its own answers, and every loop spends time serving them.
    clients = [d.client() for _ in range(6)]
    try:
        logins = [d.login(unique_email(f"loops{i}"), c) for i, c in enumerate(clients)]
        mid = serving_threads(d.proc.pid)
        for _ in range(200):
            for c, login in zip(clients, logins):
                assert ok(c.call("session", {"session": login["session"]}))["user"]["id"] == login["user"]["id"]
    finally:
        for c in clients:
            c.close()
    after = serving_threads(d.proc.pid)
    assert after.keys() == before.keys(), (before, after)
    # Between the logins and the end, only the 1,200 session calls ran on the loops (each
    # takes tens of microseconds there); a loop that served none would have stood still.
    for task in after:
        assert after[task] - mid[task] > 1_000_000, ("a loop served nothing", mid, after)


def cgroup_cpu_quota_set() -> bool:
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            return f.read().split()[0] != "max"
    except (FileNotFoundError, IndexError):
        return False


def test_by_default_half_the_cores_serve(daemon_factory):
    d = daemon_factory({})
    with d.client() as c:
        ok(c.call("hello"))
    loops = len(serving_threads(d.proc.pid))
    cores = len(os.sched_getaffinity(0))
    if cgroup_cpu_quota_set():
        # NIO also honours a cgroup CPU quota, which can only make the cores fewer.
        assert 1 <= loops <= max(1, cores // 2), loops
    else:
        assert loops == max(1, cores // 2), (loops, cores)
    r = run_cli(["check-config"])
    assert "event_loop_threads: 0\n" in r.stdout.decode(), r
