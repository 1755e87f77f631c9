"""Regressions for defects found in review: each test failed before its fix."""

import os
import socket
import stat

from conftest import err, ok, unique_email


def test_half_closed_client_still_gets_its_replies(daemon):
    # What `echo '{…}' | socat - UNIX-CONNECT:…` and `nc -N` do: send, shut down writing, read.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(daemon.socket_path))
        s.sendall(b'{"id":1,"op":"hello"}\n{"id":2,"op":"nope"}\n{"id":3,"op":"hel')
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    lines = data.splitlines()
    assert len(lines) == 2, data  # the unterminated third line is not a request
    assert b'"id":1,"ok":true' in lines[0]
    assert b'"code":"unknown_op"' in lines[1]


def test_nul_inside_user_id_does_not_match_the_user(daemon):
    addr = unique_email("nul")
    login = daemon.login(addr)
    user_id = login["user"]["id"]
    r = ok(daemon.call("logout_all", {"user_id": user_id + "\u0000not-a-user"}))
    assert r == {"revoked": 0}
    ok(daemon.call("session", {"session": login["session"]}))


def test_kelvin_sign_is_not_kims_account(daemon):
    plain = unique_email("kim")
    kim = daemon.login(plain)
    lookalike = "\u212a" + plain[1:] if plain[0] == "k" else "\u212a" + plain
    other = daemon.login(lookalike)
    assert other["user"]["id"] != kim["user"]["id"]
    assert other["user"]["email"].startswith("\u212a")


def test_shutdown_leaves_a_newer_instances_socket_alone(daemon_factory):
    d = daemon_factory()
    path = str(d.socket_path)
    # Another instance took the path over (as one may while this one drains).
    os.rename(path, path + ".old")
    newer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    newer.bind(path)
    newer.listen(1)
    try:
        d.stop()
        assert stat.S_ISSOCK(os.stat(path).st_mode), "the newer socket must survive"
    finally:
        newer.close()
        os.unlink(path)

