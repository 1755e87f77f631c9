"""Logins that survive the real world (issue 6): the flow that binds a link to the browser that
asked for it, confirmation for links opened elsewhere, strict binding, scanner-safe `peek`, and
6-digit codes with their attempt limit. All against the real binary over its socket."""

from __future__ import annotations

import re

import pytest

from conftest import B64URL43_RE, err, ok, text_part, html_part, unique_email

CODE_RE = re.compile(r"(?<!\d)(\d{6})(?!\d)")


def start(client, email, **params):
    return ok(client.call("start", {"email": email, **params}))


def code_of(msg) -> str:
    codes = CODE_RE.findall(text_part(msg))
    assert len(codes) == 1, f"expected exactly one 6-digit code in:\n{text_part(msg)}"
    return codes[0]


def test_start_returns_a_flow_secret(daemon, client):
    result = start(client, unique_email("flow"))
    assert B64URL43_RE.match(result["flow"]), result
    assert result["flow"] != start(client, unique_email("flow2"))["flow"]


def test_same_browser_logs_in_directly(daemon, client):
    login = daemon.login(unique_email("same"), client=client)
    ok(client.call("session", {"session": login["session"]}))


def test_link_opened_elsewhere_needs_confirmation_and_stays_usable(daemon, client):
    who = unique_email("other-device")
    started = start(client, who)
    _, token = daemon.wait_for_mail(who)
    for flow in (None, "A" * 43, "not a flow", started["flow"][:-1] + ("A" if started["flow"][-1] != "A" else "B")):
        params = {"token": token} if flow is None else {"token": token, "flow": flow}
        error = err(client.call("callback", params), "confirmation_required")
        details = error["details"]
        assert details["email_masked"].endswith("@example.com") and "*" in details["email_masked"], details
        assert who.split("@")[0] not in details["email_masked"]
        assert isinstance(details["requested_at"], int) and details["requested_at"] <= started["expires_at"]
        assert error["retryable"] is False
    # Nothing was consumed: the owner can still confirm (or use the right flow).
    result = ok(client.call("callback", {"token": token, "confirm": True}))
    assert result["user"]["email"] == who
    err(client.call("callback", {"token": token, "confirm": True}), "invalid_token", reason="used")


def test_an_attackers_link_never_logs_the_victim_in_silently(daemon, client):
    # Login CSRF: the attacker starts a login for their own address and gets the victim's
    # browser to open the link. The victim's browser has its own flow (or none): no session.
    attacker = unique_email("attacker")
    start(client, attacker)
    _, token = daemon.wait_for_mail(attacker)
    victim_flow = start(client, unique_email("victim"))["flow"]
    reply = client.call("callback", {"token": token, "flow": victim_flow})
    err(reply, "confirmation_required")
    assert "result" not in reply
    # The victim's own browser has no valid session either.
    assert "session" not in str(reply)


def test_confirm_true_is_not_needed_and_harmless_with_the_right_flow(daemon, client):
    who = unique_email("both-flags")
    flow = start(client, who)["flow"]
    _, token = daemon.wait_for_mail(who)
    ok(client.call("callback", {"token": token, "flow": flow, "confirm": True}))


def test_token_errors_come_before_flow_checks(daemon, client):
    err(client.call("callback", {"token": "B" * 43, "flow": "C" * 43}), "invalid_token", reason="unknown")
    login = daemon.login(unique_email("used-first"), client=client)
    err(client.call("callback", {"token": login["token"]}), "invalid_token", reason="used")


@pytest.mark.parametrize("value", [1, "yes", [], {}])
def test_confirm_must_be_a_boolean(daemon, client, value):
    err(client.call("callback", {"token": "A" * 43, "confirm": value}), "invalid_request", field="params.confirm")


def test_strict_binding_refuses_other_browsers_even_when_confirmed(daemon_factory):
    d = daemon_factory({"MAGICLINKD_FLOW_BINDING": "strict"})
    with d.client() as c:
        who = unique_email("strict")
        flow = start(c, who)["flow"]
        _, token = d.wait_for_mail(who)
        err(c.call("callback", {"token": token}), "flow_mismatch")
        err(c.call("callback", {"token": token, "confirm": True}), "flow_mismatch")
        err(c.call("callback", {"token": token, "flow": "D" * 43, "confirm": True}), "flow_mismatch")
        # The browser that asked can still use it.
        ok(c.call("callback", {"token": token, "flow": flow}))


def test_flow_binding_is_checked_by_check_config(daemon_factory):
    from conftest import run_cli
    r = run_cli(["check-config"], env_extra={"MAGICLINKD_FLOW_BINDING": "lenient"})
    assert r.returncode == 78 and b"flow_binding" in r.stderr and b"confirm, strict" in r.stderr, r


# --- peek: scanner-safe links -------------------------------------------------------------


