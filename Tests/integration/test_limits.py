"""Abuse limits of issue 6: the per-address cooldown and hourly cap, the daemon-wide send
budget, and the per-IP throttle of failed callback / verify_code / session calls."""

from __future__ import annotations

from conftest import err, ok, unique_email


def rate_limited(reply, at_most: int) -> int:
    error = err(reply, "rate_limited")
    retry = error["details"]["retry_after_s"]
    assert error["retryable"] is True and isinstance(retry, int) and 1 <= retry <= at_most, error
    return retry


def test_address_cooldown_by_default(daemon_factory):
    # The default configuration (no test override): 60 s between two starts for one address.
    d = daemon_factory({"MAGICLINKD_RATE_LIMIT_EMAIL_COOLDOWN": None})
    with d.client() as c:
        who = unique_email("cool")
        ok(c.call("start", {"email": who, "ip": "192.0.2.1"}))
        rate_limited(c.call("start", {"email": who.upper(), "ip": "192.0.2.2"}), 60)
        # Other addresses are not held back, and the refused request sent nothing.
        ok(c.call("start", {"email": unique_email("cool-other"), "ip": "192.0.2.1"}))
        d.wait_for_mail(who)
        assert sum(1 for r in d.outbox.recipients() if r.casefold() == who.casefold()) == 1


def test_hourly_cap_per_address(daemon_factory):
    d = daemon_factory({"MAGICLINKD_RATE_LIMIT_EMAIL_MAX": "3"})
    with d.client() as c:
        who = unique_email("cap")
        for _ in range(3):
            ok(c.call("start", {"email": who}))
        rate_limited(c.call("start", {"email": who}), 3600)


def test_global_send_budget_caps_all_addresses_and_ips(daemon_factory):
    d = daemon_factory({"MAGICLINKD_RATE_LIMIT_GLOBAL_MAX": "4", "MAGICLINKD_RATE_LIMIT_GLOBAL_WINDOW": "10m"})
    with d.client() as c:
        for i in range(4):
            ok(c.call("start", {"email": unique_email(f"budget{i}"), "ip": f"198.51.100.{i + 1}"}))
        rate_limited(c.call("start", {"email": unique_email("budget-x"), "ip": "198.51.100.99"}), 600)
        rate_limited(c.call("start", {"email": unique_email("budget-y")}), 600)
        # Refusals sent nothing.
        assert d.outbox.count() <= 4


def test_failed_logins_throttle_the_ip_for_logins_codes_and_sessions(daemon_factory):
    d = daemon_factory({"MAGICLINKD_RATE_LIMIT_FAILURES_MAX": "3", "MAGICLINKD_RATE_LIMIT_FAILURES_WINDOW": "5m"})
    with d.client() as c:
        login = d.login(unique_email("victim"), client=c)
        attacker = "203.0.113.66"
        err(c.call("callback", {"token": "A" * 43, "ip": attacker}), "invalid_token")
        err(c.call("verify_code", {"flow": "B" * 43, "code": "123456", "ip": attacker}), "invalid_token")
        err(c.call("session", {"session": "C" * 43, "ip": attacker}), "invalid_session")
        # Throttled now: logins and codes from that IP, right or wrong, and failed session checks.
        rate_limited(c.call("callback", {"token": "D" * 43, "ip": attacker}), 300)
        rate_limited(c.call("verify_code", {"flow": "E" * 43, "code": "123456", "ip": attacker}), 300)
        rate_limited(c.call("session", {"session": "G" * 43, "ip": attacker}), 300)
        # A valid session is still answered from that IP: a shared NAT must not sign everyone out.
        ok(c.call("session", {"session": login["session"], "ip": attacker}))
        # Other IPs and calls without an ip are not affected; the valid session still works.
        ok(c.call("session", {"session": login["session"], "ip": "192.0.2.77"}))
        ok(c.call("session", {"session": login["session"]}))
        # Successes and malformed requests do not count as failures.
        for _ in range(5):
            ok(c.call("session", {"session": login["session"], "ip": "192.0.2.78"}))
            err(c.call("verify_code", {"flow": "F" * 43, "code": "12", "ip": "192.0.2.78"}), "invalid_request")
        ok(c.call("session", {"session": login["session"], "ip": "192.0.2.78"}))


def test_failures_count_per_ipv6_64(daemon_factory):
    d = daemon_factory({"MAGICLINKD_RATE_LIMIT_FAILURES_MAX": "2"})
    with d.client() as c:
        err(c.call("session", {"session": "x", "ip": "2001:db8:1:2::1"}), "invalid_session")
        err(c.call("session", {"session": "x", "ip": "2001:db8:1:2:ffff::9"}), "invalid_session")
        rate_limited(c.call("session", {"session": "x", "ip": "2001:db8:1:2::abcd"}), 900)
        err(c.call("session", {"session": "x", "ip": "2001:db8:1:3::1"}), "invalid_session")


def test_limit_settings_are_validated(daemon_factory):
    from conftest import run_cli
    for key, value in [("RATE_LIMIT_EMAIL_COOLDOWN", "-1"), ("RATE_LIMIT_GLOBAL_MAX", "0"),
                       ("RATE_LIMIT_FAILURES_WINDOW", "0"), ("RATE_LIMIT_FAILURES_MAX", "lots")]:
        r = run_cli(["check-config"], env_extra={f"MAGICLINKD_{key}": value})
        assert r.returncode == 78 and key.lower().encode() in r.stderr, (key, r)
    r = run_cli(["check-config"], env_extra={"MAGICLINKD_RATE_LIMIT_EMAIL_COOLDOWN": "0"})
    assert r.returncode == 0, r
