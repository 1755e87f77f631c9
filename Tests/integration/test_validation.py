"""Input rules of Protocol/README.md section 6: addresses, redirects, rate limits, ip."""

import time
import uuid

import pytest

from conftest import serve_daemon, err, ok, raw_header, recipient, unique_email


def u() -> str:
    return uuid.uuid4().hex[:12]


# Hostile or malformed addresses (JSON-escaped by json.dumps when sent). Each must be refused
# with invalid_email, and no mail may be written for any of them.
HOSTILE_EMAILS = {
    "crlf-header-injection": "a@b.com\r\nBcc: evil@x.com",
    "lf-header-injection": "a@b.com\nBcc: evil@x.com",
    "nul": "a@b.com\u0000",
    "nul-inside": "al\u0000ice@example.com",
    "display-name": "Alice <alice@example.com>",
    "quoted-display-name": '"Alice" <alice@example.com>',
    "angle-brackets": "<alice@example.com>",
    "list-comma": "alice@example.com, bob@example.com",
    "list-comma-nospace": "alice@example.com,bob@example.com",
    "list-semicolon": "alice@example.com;bob@example.com",
    "group": "friends: alice@example.com, bob@example.com;",
    "empty-group": "undisclosed-recipients:;",
    "quoted-local": '"alice"@example.com',
    "quoted-local-space": '"a b"@example.com',
    "quoted-local-at": '"a@b"@example.com',
    "comment-after": "alice@example.com (Alice)",
    "comment-in-local": "alice(comment)@example.com",
    "ip-literal": "alice@[127.0.0.1]",
    "ipv6-literal": "alice@[IPv6:::1]",
    "numeric-tld": "alice@127.0.0.1",
    "single-label": "alice@localhost",
    "leading-dot": ".alice@example.com",
    "trailing-dot-local": "alice.@example.com",
    "double-dot-local": "al..ice@example.com",
    "local-65-bytes": "a" * 65 + "@example.com",
    "domain-label-64": "alice@" + "a" * 64 + ".com",
    "domain-leading-hyphen": "alice@-example.com",
    "domain-trailing-hyphen": "alice@example-.com",
    "domain-underscore": "alice@exa_mple.com",
    "domain-double-dot": "alice@example..com",
    "domain-leading-dot": "alice@.example.com",
    "domain-trailing-dot": "alice@example.com.",
    "too-long-address": "a" * 64 + "@" + ".".join(["b" * 63] * 3) + ".com",
    "empty": "",
    "no-at": "alice.example.com",
    "no-local": "@example.com",
    "no-domain": "alice@",
    "two-ats": "alice@@example.com",
    "at-in-local": "a@b@example.com",
    "leading-space": " alice@example.com",
    "trailing-space": "alice@example.com ",
    "inner-space": "alice @example.com",
    "tab": "alice\t@example.com",
    "trailing-newline": "alice@example.com\n",
    "del": "ali\u007fce@example.com",
    "c1-control": "ali\u0085ce@example.com",
    "backslash": "ali\\ce@example.com",
    "mailto": "mailto:alice@example.com",
}


@pytest.mark.parametrize("addr", list(HOSTILE_EMAILS.values()), ids=list(HOSTILE_EMAILS))
def test_hostile_email_refused(daemon, client, addr):
    before = daemon.outbox.count()
    reply = client.call("start", {"email": addr})
    err(reply, "invalid_email")
    assert daemon.outbox.count() == before


def test_no_mail_written_for_refused_requests(daemon, client):
    """All refused starts at once, then a marker start: once the marker's mail is in the outbox
    (and a little longer), nothing else may have been written."""
    before = daemon.outbox.count()
    for addr in HOSTILE_EMAILS.values():
        err(client.call("start", {"email": addr}), "invalid_email")
    refused_redirect_addrs = []
    for redirect in REFUSED_REDIRECTS.values():
        a = unique_email("refredir")
        refused_redirect_addrs.append(a)
        err(client.call("start", {"email": a, "redirect": redirect}), "redirect_not_allowed")
    marker = unique_email("marker")
    ok(client.call("start", {"email": marker}))
    daemon.wait_for_mail(marker)
    time.sleep(1.0)
    assert daemon.outbox.count() == before + 1, daemon.outbox.recipients()
    daemon.outbox.assert_no_mail_for(refused_redirect_addrs + ["evil@x.com", "bob@example.com"])
    for _, msg, raw in daemon.outbox.all_messages():
        assert b"evil@x.com" not in raw, "header injection reached the outbox"


