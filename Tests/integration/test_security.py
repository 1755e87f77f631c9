"""File modes, secrets at rest and in logs, socket ownership, CLI and configuration."""

import os
import re
import sqlite3
import stat
import time

import pytest

from conftest import (
    DEFAULT_CALLBACK_URL,
    Client,
    b64url_decode,
    err,
    make_tempdir,
    ok,
    run_cli,
    sha256,
    unique_email,
)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# ------------------------------------------------------------------------------------ file modes


def test_socket_mode_default_0660(daemon):
    st = os.stat(daemon.socket_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660, oct(stat.S_IMODE(st.st_mode))


def test_socket_mode_configured_0600(daemon_factory):
    d = daemon_factory({"MAGICLINKD_SOCKET_MODE": "0600"})
    assert mode(d.socket_path) == 0o600, oct(mode(d.socket_path))


def test_database_and_key_file_modes(daemon):
    daemon.login(unique_email("modes"))
    assert mode(daemon.db_path) == 0o600, oct(mode(daemon.db_path))
    for suffix in ("-wal", "-shm"):
        p = daemon.db_path.with_name(daemon.db_path.name + suffix)
        if p.exists():
            assert mode(p) == 0o600, f"{p.name}: {oct(mode(p))}"
    assert daemon.key_path.is_file(), f"no key file at {daemon.key_path}"
    assert mode(daemon.key_path) == 0o600, oct(mode(daemon.key_path))
    assert daemon.key_path.stat().st_size == 32


def test_modes_hold_under_permissive_umask(daemon_factory):
    old = os.umask(0)
    try:
        d = daemon_factory()
    finally:
        os.umask(old)
    d.login(unique_email("umask"))
    assert mode(d.socket_path) == 0o660
    assert mode(d.db_path) == 0o600
    assert mode(d.key_path) == 0o600


# ------------------------------------------------------------------------------------ secrets


def test_no_secrets_at_rest_or_in_logs(daemon_factory):
    d = daemon_factory({"MAGICLINKD_LOG_LEVEL": "debug"})
    tokens, sessions = [], []
    with d.client() as c:
        for i in range(4):
            addr = unique_email("secret")
            ok(c.call("start", {"email": addr, "ip": "192.0.2.50", "user_agent": "pytest"}))
            _, token = d.wait_for_mail(addr)
            result = ok(c.call("callback", {"confirm": True, "token": token, "ip": "192.0.2.50"}))
            tokens.append(token)
            sessions.append(result["session"])
            ok(c.call("session", {"session": result["session"]}))
            err(c.call("callback", {"confirm": True, "token": token}), "invalid_token", reason="used")
        ok(c.call("logout", {"session": sessions[0]}))
        # an unused, still pending token too
        pending = unique_email("pending")
        ok(c.call("start", {"email": pending}))
        _, pending_token = d.wait_for_mail(pending)
        tokens.append(pending_token)
    d.stop()

    blobs = {}
    for suffix in ("", "-wal", "-shm"):
        p = d.db_path.with_name(d.db_path.name + suffix)
        if p.exists():
            blobs[p.name] = p.read_bytes()
    blobs["daemon output"] = d.log_path.read_bytes()
    assert d.db_path.name in blobs

    for kind, secret in [("token", t) for t in tokens] + [("session", s) for s in sessions]:
        raw = b64url_decode(secret)
        assert len(raw) == 32
        forms = {
            "base64url": secret.encode(),
            "raw bytes": raw,
            "hex": raw.hex().encode(),
        }
        for where, blob in blobs.items():
            for form, needle in forms.items():
                assert needle not in blob, f"a {kind} ({form}) appears in {where}"

    # proof that sessions are stored hashed: the SHA-256 digest of each session id is in
    # `sessions`. Section 6.4 does not say whether the hash input is the 43-character text or
    # the 32 decoded bytes, so either is accepted (exactly one row must match).
    conn = sqlite3.connect(f"file:{d.db_path}?mode=ro", uri=True)
    try:
        for s in sessions[1:]:  # sessions[0] was logged out (its row may be gone)
            n = conn.execute(
                "SELECT count(*) FROM sessions WHERE id_hash IN (?, ?)",
                (sha256(s.encode()), sha256(b64url_decode(s))),
            ).fetchone()[0]
            assert n == 1, "the SHA-256 of a session id is not in sessions.id_hash"
    finally:
        conn.close()


def test_error_messages_carry_no_secrets(daemon, client):
    result = daemon.login(unique_email("msg"))
    reply = client.call("callback", {"confirm": True, "token": result["token"]})
    err(reply, "invalid_token", reason="used")
    assert result["token"] not in reply["error"]["message"]
    reply = client.call("session", {"session": result["session"] + "x"})
    err(reply, "invalid_session")
    assert result["session"] not in reply["error"]["message"]


# ------------------------------------------------------------------------------------ socket ownership


def test_stale_socket_replaced_after_sigkill(daemon_factory):
    d = daemon_factory()
    d.kill()
    assert os.path.lexists(d.socket_path), "expected the SIGKILLed daemon to leave its socket file"
    with pytest.raises(OSError):
        Client(d.socket_path, timeout=1)
    d.start()
    ok(d.call("hello"))
    assert stat.S_ISSOCK(os.stat(d.socket_path).st_mode)


def test_regular_file_at_socket_path_refused(daemon_factory):
    d = daemon_factory(start=False)
    content = b"precious data, not a socket\n"
    d.socket_path.write_bytes(content)
    d.spawn()
    rc = d.wait_exit()
    assert rc != 0, f"daemon started over a regular file; output:\n{d.log_tail()}"
    assert d.socket_path.is_file() and not d.socket_path.is_socket()
    assert d.socket_path.read_bytes() == content
    assert d.log().strip(), "refusal without a message"


def test_second_instance_refused_while_first_serves(daemon_factory):
    first = daemon_factory()
    second = daemon_factory(
        {"MAGICLINKD_SOCKET": str(first.socket_path)},
        start=False,
    )
    with first.client() as c:
        ok(c.call("hello", id="before"))
        second.spawn()
        rc = second.wait_exit()
        assert rc != 0, f"second daemon did not refuse; output:\n{second.log_tail()}"
        # the existing connection and new connections still work
        ok(c.call("hello", id="after"))
    assert stat.S_ISSOCK(os.stat(first.socket_path).st_mode)
    ok(first.call("hello"))
    first.login(unique_email("first"))


def test_sigterm_with_open_connections_exits_0(daemon_factory):
    d = daemon_factory()
    idle = [d.client() for _ in range(3)]
    busy = d.client()
    try:
        ok(idle[0].call("hello"))
        busy.send(b'{"op":"hel')  # a request cut in the middle
        t0 = time.monotonic()
        d.stop()  # asserts exit status 0 within 10 s
        assert time.monotonic() - t0 < 10
    finally:
        for c in idle + [busy]:
            c.close()


def test_restart_after_sigterm_on_same_socket_path(daemon_factory):
    d = daemon_factory()
    d.stop()
    d.start()
    ok(d.call("hello"))


# ------------------------------------------------------------------------------------ CLI


def test_version():
    r = run_cli(["--version"])
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 0, out
    assert "magiclinkd" in out and re.search(r"\b\d+\.\d+\.\d+\b", out), out


def test_help_mentions_check_config():
    r = run_cli(["--help"])
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 0, out
    assert "check-config" in out, out


def test_check_config_good():
    r = run_cli(["check-config"], {"MAGICLINKD_TOKEN_TTL": "300"})
    assert r.returncode == 0, (r.stdout + r.stderr).decode()


@pytest.mark.parametrize(
    "key, value",
    [
        ("MAGICLINKD_TOKEN_TTL", "abc"),
        ("MAGICLINKD_TOKEN_TTL", "-5"),
        ("MAGICLINKD_SESSION_TTL", "1.5"),
        ("MAGICLINKD_MAX_LINE_BYTES", "lots"),
        ("MAGICLINKD_SOCKET_MODE", "0999"),
        ("MAGICLINKD_MAIL_TRANSPORT", "carrier-pigeon"),
        ("MAGICLINKD_LOG_LEVEL", "loud"),
        ("MAGICLINKD_CALLBACK_URL", "not a url"),
        ("MAGICLINKD_RATE_LIMIT_IP_MAX", "many"),
    ],
)
def test_check_config_bad_env_names_key(key, value):
    r = run_cli(["check-config"], {key: value})
    stderr = r.stderr.decode()
    assert r.returncode != 0, f"check-config accepted {key}={value}"
    assert key in stderr, stderr


def test_check_config_yaml_unknown_key(tmp_path):
    cfg = tmp_path / "magiclinkd.yaml"
    cfg.write_text("token_ttl: 300\ntokn_ttl: 5\n")
    r = run_cli(["check-config", "--config", str(cfg)])
    assert r.returncode != 0
    assert "tokn_ttl" in r.stderr.decode(), r.stderr.decode()


def test_check_config_yaml_good(tmp_path):
    cfg = tmp_path / "magiclinkd.yaml"
    cfg.write_text("token_ttl: 300\nsession_idle_ttl: 3600\napp_name: Test App\n")
    r = run_cli(["check-config", "--config", str(cfg)])
    assert r.returncode == 0, (r.stdout + r.stderr).decode()


def test_check_config_yaml_bad_value(tmp_path):
    cfg = tmp_path / "magiclinkd.yaml"
    cfg.write_text("token_ttl: abc\n")
    r = run_cli(["check-config", "--config", str(cfg)])
    assert r.returncode != 0
    assert "token_ttl" in r.stderr.decode(), r.stderr.decode()


def test_serving_with_bad_config_exits_naming_key(daemon_factory):
    d = daemon_factory({"MAGICLINKD_TOKEN_TTL": "abc"}, start=False)
    d.spawn()
    rc = d.wait_exit()
    assert rc != 0
    assert "MAGICLINKD_TOKEN_TTL" in d.log()
    assert not os.path.exists(d.socket_path)


def test_config_file_and_env_override(daemon_factory):
    tmp = make_tempdir("mld-cfg-")
    cfg = tmp / "magiclinkd.yaml"
    cfg.write_text("token_ttl: 100\n")
    d = daemon_factory(args=["--config", str(cfg)])
    t0 = time.time()
    exp = ok(d.call("start", {"email": unique_email("cfg")}))["expires_at"]
    assert abs(exp - (t0 + 100)) <= 3, "token_ttl from the config file"
    d.stop()
    d.env["MAGICLINKD_TOKEN_TTL"] = "200"
    d.start()
    t0 = time.time()
    exp = ok(d.call("start", {"email": unique_email("cfg")}))["expires_at"]
    assert abs(exp - (t0 + 200)) <= 3, "the environment overrides the config file"
    cfg.unlink()
    tmp.rmdir()


def test_serving_with_unknown_yaml_key_exits_naming_it(daemon_factory):
    tmp = make_tempdir("mld-cfg-")
    cfg = tmp / "magiclinkd.yaml"
    cfg.write_text("tokn_ttl: 5\n")
    d = daemon_factory(args=["--config", str(cfg)], start=False)
    d.spawn()
    assert d.wait_exit() != 0
    assert "tokn_ttl" in d.log()
    cfg.unlink()
    tmp.rmdir()


# ------------------------------------------------------------------------------------ dev mode


def test_log_transport_prints_link(daemon_factory):
    d = daemon_factory({"MAGICLINKD_MAIL_TRANSPORT": "log"})
    addr = unique_email("logmail")
    with d.client() as c:
        ok(c.call("start", {"email": addr}))
        deadline = time.time() + 10
        pattern = re.compile(re.escape(DEFAULT_CALLBACK_URL) + r"\?token=([A-Za-z0-9_-]{43})")
        m = None
        while time.time() < deadline:
            m = pattern.search(d.log())
            if m:
                break
            time.sleep(0.05)
        assert m, f"no link on stderr; output:\n{d.log_tail()}"
        ok(c.call("callback", {"confirm": True, "token": m.group(1)}))
    assert d.outbox.count() == 0


def test_no_configuration_at_all(daemon_factory):
    d = daemon_factory(defaults=False, start=False)
    assert not any(k.startswith("MAGICLINKD_") for k in d.env)
    d.start()
    sock = d.dir / "magiclinkd.sock"
    db = d.dir / "magiclinkd.sqlite"
    assert stat.S_ISSOCK(os.stat(sock).st_mode)
    assert mode(sock) == 0o660
    assert db.is_file() and mode(db) == 0o600
    key = d.dir / "magiclinkd.sqlite.key"
    assert key.is_file() and mode(key) == 0o600
    addr = unique_email("noenv")
    with Client(sock) as c:
        ok(c.call("start", {"email": addr}))
        _, token = d.wait_for_mail(addr)
        result = ok(c.call("callback", {"confirm": True, "token": token}))
    assert (d.dir / "outbox").is_dir()
    assert d.outbox.root == d.dir / "outbox"
    log = d.log()
    for name in ("magiclinkd.sock", "magiclinkd.sqlite", "outbox"):
        assert name in log, f"stderr does not mention {name}:\n{log}"
    assert "http://localhost:8080/auth/callback?token=" not in log, "the link must not be logged with the outbox transport"