def test_a_scanner_peek_does_not_burn_the_link(daemon, client):
    who = unique_email("scanned")
    flow = start(client, who)["flow"]
    _, token = daemon.wait_for_mail(who)
    # Outlook Safe Links opens the link first: the app's GET page peeks (no flow: no cookie).
    for _ in range(3):
        seen = ok(client.call("peek", {"token": token}))
        assert seen["valid"] is True and seen["flow_matches"] is False, seen
        assert "reason" not in seen
        assert seen["email_masked"].endswith("@example.com") and "*" in seen["email_masked"]
    # The user's own browser: the GET page sees its flow and auto-submits; the POST logs in.
    mine = ok(client.call("peek", {"token": token, "flow": flow}))
    assert mine["valid"] is True and mine["flow_matches"] is True
    login = ok(client.call("callback", {"token": token, "flow": flow}))
    assert login["user"]["email"] == who
    after = ok(client.call("peek", {"token": token, "flow": flow}))
    assert after == {"valid": False, "reason": "used", "flow_matches": True,
                     "email_masked": mine["email_masked"], "expires_at": mine["expires_at"]}


def test_peek_of_unknown_and_replaced_links(daemon, client):
    assert ok(client.call("peek", {"token": "E" * 43})) == {"valid": False, "reason": "unknown", "flow_matches": False}
    assert ok(client.call("peek", {"token": "short", "flow": "x"})) == {"valid": False, "reason": "unknown", "flow_matches": False}
    who = unique_email("replaced")
    start(client, who)
    _, old = daemon.wait_for_mail(who)
    start(client, who)
    seen = ok(client.call("peek", {"token": old}))
    assert seen["valid"] is False and seen["reason"] == "expired"


def test_admin_status_counts_links_peeked_but_never_used(daemon_factory):
    d = daemon_factory()
    with d.client() as c:
        # One scanned link that nobody used (replaced by a newer start), one scanned then used.
        a = unique_email("scan-a")
        start(c, a)
        _, token_a = d.wait_for_mail(a)
        ok(c.call("peek", {"token": token_a}))
        start(c, a)
        b = unique_email("scan-b")
        flow_b = start(c, b)["flow"]
        _, token_b = d.wait_for_mail(b)
        ok(c.call("peek", {"token": token_b}))
        ok(c.call("callback", {"token": token_b, "flow": flow_b}))
        # An unpeeked used link counts nowhere.
        d.login(unique_email("plain"), client=c)
        links = ok(c.call("admin_status"))["links"]
        assert links == {"peeked_never_used": 1, "peeked_then_used": 1}, links


# --- codes ------------------------------------------------------------------------------


def test_code_only_mail_has_a_code_and_no_link(daemon, client):
    who = unique_email("code-only")
    flow = start(client, who, send="code")["flow"]
    msg, token = daemon.wait_for_mail(who, link=False)
    assert token is None
    assert "token=" not in text_part(msg) and "href=" not in html_part(msg)
    code = code_of(msg)
    assert code in html_part(msg)
    assert code not in str(msg["Subject"]), "codes stay out of subjects (lock screens show them)"
    login = ok(client.call("verify_code", {"flow": flow, "code": code}))
    assert login["user"]["email"] == who and B64URL43_RE.match(login["session"])
    ok(client.call("session", {"session": login["session"]}))
    # Used once: the same code again is a used login.
    err(client.call("verify_code", {"flow": flow, "code": code}), "invalid_token", reason="used")


def test_both_link_and_code_each_work_once(daemon, client):
    who = unique_email("both")
    flow = start(client, who, send="both", redirect="/welcome")["flow"]
    msg, token = daemon.wait_for_mail(who)
    code = code_of(msg)
    assert ok(client.call("verify_code", {"flow": flow, "code": f"{code[:3]} {code[3:]}"}))["redirect"] == "/welcome"
    # The code consumed the flow's token: the link is used now too.
    err(client.call("callback", {"token": token, "flow": flow}), "invalid_token", reason="used")

    who2 = unique_email("both2")
    flow2 = start(client, who2, send="both")["flow"]
    msg2, token2 = daemon.wait_for_mail(who2)
    ok(client.call("callback", {"token": token2, "flow": flow2}))
    err(client.call("verify_code", {"flow": flow2, "code": code_of(msg2)}), "invalid_token", reason="used")


def test_three_wrong_codes_kill_the_code_but_not_the_link(daemon, client):
    who = unique_email("guess")
    flow = start(client, who, send="both")["flow"]
    msg, token = daemon.wait_for_mail(who)
    code = code_of(msg)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for left in (2, 1, 0):
        error = err(client.call("verify_code", {"flow": flow, "code": wrong}), "invalid_code", attempts_left=left)
        assert error["retryable"] is False
    # Dead: even the right code is refused now.
    err(client.call("verify_code", {"flow": flow, "code": code}), "invalid_code", attempts_left=0)
    # The link (256 bits, not guessable) still works in the browser that asked.
    ok(client.call("callback", {"token": token, "flow": flow}))


