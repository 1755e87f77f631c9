"""One Client shared by threads (calls serialise on its lock) and across os.fork() (the child
opens its own connection and never touches the parent's)."""

from __future__ import annotations

import os
import signal
import threading
import traceback
from typing import Callable, Dict, List

from mld_support import Daemon, daemon, unique_email  # noqa: F401
from mld_support import sign_in as support_sign_in

from magiclinkd import Client, Login

THREADS = 8
CALLS = 30


def sign_in(daemon: Daemon, c: Client, tag: str, ip: str) -> Login:
    return support_sign_in(daemon, c, unique_email(tag), ip=ip)


def test_threads_share_one_client(daemon: Daemon) -> None:
    with Client(daemon.socket) as c:
        logins = [sign_in(daemon, c, f"thread{i}", f"192.0.2.{100 + i}") for i in range(THREADS)]
        conn = c._conn
        errors: List[str] = []
        seen: Dict[int, int] = {}
        barrier = threading.Barrier(THREADS)

        def work(i: int) -> None:
            try:
                barrier.wait(10)
                for k in range(CALLS):
                    # Each thread checks that it gets its own user back: a reply going to the
                    # wrong caller would show up here.
                    info = c.session(logins[i].session)
                    assert info.user == logins[i].user, f"thread {i} got {info.user}"
                    if k % 5 == 0:
                        assert c.hello().server == "magiclinkd"
                seen[i] = CALLS
            except Exception:
                errors.append(traceback.format_exc())

        threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a thread hung"
        assert not errors, errors[0]
        assert seen == {i: CALLS for i in range(THREADS)}
        assert c._conn is conn, "one connection for all the threads"


def run_in_child(body: Callable[[], None]) -> int:
    """Fork; run ``body`` in the child under a 20 s alarm; return the child's exit status."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read_end)
        code = 0
        try:
            signal.alarm(20)
            body()
        except BaseException:
            os.write(write_end, traceback.format_exc().encode())
            code = 1
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as r:
        report = r.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), f"child died: {status}"
    assert os.WEXITSTATUS(status) == 0, f"child failed:\n{report}"
    return os.WEXITSTATUS(status)


def test_fork_child_opens_its_own_connection(daemon: Daemon) -> None:
    with Client(daemon.socket) as c:
        login = sign_in(daemon, c, "fork", "192.0.2.200")
        parent_conn = c._conn
        assert parent_conn is not None
        parent_fd = parent_conn.sock.fileno()

        def child() -> None:
            assert c._conn is parent_conn and c._conn.pid != os.getpid()
            for _ in range(10):
                assert c.session(login.session).user == login.user
            assert c._conn is not parent_conn and c._conn.pid == os.getpid()
            c.close()

        run_in_child(child)
        # The parent's connection was neither used nor shut down by the child.
        assert c._conn is parent_conn and parent_conn.sock.fileno() == parent_fd
        assert parent_conn.is_idle_and_open()
        assert c.session(login.session).user == login.user
        assert c._conn is parent_conn


def test_parent_and_child_call_at_the_same_time(daemon: Daemon) -> None:
    with Client(daemon.socket) as c:
        login = sign_in(daemon, c, "forkboth", "192.0.2.201")
        go_r, go_w = os.pipe()

        def child() -> None:
            os.read(go_r, 1)
            for _ in range(50):
                assert c.session(login.session).user == login.user
                assert c.hello().server == "magiclinkd"

        result: List[int] = []
        t = threading.Thread(target=lambda: result.append(run_in_child(child)))
        t.start()
        os.write(go_w, b"x")
        for _ in range(50):
            assert c.session(login.session).user == login.user
            assert c.hello().server == "magiclinkd"
        t.join(60)
        assert result == [0]
        os.close(go_r)
        os.close(go_w)


def test_fork_while_another_thread_holds_the_lock(daemon: Daemon) -> None:
    with Client(daemon.socket) as c:
        c.hello()
        holding = threading.Event()
        release = threading.Event()

        def hold() -> None:
            with c._lock:
                holding.set()
                release.wait(30)

        holder = threading.Thread(target=hold)
        holder.start()
        assert holding.wait(10)
        try:
            # In the child the holder thread does not exist: the lock must not stay taken.
            run_in_child(lambda: None if c.hello().server == "magiclinkd" else os._exit(3))
        finally:
            release.set()
            holder.join(10)
        assert c.hello().server == "magiclinkd"


def test_close_in_the_child_does_not_end_the_parents_connection(daemon: Daemon) -> None:
    with Client(daemon.socket) as c:
        c.hello()
        conn = c._conn
        run_in_child(c.close)
        assert c._conn is conn and conn is not None and conn.is_idle_and_open()
        assert c.hello().server == "magiclinkd" and c._conn is conn


_inherited: List[Client] = []


def _hello_in_worker(_: int) -> str:
    return _inherited[0].hello().server


def test_multiprocessing_fork_pool_workers_use_the_inherited_client(daemon: Daemon) -> None:
    import multiprocessing

    with Client(daemon.socket) as c:
        c.hello()  # connected before the workers are forked
        _inherited[:] = [c]
        try:
            with multiprocessing.get_context("fork").Pool(2) as pool:
                assert pool.map(_hello_in_worker, range(6), chunksize=1) == ["magiclinkd"] * 6
        finally:
            _inherited.clear()
        assert c.hello().server == "magiclinkd"