ACCEPTED_EMAILS = {
    "plus-and-apostrophe": ("o'brien+tag-{u}@example.com", "o'brien+tag-{u}@example.com"),
    "atext-specials": ("a!#$%&*/=?^_`{|}~-{u}@example.com", "a!#$%&*/=?^_`{|}~-{u}@example.com"),
    "dots-and-subdomains": ("first.last.{u}@mail.sub.example.co.uk", "first.last.{u}@mail.sub.example.co.uk"),
    "domain-lowercased-local-kept": ("MiXeD.{u}@EXAMPLE.Org", "MiXeD.{u}@example.org"),
    "hyphenated-domain": ("h-{u}@my-domain.example", "h-{u}@my-domain.example"),
    "digits-in-labels": ("d-{u}@123.example.com", "d-{u}@123.example.com"),
    "local-64-bytes": ("{u}" + "a" * 52 + "@example.com", "{u}" + "a" * 52 + "@example.com"),
    "unicode-local": ("jörg.{u}@example.com", "jörg.{u}@example.com"),
    "idn-domain": ("user.{u}@Bücher.DE", "user.{u}@xn--bcher-kva.de"),
}


@pytest.mark.parametrize("typed, canonical", list(ACCEPTED_EMAILS.values()), ids=list(ACCEPTED_EMAILS))
def test_accepted_email_canonical_form(daemon, client, typed, canonical):
    tag = u()
    typed = typed.replace("{u}", tag)
    canonical = canonical.replace("{u}", tag)
    ok(client.call("start", {"email": typed}))
    msg, token, raw = daemon.wait_for_mail(canonical, raw=True)
    assert recipient(raw) == canonical, raw_header(raw, "To")
    result = ok(client.call("callback", {"confirm": True, "token": token}))
    assert result["user"]["email"] == canonical


def test_idn_domain_exact(daemon, client):
    """The literal example of the brief: user@Bücher.DE is mailed to user@xn--bcher-kva.de."""
    # per-address rate limit (5 per 3600 s) is plenty for one module run
    ok(client.call("start", {"email": "user@Bücher.DE"}))
    msg, token, raw = daemon.wait_for_mail("user@xn--bcher-kva.de", raw=True)
    assert recipient(raw) == "user@xn--bcher-kva.de", raw_header(raw, "To")
    result = ok(client.call("callback", {"confirm": True, "token": token}))
    assert result["user"]["email"] == "user@xn--bcher-kva.de"


# ------------------------------------------------------------------------------------ redirects

REFUSED_REDIRECTS = {
    "protocol-relative": "//evil.example/",
    "slash-backslash": "/\\evil.example",
    "backslash-inside": "/a\\b",
    "other-origin": "https://evil.example/",
    "suffix-host": "https://app.example.com.evil.example/",
    "prefix-host": "https://evilapp.example.com/",
    "other-scheme-same-host": "http://app.example.com/",
    "other-port": "https://app.example.com:8443/",
    "userinfo": "https://user@app.example.com/",
    "userinfo-pass": "https://user:pw@app.example.com/",
    "userinfo-trick": "https://app.example.com@evil.example/",
    "javascript": "javascript:alert(1)",
    "data": "data:text/html,<script>alert(1)</script>",
    "ftp": "ftp://app.example.com/",
    "relative-no-slash": "account",
    "bare-host": "evil.example",
    "empty": "",
    "space": "/a b",
    "tab": "/a\tb",
    "newline": "/a\nb",
    "crlf": "/a\r\nSet-Cookie: x=1",
    "nul": "/a\u0000b",
    "del": "/a\u007fb",
    "c1": "/a\u0085b",
    "leading-space": " /account",
    "triple-slash": "///evil.example",
    "scheme-relative-backslashes": "\\\\evil.example",
    "https-no-host": "https:///evil.example",
}


@pytest.mark.parametrize("redirect", list(REFUSED_REDIRECTS.values()), ids=list(REFUSED_REDIRECTS))
def test_redirect_refused(daemon, client, redirect):
    addr = unique_email("redir")
    before = daemon.outbox.count()
    err(client.call("start", {"email": addr, "redirect": redirect}), "redirect_not_allowed")
    assert daemon.outbox.count() == before


ACCEPTED_REDIRECTS = {
    "root": ("/", "/"),
    "path-query-fragment": ("/account/settings?tab=2&x=%20#top", "/account/settings?tab=2&x=%20#top"),
    "allowed-origin": ("https://app.example.com/dashboard", "https://app.example.com/dashboard"),
    "allowed-origin-no-path": ("https://app.example.com", "https://app.example.com"),
    "allowed-origin-default-port": ("https://app.example.com:443/x", "https://app.example.com:443/x"),
    "allowed-origin-upper-host": ("https://APP.Example.com/x", "https://APP.Example.com/x"),
}


@pytest.mark.parametrize("redirect, echoed", list(ACCEPTED_REDIRECTS.values()), ids=list(ACCEPTED_REDIRECTS))
def test_redirect_accepted_and_echoed(daemon, client, redirect, echoed):
    addr = unique_email("okredir")
    ok(client.call("start", {"email": addr, "redirect": redirect}))
    _, token = daemon.wait_for_mail(addr)
    result = ok(client.call("callback", {"confirm": True, "token": token}))
    assert result["redirect"] == echoed