def test_malformed_codes_are_refused_without_costing_an_attempt(daemon, client):
    who = unique_email("typo")
    flow = start(client, who, send="code")["flow"]
    msg, _ = daemon.wait_for_mail(who, link=False)
    for bad in ["12345", "1234567", "abcdef", "", "12 34 5", "١٢٣٤٥٦"]:
        err(client.call("verify_code", {"flow": flow, "code": bad}), "invalid_request", field="params.code")
    ok(client.call("verify_code", {"flow": flow, "code": code_of(msg)}))


def test_a_code_only_counts_with_its_own_flow(daemon, client):
    a, b = unique_email("flow-a"), unique_email("flow-b")
    flow_a = start(client, a, send="code")["flow"]
    flow_b = start(client, b, send="code")["flow"]
    code_a = code_of(daemon.wait_for_mail(a, link=False)[0])
    code_b = code_of(daemon.wait_for_mail(b, link=False)[0])
    if code_a != code_b:
        # A's code in B's flow is just a wrong code for B (and costs B an attempt).
        err(client.call("verify_code", {"flow": flow_b, "code": code_a}), "invalid_code", attempts_left=2)
    err(client.call("verify_code", {"flow": "F" * 43, "code": code_a}), "invalid_token", reason="unknown")
    err(client.call("verify_code", {"flow": "not-a-flow", "code": code_a}), "invalid_token", reason="unknown")
    assert ok(client.call("verify_code", {"flow": flow_a, "code": code_a}))["user"]["email"] == a
    assert ok(client.call("verify_code", {"flow": flow_b, "code": code_b}))["user"]["email"] == b


def test_a_new_start_starts_a_new_flow(daemon, client):
    who = unique_email("restart-flow")
    first = start(client, who, send="code")["flow"]
    old_code = code_of(daemon.wait_for_mail(who, link=False)[0])
    second = start(client, who, send="code")["flow"]
    new_code = code_of(daemon.wait_for_mail(who, link=False)[0])
    err(client.call("verify_code", {"flow": first, "code": old_code}), "invalid_token", reason="expired")
    ok(client.call("verify_code", {"flow": second, "code": new_code}))


def test_a_link_only_flow_has_no_code(daemon, client):
    who = unique_email("no-code")
    flow = start(client, who)["flow"]
    daemon.wait_for_mail(who)
    err(client.call("verify_code", {"flow": flow, "code": "123456"}), "invalid_code", attempts_left=0)


def test_wrong_code_count_survives_a_restart(daemon_factory):
    d = daemon_factory()
    who = unique_email("durable-guess")
    with d.client() as c:
        flow = start(c, who, send="code")["flow"]
        code = code_of(d.wait_for_mail(who, link=False)[0])
        wrong = f"{(int(code) + 7) % 1_000_000:06d}"
        err(c.call("verify_code", {"flow": flow, "code": wrong}), "invalid_code", attempts_left=2)
        err(c.call("verify_code", {"flow": flow, "code": wrong}), "invalid_code", attempts_left=1)
    d.restart(hard=True)
    with d.client() as c:
        err(c.call("verify_code", {"flow": flow, "code": wrong}), "invalid_code", attempts_left=0)
        err(c.call("verify_code", {"flow": flow, "code": code}), "invalid_code", attempts_left=0)


def test_codes_and_flows_are_never_stored_or_logged_in_the_clear(daemon_factory):
    d = daemon_factory()
    who = unique_email("secret-code")
    with d.client() as c:
        flow = start(c, who, send="both")["flow"]
        msg, token = d.wait_for_mail(who)
        code = code_of(msg)
        err(c.call("verify_code", {"flow": flow, "code": f"{(int(code) + 1) % 1_000_000:06d}"}), "invalid_code")
        ok(c.call("verify_code", {"flow": flow, "code": code}))
    d.stop()
    stored = b"".join(p.read_bytes() for p in d.dir.glob("magiclinkd.sqlite*"))
    for secret in (flow, token):
        assert secret.encode() not in stored
    assert f"{flow}:{code}".encode() not in stored
    log = d.log()
    for secret in (flow, token, code):
        assert secret not in log


def test_start_send_must_be_link_code_or_both(daemon, client):
    for bad in ["email", "LINK", "", 1, True]:
        err(client.call("start", {"email": unique_email("send"), "send": bad}), "invalid_request", field="params.send")


def test_codes_look_uniform(daemon_factory):
    # Not a statistics suite: a cheap guard against a constant, truncated or biased generator.
    d = daemon_factory({"MAGICLINKD_RATE_LIMIT_EMAIL_MAX": "1000", "MAGICLINKD_RATE_LIMIT_IP_MAX": "1000"})
    codes = []
    with d.client() as c:
        for i in range(40):
            who = unique_email(f"dist{i}")
            start(c, who, send="code")
            codes.append(code_of(d.wait_for_mail(who, link=False)[0]))
    assert len(set(codes)) >= 38, codes
    first_digits = {c[0] for c in codes}
    assert len(first_digits) >= 5, codes  # leading zeros kept, all ranges reached
