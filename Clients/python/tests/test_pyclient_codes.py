"""The browser-bound flow: confirmation for links opened elsewhere, strict binding, peek, and
6-digit codes (verify_code), against a real daemon."""

from __future__ import annotations

from typing import Iterator

import pytest

from mld_support import Daemon, client, daemon, unique_email  # noqa: F401

import magiclinkd
from magiclinkd import Client


def test_link_opened_without_its_flow_needs_confirmation(daemon: Daemon, client: Client) -> None:
    who = unique_email("elsewhere")
    started = client.start(who, ip="192.0.2.70")
    token = daemon.wait_for_token(who)
    for flow in (None, "A" * 43):
        with pytest.raises(magiclinkd.ConfirmationRequired) as caught:
            client.callback(token, flow=flow)
        e = caught.value
        assert e.code == "confirmation_required" and not e.retryable
        assert e.email_masked and "*" in e.email_masked and e.email_masked.endswith("@example.com")
        assert isinstance(e.requested_at, int) and e.requested_at <= started.expires_at
    # Nothing was used: the user confirms.
    login = client.callback(token, confirm=True, ip="192.0.2.70")
    assert login.user.email == who
    with pytest.raises(magiclinkd.InvalidToken) as used:
        client.callback(token, confirm=True)
    assert used.value.reason == "used"


@pytest.fixture(scope="module")
def strict_daemon() -> Iterator[Daemon]:
    d = Daemon(flow_binding="strict")
    try:
        d.start()
        yield d
        d.stop()
    finally:
        d.cleanup()


def test_strict_binding_raises_flow_mismatch(strict_daemon: Daemon) -> None:
    with Client(strict_daemon.socket) as c:
        who = unique_email("strict")
        flow = c.start(who).flow
        token = strict_daemon.wait_for_token(who)
        with pytest.raises(magiclinkd.FlowMismatch):
            c.callback(token, confirm=True)
        assert c.callback(token, flow=flow).user.email == who


def test_peek_does_not_use_the_link(daemon: Daemon, client: Client) -> None:
    assert client.peek("E" * 43) == magiclinkd.PeekResult(valid=False, flow_matches=False, reason="unknown")
    who = unique_email("peek")
    flow = client.start(who, ip="192.0.2.71").flow
    token = daemon.wait_for_token(who)
    scanner = client.peek(token)
    assert scanner.valid and not scanner.flow_matches and scanner.reason is None
    assert scanner.email_masked and "*" in scanner.email_masked and scanner.expires_at
    mine = client.peek(token, flow=flow)
    assert mine.valid and mine.flow_matches
    client.callback(token, flow=flow)
    after = client.peek(token, flow=flow)
    assert not after.valid and after.reason == "used" and after.flow_matches
    links = client.admin_status().links
    assert isinstance(links, magiclinkd.LinkCounts) and links.peeked_then_used >= 1


def test_codes(daemon: Daemon, client: Client) -> None:
    who = unique_email("code")
    flow = client.start(who, send="code", redirect="/account", ip="192.0.2.72").flow
    assert flow
    code = daemon.wait_for_code(who)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    with pytest.raises(magiclinkd.InvalidCode) as caught:
        client.verify_code(flow, wrong)
    assert caught.value.attempts_left == 2 and code not in str(caught.value) and wrong not in str(caught.value)
    with pytest.raises(magiclinkd.InvalidRequest) as typo:
        client.verify_code(flow, "12345")
    assert typo.value.field == "params.code"
    login = client.verify_code(flow, f"{code[:3]}-{code[3:]}", ip="192.0.2.72", user_agent="pytest/1.0")
    assert login.user.email == who and login.redirect == "/account"
    assert client.session(login.session).user == login.user
    with pytest.raises(magiclinkd.InvalidToken) as used:
        client.verify_code(flow, code)
    assert used.value.reason == "used"


def test_three_wrong_codes_kill_the_code(daemon: Daemon, client: Client) -> None:
    who = unique_email("guess")
    flow = client.start(who, send="both", ip="192.0.2.73").flow
    assert flow
    text_code = daemon.wait_for_code(who)
    wrong = f"{(int(text_code) + 5) % 1_000_000:06d}"
    left = []
    for _ in range(3):
        with pytest.raises(magiclinkd.InvalidCode) as caught:
            client.verify_code(flow, wrong)
        left.append(caught.value.attempts_left)
    assert left == [2, 1, 0]
    with pytest.raises(magiclinkd.InvalidCode) as dead:
        client.verify_code(flow, text_code)
    assert dead.value.attempts_left == 0


def test_send_must_be_link_code_or_both(client: Client) -> None:
    with pytest.raises(magiclinkd.InvalidRequest) as bad:
        client.start(unique_email("send"), send="sms")
    assert bad.value.field == "params.send"