def test_redirect_over_2048_bytes_refused(daemon, client):
    addr = unique_email("longredir")
    before = daemon.outbox.count()
    reply = client.call("start", {"email": addr, "redirect": "/" + "a" * 2048})
    assert reply["ok"] is False, reply
    assert reply["error"]["code"] in ("redirect_not_allowed", "invalid_request"), reply
    assert daemon.outbox.count() == before


def test_redirect_of_2048_bytes_accepted(daemon, client):
    addr = unique_email("maxredir")
    redirect = "/" + "a" * 2047
    ok(client.call("start", {"email": addr, "redirect": redirect}))
    _, token = daemon.wait_for_mail(addr)
    assert ok(client.call("callback", {"confirm": True, "token": token}))["redirect"] == redirect


def test_long_user_agent_is_cut_not_refused(daemon, client):
    addr = unique_email("ua")
    ok(client.call("start", {"email": addr, "user_agent": "x" * 5000}))
    _, token = daemon.wait_for_mail(addr)
    ok(client.call("callback", {"confirm": True, "token": token, "user_agent": "y" * 5000}))


def test_redirect_refused_with_other_allowed_origins(daemon_factory):
    d = daemon_factory({"MAGICLINKD_ALLOWED_REDIRECT_ORIGINS": "https://a.example.org, http://localhost:3000"})
    with d.client() as c:
        err(c.call("start", {"email": unique_email("o"), "redirect": "https://app.example.com/"}), "redirect_not_allowed")
        err(c.call("start", {"email": unique_email("o"), "redirect": "http://localhost/"}), "redirect_not_allowed")
        for redirect in ("https://a.example.org/x", "http://localhost:3000/y"):
            addr = unique_email("o")
            ok(c.call("start", {"email": addr, "redirect": redirect}))
            _, token = d.wait_for_mail(addr)
            assert ok(c.call("callback", {"confirm": True, "token": token}))["redirect"] == redirect


# ------------------------------------------------------------------------------------ ip


@pytest.mark.parametrize("ip", ["not-an-ip", "999.1.1.1", "1.2.3", "2001:db8::g", "", "1.2.3.4:80", " 1.2.3.4"])
def test_invalid_ip_text(daemon, client, ip):
    before = daemon.outbox.count()
    err(client.call("start", {"email": unique_email("ip"), "ip": ip}), "invalid_request", field="params.ip")
    assert daemon.outbox.count() == before


@pytest.mark.parametrize("ip", ["203.0.113.7", "2001:db8::1", "::1", "::ffff:192.0.2.1"])
def test_valid_ip_text(daemon, client, ip):
    addr = unique_email("ipok")
    ok(client.call("start", {"email": addr, "ip": ip}))
    daemon.wait_for_mail(addr)


def test_invalid_ip_in_callback(daemon, client):
    addr = unique_email("cbip")
    ok(client.call("start", {"email": addr}))
    _, token = daemon.wait_for_mail(addr)
    err(client.call("callback", {"confirm": True, "token": token, "ip": "nope"}), "invalid_request", field="params.ip")
    ok(client.call("callback", {"confirm": True, "token": token, "ip": "198.51.100.1"}))


# ------------------------------------------------------------------------------------ rate limits

IP_MAX = 3
EMAIL_MAX = 2


@pytest.fixture(scope="module")
def limited():
    yield from serve_daemon({"MAGICLINKD_RATE_LIMIT_IP_MAX": str(IP_MAX), "MAGICLINKD_RATE_LIMIT_EMAIL_MAX": str(EMAIL_MAX)})


def assert_rate_limited(reply, window):
    error = err(reply, "rate_limited")
    assert error["retryable"] is True
    retry = error["details"].get("retry_after_s")
    assert type(retry) is int and 1 <= retry <= window, reply


def test_rate_limit_per_ip(limited):
    ip = "198.51.100.21"
    with limited.client() as c:
        addrs = [unique_email("rl") for _ in range(IP_MAX + 1)]
        for a in addrs[:IP_MAX]:
            ok(c.call("start", {"email": a, "ip": ip}))
        for a in addrs[:IP_MAX]:
            limited.wait_for_mail(a)
        before = limited.outbox.count()
        assert_rate_limited(c.call("start", {"email": addrs[IP_MAX], "ip": ip}), 3600)
        # other ip still fine
        other = unique_email("rl-other")
        ok(c.call("start", {"email": other, "ip": "198.51.100.22"}))
        limited.wait_for_mail(other)
        time.sleep(0.5)
        assert limited.outbox.count() == before + 1
        limited.outbox.assert_no_mail_for([addrs[IP_MAX]])
        # still limited, and without ip only the per-address limit applies
        assert_rate_limited(c.call("start", {"email": unique_email("rl"), "ip": ip}), 3600)
        ok(c.call("start", {"email": addrs[IP_MAX]}))
        limited.wait_for_mail(addrs[IP_MAX])


