"""Delivery by SMTP to a real server (aiosmtpd): STARTTLS with a CA made for the run, AUTH,
implicit TLS, scripted 4xx/5xx replies, a server that is down, a daemon killed with mail queued,
and the refusals that must send nothing (no STARTTLS offered, untrusted certificate)."""

import os
import sqlite3
import time

import pytest

from conftest import err, ok, unique_email
from smtp_server import SMTP_PASSWORD, CertificateAuthority, SMTPServer, smtp_env


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return CertificateAuthority(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def password_file(tmp_path):
    path = tmp_path / "smtp_password"
    path.write_text(SMTP_PASSWORD + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def servers():
    made = []

    def make(ca, mode="starttls", auth=True, start=True):
        server = SMTPServer(ca, mode=mode, auth=auth)
        made.append(server)
        return server.start() if start else server

    yield make
    for server in made:
        server.stop()


def queue_rows(daemon):
    with sqlite3.connect(f"file:{daemon.db_path}?mode=ro", uri=True) as db:
        return db.execute("SELECT state, attempts, last_error, message_id FROM mail_queue").fetchall()


def token_in(text):
    import re

    match = re.search(r"https://app\.example\.com/auth/callback\?token=([A-Za-z0-9_-]{43})", text)
    assert match, text
    return match.group(1)


def test_starttls_auth_delivery_and_the_message(daemon_factory, servers, ca, password_file):
    smtp = servers(ca)
    d = daemon_factory(smtp_env(smtp, ca.ca_file, password_file, MAGICLINKD_APP_NAME="Café Crème"))
    addr = unique_email("smtp")
    start = ok(d.call("start", {"email": addr, "redirect": "/conta", "locale": "pt-BR"}))
    [received] = smtp.wait_for(1)

    assert received.tls and received.authenticated
    assert received.mail_from == "login@shop.example"
    assert received.rcpt_tos == [addr], "the envelope recipient is exactly the To address"
    assert smtp.handler.auth_attempts and all(tls for _, tls in smtp.handler.auth_attempts), "AUTH only inside TLS"

    msg = received.message
    assert not msg.defects, msg.defects
    assert [a.addr_spec for a in msg["To"].addresses] == [addr]
    assert msg["From"].addresses[0].addr_spec == "login@shop.example"
    assert msg["From"].addresses[0].display_name == "Example Shop"
    assert "Café Crème" in str(msg["Subject"]), "non-ASCII subject survives RFC 2047"
    assert msg["Message-ID"].strip("<>").endswith("@shop.example")
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Date"].datetime.timestamp() == pytest.approx(time.time(), abs=60)
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    token = token_in(text)
    assert token == token_in(html.replace("&amp;", "&"))
    for line in received.content.split(b"\r\n"):
        assert len(line) <= 998

    # The same address in English reads differently: the locale chose the words.
    english = unique_email("smtp-en")
    ok(d.call("start", {"email": english}))
    received_en = smtp.wait_for(2)[1]
    assert str(received_en.message["Subject"]) != str(msg["Subject"])
    assert "Use this link" in received_en.message.get_body(("plain",)).get_content()
    assert "Use this link" not in text

    login = ok(d.call("callback", {"confirm": True, "token": token}))
    assert login["redirect"] == "/conta"
    assert start["expires_at"] > time.time()


def test_implicit_tls(daemon_factory, servers, ca, password_file):
    smtp = servers(ca, mode="tls")
    d = daemon_factory(smtp_env(smtp, ca.ca_file, password_file))
    addr = unique_email("smtps")
    ok(d.call("start", {"email": addr}))
    [received] = smtp.wait_for(1)
    assert received.tls and received.authenticated and received.rcpt_tos == [addr]


def test_wrong_password_sends_nothing_and_mail_waits_for_the_fix(daemon_factory, servers, ca, tmp_path):
    smtp = servers(ca)
    bad = tmp_path / "bad_password"
    bad.write_text("not-the-password")
    # aiosmtpd never answers after a failed AUTH: a short reply timeout keeps the test quick.
    d = daemon_factory(smtp_env(smtp, ca.ca_file, bad, MAGICLINKD_SMTP_REPLY_TIMEOUT="2"))
    addr = unique_email("badpw")
    ok(d.call("start", {"email": addr}))
    smtp.settle(3)
    assert smtp.handler.received == [] and smtp.handler.mail_commands == []
    assert smtp.handler.auth_attempts, "the daemon tried to log in"
    assert "auth" in d.log().lower() or "timed out" in d.log().lower()
    assert SMTP_PASSWORD not in d.log() and "not-the-password" not in d.log()
    # The admin fixes the password file and restarts: the queued mail goes out.
    d.stop()
    bad.write_text(SMTP_PASSWORD)
    d.start()
    [received] = smtp.wait_for(1)
    assert received.rcpt_tos == [addr]


def test_transient_replies_then_accepted_delivers_once_with_one_message_id(daemon_factory, servers, ca, password_file):
    smtp = servers(ca)
    smtp.handler.rcpt_script = ["451 4.3.0 Try again later"]
    smtp.handler.data_script = ["421 4.3.2 Service shutting down"]
    d = daemon_factory(smtp_env(smtp, ca.ca_file, password_file))
    addr = unique_email("retry")
    ok(d.call("start", {"email": addr}))
    [received] = smtp.wait_for(1, timeout=30)
    smtp.settle(3)
    assert len(smtp.handler.received) == 1, "delivered exactly once"
    assert len(smtp.handler.data_attempts) == 2
    ids = {a.split(b"Message-ID:")[1].split(b"\r\n")[0].strip() for a in smtp.handler.data_attempts}
    assert len(ids) == 1, f"the Message-ID stays the same across retries: {ids}"
    [(state, attempts, _, _)] = queue_rows(d)
    assert state == "sent" and attempts == 3


def test_permanent_rejection_becomes_a_dead_letter_and_is_not_retried(daemon_factory, servers, ca, password_file):
    smtp = servers(ca)
    smtp.handler.rcpt_script = ["550 5.1.1 No such user here"]
    d = daemon_factory(smtp_env(smtp, ca.ca_file, password_file))
    addr = unique_email("dead")
    ok(d.call("start", {"email": addr}))
    smtp.settle(5)
    assert smtp.handler.received == []
    assert len(smtp.handler.mail_commands) == 1, "a 5xx is not retried"
    [(state, attempts, last_error, _)] = queue_rows(d)
    assert state == "failed" and attempts == 1
    assert "550" in last_error and "No such user" in last_error


def test_server_down_during_start_then_up(daemon_factory, servers, ca, password_file):
    smtp = servers(ca, start=False)
    d = daemon_factory(smtp_env(smtp, ca.ca_file, password_file))
    addr = unique_email("down")
    t0 = time.monotonic()
    ok(d.call("start", {"email": addr}))
    assert time.monotonic() - t0 < 1.0, "start never waits for the mail server"
    time.sleep(2)
    smtp.start()
    [received] = smtp.wait_for(1, timeout=20)
    assert received.rcpt_tos == [addr]


def test_killed_daemon_delivers_queued_mail_after_restart(daemon_factory, servers, ca, password_file):
    smtp = servers(ca, start=False)
    d = daemon_factory(smtp_env(smtp, ca.ca_file, password_file))
    addrs = [unique_email(f"kill{i}") for i in range(3)]
    for addr in addrs:
        ok(d.call("start", {"email": addr}))
    time.sleep(1.5)  # at least one failed attempt each, some maybe claimed right now
    d.kill()
    smtp.start()
    d.start()
    received = smtp.wait_for(3, timeout=20)
    smtp.settle(3)
    assert sorted(r.rcpt_tos[0] for r in smtp.handler.received) == sorted(addrs), "nothing lost, no duplicate"


def test_required_starttls_not_offered_sends_nothing(daemon_factory, servers, ca, password_file):
    smtp = servers(ca, mode="plain", auth=True)  # offers AUTH in the clear, no STARTTLS
    env = smtp_env(smtp, ca.ca_file, password_file, MAGICLINKD_SMTP_TLS="starttls")
    d = daemon_factory(env)
    ok(d.call("start", {"email": unique_email("nostarttls")}))
    smtp.settle(3)
    assert smtp.handler.auth_attempts == [], "no credentials leave without TLS"
    assert smtp.handler.mail_commands == [] and smtp.handler.received == []
    assert "starttls" in d.log().lower()


def test_untrusted_certificate_sends_nothing(daemon_factory, servers, ca, password_file, tmp_path):
    smtp = servers(ca)
    other = CertificateAuthority(tmp_path / "other", "some other CA")
    d = daemon_factory(smtp_env(smtp, other.ca_file, password_file))
    ok(d.call("start", {"email": unique_email("untrusted")}))
    smtp.settle(3)
    assert smtp.handler.auth_attempts == [] and smtp.handler.mail_commands == []
    assert smtp.handler.received == []


def test_expired_link_is_not_sent(daemon_factory, servers, ca, password_file):
    smtp = servers(ca, start=False)
    d = daemon_factory(smtp_env(smtp, ca.ca_file, password_file, MAGICLINKD_TOKEN_TTL="2"))
    ok(d.call("start", {"email": unique_email("late")}))
    time.sleep(3)
    smtp.start()
    smtp.settle(4)
    assert smtp.handler.received == []
    [(state, _, _, _)] = queue_rows(d)
    assert state in ("expired", "failed")


def test_full_queue_refuses_start_clearly(daemon_factory, servers, ca, password_file):
    smtp = servers(ca, start=False)
    d = daemon_factory(smtp_env(smtp, ca.ca_file, password_file, MAGICLINKD_MAIL_QUEUE_MAX="2"))
    ok(d.call("start", {"email": unique_email("q1")}))
    ok(d.call("start", {"email": unique_email("q2")}))
    reply = err(d.call("start", {"email": unique_email("q3")}), "unavailable", reason="mail_queue_full")
    assert reply["retryable"] is True
    assert "queue is full" in d.log().lower() or "queue full" in d.log().lower()


def test_smtp_requires_a_host(daemon_factory):
    from conftest import run_cli

    r = run_cli(["check-config"], {"MAGICLINKD_MAIL_TRANSPORT": "smtp"})
    assert r.returncode != 0
    assert b"smtp_host" in r.stderr or b"MAGICLINKD_SMTP_HOST" in r.stderr
