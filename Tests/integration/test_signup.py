"""Signup policies (issue 6): open, domains, existing. A refused address must be
indistinguishable on the wire from an accepted one, and must get no mail."""

from __future__ import annotations

import json
import os
import re
import subprocess

from conftest import clean_env, err, ok, require_binary, run_cli, unique_email


def normalized_reply_bytes(client, email: str) -> bytes:
    """The raw reply line of a start, with the random flow and the clock-dependent expiry
    replaced, so that two replies can be compared byte for byte."""
    client.send(json.dumps({"id": 5, "op": "start", "params": {"email": email, "send": "both"}}).encode() + b"\n")
    line = client.read_line()
    line = re.sub(rb'"flow":"[A-Za-z0-9_-]{43}"', b'"flow":"FLOW"', line)
    return re.sub(rb'"expires_at":\d+', b'"expires_at":0', line)


def test_domains_policy_refuses_other_domains_without_telling(daemon_factory):
    d = daemon_factory({"MAGICLINKD_SIGNUP": "domains", "MAGICLINKD_SIGNUP_DOMAINS": "example.com, BÜCHER.example"})
    with d.client() as c:
        allowed = unique_email("staff", "example.com")
        refused = unique_email("outsider", "example.org")
        assert normalized_reply_bytes(c, allowed) == normalized_reply_bytes(c, refused)
        d.wait_for_mail(allowed)
        # IDNA: the listed domain matches its punycode form.
        idn = unique_email("leser", "bücher.example")
        ok(c.call("start", {"email": idn}))
        d.wait_for_mail(idn.replace("bücher.example", "xn--bcher-kva.example"))
        # The refused one got nothing, and its flow behaves like a real one's.
        d.outbox.assert_no_mail_for([refused])
        flow = ok(c.call("start", {"email": unique_email("other", "example.net"), "send": "code"}))["flow"]
        err(c.call("verify_code", {"flow": flow, "code": "123456"}), "invalid_code", attempts_left=2)
    assert "signup_policy" in d.log() and refused not in d.log()


def test_refused_addresses_count_against_the_same_limits(daemon_factory):
    d = daemon_factory({"MAGICLINKD_SIGNUP": "existing", "MAGICLINKD_RATE_LIMIT_EMAIL_MAX": "2"})
    with d.client() as c:
        nobody = unique_email("nobody")
        ok(c.call("start", {"email": nobody}))
        ok(c.call("start", {"email": nobody}))
        err(c.call("start", {"email": nobody}), "rate_limited")
    d.outbox.assert_no_mail_for([nobody])


def test_existing_policy_mails_only_users_created_by_an_admin(daemon_factory):
    d = daemon_factory({"MAGICLINKD_SIGNUP": "existing"})
    member = unique_email("member")
    stranger = unique_email("stranger")
    with d.client() as c:
        assert normalized_reply_bytes(c, member) == normalized_reply_bytes(c, stranger)
        d.outbox.assert_no_mail_for([member, stranger])
        created = ok(c.call("admin_create_user", {"email": member}))
        assert created["created"] is True and created["user"]["email"] == member
        again = ok(c.call("admin_create_user", {"email": member.upper()}))
        assert again == {"user": created["user"], "created": False}
        login = d.login(member, client=c)
        assert login["user"]["id"] == created["user"]["id"], "the login uses the pre-created user"
        err(c.call("admin_create_user", {"email": "not an address"}), "invalid_email")
    d.outbox.assert_no_mail_for([stranger])


def test_admin_create_user_needs_an_administrator(daemon_factory):
    d = daemon_factory({"MAGICLINKD_SOCKET_MODE": "0666"})
    os.chmod(d.dir, 0o711)  # let "nobody" reach the socket; the admin check is the daemon's
    env = clean_env({"MAGICLINKD_SOCKET": str(d.socket_path)})
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        str(require_binary()), "add-user", unique_email("sneaky")], env=env, capture_output=True, timeout=15)
    assert r.returncode == 77 and b"permission_denied" in r.stderr, r
    assert ok(d.call("admin_status"))["users"] == 0


def test_add_user_cli(daemon_factory):
    d = daemon_factory({"MAGICLINKD_SIGNUP": "existing"})
    env = clean_env({"MAGICLINKD_SOCKET": str(d.socket_path)})
    who = unique_email("cli-user")
    r = subprocess.run([str(require_binary()), "add-user", who], env=env, capture_output=True, text=True, timeout=15)
    assert r.returncode == 0 and r.stdout.startswith("created: " + who), r
    r = subprocess.run([str(require_binary()), "add-user", who, "--json"], env=env, capture_output=True, text=True, timeout=15)
    assert r.returncode == 0 and json.loads(r.stdout)["created"] is False, r
    d.login(who)


def test_signup_settings_are_checked(daemon_factory):
    r = run_cli(["check-config"], env_extra={"MAGICLINKD_SIGNUP": "domains"})
    assert r.returncode == 78 and b"signup_domains" in r.stderr, r
    r = run_cli(["check-config"], env_extra={"MAGICLINKD_SIGNUP": "invite"})
    assert r.returncode == 78 and b"open, domains, existing" in r.stderr, r
    r = run_cli(["check-config"], env_extra={"MAGICLINKD_SIGNUP": "domains", "MAGICLINKD_SIGNUP_DOMAINS": "not a domain!"})
    assert r.returncode == 78 and b"signup_domains" in r.stderr, r


def test_superseded_flows_do_not_tell_members_from_strangers(daemon_factory):
    # A second start replaces the first flow for members and strangers alike: verify_code on the
    # first flow answers the same for both (a review found strangers' first flows left alive).
    d = daemon_factory({"MAGICLINKD_SIGNUP": "existing"})
    member, stranger = unique_email("m"), unique_email("s")
    with d.client() as c:
        ok(c.call("admin_create_user", {"email": member}))
        answers = {}
        for who in (member, stranger):
            first = ok(c.call("start", {"email": who, "send": "code"}))["flow"]
            ok(c.call("start", {"email": who, "send": "code"}))
            reply = c.call("verify_code", {"flow": first, "code": "000000"})
            answers[who] = (reply["error"]["code"], reply["error"]["details"])
        assert answers[member] == answers[stranger] == ("invalid_token", {"reason": "expired"}), answers
