"""Each example app, driven over HTTP exactly as a browser would: the login form, the mail from
the outbox, the scanner-safe link page, the session cookie, the protected page, the code form,
logout. The same tests run against the PHP, Python and Ruby examples, which share one set of
routes (Examples/README.md)."""

from __future__ import annotations

import html
import re
import uuid

import pytest

from conftest import LANGUAGES, Browser, ExampleApp

SESSION = "magiclink_session"
FLOW = "magiclink_flow"
CODE_RE = re.compile(r"(?<!\d)(\d{6})(?!\d)")


def address(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


def cookie_attributes(set_cookie: str) -> dict[str, str]:
    attrs = {}
    for part in [p.strip() for p in set_cookie.split(";")][1:]:
        k, _, v = part.partition("=")
        attrs[k.strip().lower()] = v.strip()
    return attrs


def set_cookie(resp, name: str) -> str:
    found = [c for c in resp.set_cookies() if c.startswith(name + "=")]
    assert len(found) == 1, (name, resp)
    return found[0]


def form(body: str, action: str) -> dict[str, str]:
    """The named inputs of the POST form that targets `action` (hidden ones included)."""
    m = re.search(r'<form[^>]*action="' + re.escape(action) + r'"[^>]*>(.*?)</form>', body, re.S | re.I)
    assert m, f"no form for {action} in:\n{body[:2000]}"
    assert re.search(r'method="post"', m.group(0), re.I), m.group(0)
    fields = {}
    for tag in re.findall(r"<input[^>]*>", m.group(1), re.I):
        name = re.search(r'name="([^"]+)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name:
            fields[name.group(1)] = html.unescape(value.group(1)) if value else ""
    return fields


def sign_in_request(app: ExampleApp, b: Browser, who: str):
    r = b.post("/login", {"email": who})
    assert r.status == 200 and "Check your email" in r.body, r
    attrs = cookie_attributes(set_cookie(r, FLOW))
    assert "httponly" in attrs and attrs.get("samesite", "").lower() == "lax", attrs
    assert FLOW in b.cookies
    return r


def test_login_flow_end_to_end(app):
    b = Browser(app)
    page = b.get("/")
    assert page.status == 200, page
    assert "email" in form(page.body, "/login")

    r = b.get("/account")
    assert r.status == 303 and r.location_path() == "/", r

    who = address(f"alice-{app.lang}")
    sign_in_request(app, b, who)
    link, _ = app.wait_for_mail(who)
    assert link.startswith(app.app_url + "/auth/callback?token="), link
    path = link[len(app.app_url):]

    # The GET never logs in: it renders a form that the page submits by itself (same browser).
    r = b.get(path)
    assert r.status == 200 and SESSION not in b.cookies, r
    fields = form(r.body, "/auth/callback")
    assert fields.get("token") and fields.get("confirm") in (None, "", "0"), fields
    assert "submit()" in r.body, "the same browser's page submits itself"
    # A second GET (a scanner, a preview) burns nothing either.
    assert b.get(path).status == 200

    r = b.post("/auth/callback", fields)
    assert r.status == 303 and r.location_path() == "/account", r
    attrs = cookie_attributes(set_cookie(r, SESSION))
    assert "httponly" in attrs and attrs.get("samesite", "").lower() == "lax" and attrs.get("path") == "/", attrs
    assert "secure" not in attrs, "Secure only when the app is served over HTTPS"
    assert "max-age" in attrs or "expires" in attrs, attrs
    assert FLOW not in b.cookies, "the flow cookie is cleared after login"
    session = b.cookies[SESSION]
    assert len(session) >= 40

    r = b.get("/account")
    assert r.status == 200 and f"Signed in as {who}" in r.body, r
    assert form(r.body, "/logout") is not None

    # Used: the link's page now says so.
    r = Browser(app).get(path)
    assert r.status == 400 and re.search(r"invalid|expired", r.body, re.I), r

    r = b.get("/")
    assert r.status == 303 and r.location_path() == "/account", r

    r = b.post("/logout", {})
    assert r.status == 303 and r.location_path() == "/", r
    cleared = cookie_attributes(set_cookie(r, SESSION))
    assert cleared.get("max-age") == "0" or "expires" in cleared, r
    assert SESSION not in b.cookies
    assert b.get("/account").status == 303
    thief = Browser(app)
    thief.cookies[SESSION] = session
    r = thief.get("/account")
    assert r.status == 303 and r.location_path() == "/", "the old cookie is dead on the daemon's side too"

    for secret in (session, path.split("token=")[1]):
        assert secret not in app.log(), "secrets must not be logged"


def test_a_link_opened_in_another_browser_asks_first(app):
    asker = Browser(app)
    who = address(f"bob-{app.lang}")
    sign_in_request(app, asker, who)
    link, _ = app.wait_for_mail(who)
    path = link[len(app.app_url):]

    other = Browser(app)  # another device: no flow cookie
    r = other.get(path)
    assert r.status == 200, r
    fields = form(r.body, "/auth/callback")
    assert fields.get("confirm") == "1", fields
    masked = who.split("@")[0][0] + "***@example.com"
    assert masked in r.body and who not in r.body, r
    assert "submit()" not in r.body, "no silent login on another device"

    # Posting without confirm (an attacker's auto-submitted form) does not log in either.
    r = other.post("/auth/callback", {"token": fields["token"]})
    assert r.status == 200 and SESSION not in other.cookies, r
    # A cross-site POST with confirm is refused outright.
    r = other.post("/auth/callback", fields, headers={"Origin": "https://evil.example"})
    assert r.status == 403 and SESSION not in other.cookies, r
    # The user's own click on Continue.
    r = other.post("/auth/callback", fields)
    assert r.status == 303 and SESSION in other.cookies, r
    assert f"Signed in as {who}" in other.get("/account").body


def test_the_emailed_code_signs_in_and_three_wrong_codes_kill_it(app):
    b = Browser(app)
    who = address(f"carol-{app.lang}")
    page = sign_in_request(app, b, who)
    assert "code" in form(page.body, "/auth/code")
    _, code = app.wait_for_mail(who)
    assert code, "send=both: the mail carries a code"
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    r = b.post("/auth/code", {"code": wrong})
    assert r.status == 400 and re.search(r"\b2\b", r.body) and "code" in form(r.body, "/auth/code"), r
    r = b.post("/auth/code", {"code": code})
    assert r.status == 303 and r.location_path() == "/account" and SESSION in b.cookies, r
    assert f"Signed in as {who}" in b.get("/account").body

    dave = Browser(app)
    who2 = address(f"dave-{app.lang}")
    sign_in_request(app, dave, who2)
    _, code2 = app.wait_for_mail(who2)
    wrong2 = f"{(int(code2) + 1) % 1_000_000:06d}"
    for _ in range(3):
        assert dave.post("/auth/code", {"code": wrong2}).status == 400
    r = dave.post("/auth/code", {"code": code2})
    assert r.status == 400 and SESSION not in dave.cookies, "the code is dead after three wrong ones"
    # Without the flow cookie there is nothing to check a code against.
    assert Browser(app).post("/auth/code", {"code": code2}).status == 400


def test_bad_input_gets_a_clear_page_and_nothing_leaks(app):
    b = Browser(app)
    r = b.post("/login", {"email": "<script>alert(1)</script>"})
    assert r.status == 400 and "<script>alert(1)</script>" not in r.body, r
    assert "email" in form(r.body, "/login")
    assert b.get("/auth/callback").status == 400
    r = b.get("/auth/callback?token=" + "A" * 43)
    assert r.status == 400 and SESSION not in b.cookies, r
    r = b.get("/auth/callback?token=%3Cscript%3E")
    assert r.status == 400 and "<script>" not in r.body, r
    r = b.post("/auth/callback", {"token": "A" * 43, "confirm": "1"})
    assert r.status == 400 and SESSION not in b.cookies, r
    for route, fields in [("/login", {"email": "x@example.com"}), ("/logout", {}), ("/auth/code", {"code": "123456"})]:
        r = b.post(route, fields, headers={"Origin": "https://evil.example"})
        assert r.status == 403, (route, r)
    b.cookies[SESSION] = "forged" + "x" * 40
    r = b.get("/account")
    assert r.status == 303 and r.location_path() == "/", r


def test_rate_limit_says_when_to_try_again(app):
    b = Browser(app)
    who = address(f"busy-{app.lang}")
    assert b.post("/login", {"email": who}).status == 200
    r = b.post("/login", {"email": who})  # the 60 s cooldown per address
    assert r.status == 429, r
    retry = r.header("Retry-After")
    assert retry and retry.isdigit() and 0 < int(retry) <= 60, r
    assert re.search(r"try again in \d+", r.body, re.I), r


@pytest.mark.parametrize("lang", LANGUAGES)
def test_cookies_are_secure_when_the_app_url_is_https(lang):
    a = ExampleApp(lang, app_url="https://app.example.test")
    try:
        b = Browser(a)
        who = address(f"tls-{lang}")
        r = b.post("/login", {"email": who}, headers={"Origin": "https://app.example.test"})
        assert r.status == 200, r
        assert "secure" in cookie_attributes(set_cookie(r, FLOW))
        link, _ = a.wait_for_mail(who)
        assert link.startswith("https://app.example.test/auth/callback?token="), link
        fields = form(b.get(link[len("https://app.example.test"):]).body, "/auth/callback")
        r = b.post("/auth/callback", fields, headers={"Origin": "https://app.example.test"})
        assert r.status == 303, r
        assert "secure" in cookie_attributes(set_cookie(r, SESSION))
    finally:
        a.stop()


def test_stopping_the_example_stops_its_daemon(app):
    sockets = list(app.state.glob("*.sock"))
    app.stop()
    assert not app.group_alive()
    assert not any(s.exists() for s in sockets), "the daemon removes its socket when it stops"