def test_rate_limit_ipv6_counts_per_64(limited):
    with limited.client() as c:
        for i in range(IP_MAX):
            a = unique_email("v6")
            ok(c.call("start", {"email": a, "ip": f"2001:db8:aaaa:1::{i + 1:x}"}))
            limited.wait_for_mail(a)
        assert_rate_limited(c.call("start", {"email": unique_email("v6"), "ip": "2001:db8:aaaa:1:ffff::9"}), 3600)
        a = unique_email("v6")
        ok(c.call("start", {"email": a, "ip": "2001:db8:aaaa:2::1"}))
        limited.wait_for_mail(a)


def test_refused_requests_do_not_count_for_ip(limited):
    ip = "198.51.100.31"
    with limited.client() as c:
        for _ in range(5):
            err(c.call("start", {"email": "not an address", "ip": ip}), "invalid_email")
            err(c.call("start", {"email": unique_email("x"), "ip": ip, "redirect": "//evil"}), "redirect_not_allowed")
        for _ in range(IP_MAX):
            a = unique_email("cnt")
            ok(c.call("start", {"email": a, "ip": ip}))
            limited.wait_for_mail(a)
        assert_rate_limited(c.call("start", {"email": unique_email("cnt"), "ip": ip}), 3600)


def test_rate_limit_per_address(limited):
    local = f"Limit.{u()}"
    with limited.client() as c:
        ok(c.call("start", {"email": f"{local}@example.com", "ip": "198.51.100.41"}))
        limited.wait_for_mail(f"{local}@example.com")
        ok(c.call("start", {"email": f"{local.lower()}@Example.com", "ip": "198.51.100.42"}))
        limited.wait_for_mail(f"{local.lower()}@example.com")
        before = limited.outbox.count()
        # third start for the same address (other case, other ip, no ip): refused
        assert_rate_limited(c.call("start", {"email": f"{local.upper()}@EXAMPLE.COM", "ip": "198.51.100.43"}), 3600)
        assert_rate_limited(c.call("start", {"email": f"{local}@example.com"}), 3600)
        # a different address is fine
        other = unique_email("lim-other")
        ok(c.call("start", {"email": other}))
        limited.wait_for_mail(other)
        time.sleep(0.5)
        assert limited.outbox.count() == before + 1


def test_without_ip_only_per_address_applies(limited):
    with limited.client() as c:
        addrs = [unique_email("noip") for _ in range(IP_MAX + 3)]
        for a in addrs:
            ok(c.call("start", {"email": a}))
        for a in addrs:
            limited.wait_for_mail(a)


def test_rate_limit_window_slides_and_retry_after_is_accurate(daemon_factory):
    window = 3
    d = daemon_factory({"MAGICLINKD_RATE_LIMIT_EMAIL_MAX": "1", "MAGICLINKD_RATE_LIMIT_EMAIL_WINDOW": str(window),
                        "MAGICLINKD_RATE_LIMIT_IP_MAX": "1", "MAGICLINKD_RATE_LIMIT_IP_WINDOW": "3600"})
    addr = unique_email("slide")
    with d.client() as c:
        ok(c.call("start", {"email": addr}))
        reply = c.call("start", {"email": addr})
        assert_rate_limited(reply, window)
        retry = reply["error"]["details"]["retry_after_s"]
        # the per-ip limit: retry_after_s is the time until one more is accepted (about the window)
        ok(c.call("start", {"email": unique_email("slide"), "ip": "192.0.2.77"}))
        reply = c.call("start", {"email": unique_email("slide"), "ip": "192.0.2.77"})
        assert_rate_limited(reply, 3600)
        assert reply["error"]["details"]["retry_after_s"] >= 3600 - 60, reply
        # after retry_after_s, one more start for the address is accepted
        time.sleep(retry + 0.5)
        ok(c.call("start", {"email": addr}))
        d.wait_for_mail(addr)
        d.wait_for_mail(addr)


def test_rate_limited_refusal_does_not_invalidate_older_link(limited):
    addr = unique_email("keep")
    with limited.client() as c:
        ok(c.call("start", {"email": addr}))
        _, first = limited.wait_for_mail(addr)
        ok(c.call("start", {"email": addr}))
        _, second = limited.wait_for_mail(addr)
        assert_rate_limited(c.call("start", {"email": addr}), 3600)
        # the refused start sent nothing and created no token: the second link still works
        ok(c.call("callback", {"confirm": True, "token": second}))
