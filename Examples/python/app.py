"""Passwordless login with magiclinkd, in plain Python: the standard library's http.server and
the magiclinkd client from ../../Clients/python (no install step, no framework).

Start it with ./run (see README.md): that starts a magiclinkd beside it and sets
MAGICLINKD_SOCKET, APP_URL, HOST and PORT.
"""

from __future__ import annotations

import html
import os
import signal
import sys
import time
import urllib.parse
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "Clients" / "python" / "src"))

import magiclinkd  # noqa: E402

HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8000"))
APP_URL = os.environ.get("APP_URL", f"http://{HOST}:{PORT}").rstrip("/")
_app = urllib.parse.urlsplit(APP_URL)
APP_ORIGIN = f"{_app.scheme}://{_app.netloc}".lower()
SECURE = _app.scheme == "https"  # behind a TLS-terminating proxy: Secure cookies
SESSION_COOKIE = "magiclink_session"
FLOW_COOKIE = "magiclink_flow"  # binds the emailed link and code to the browser that asked

# One client for the whole app: it connects lazily, keeps its connection, and serialises the
# calls of the server's threads.
ml = magiclinkd.Client()

Headers = Sequence[Tuple[str, str]]


def set_cookie(name: str, value: str, expires_at: int) -> str:
    parts = [f"{name}={value}", "Path=/", f"Max-Age={max(expires_at - int(time.time()), 0)}",
             "Expires=" + formatdate(expires_at, usegmt=True), "HttpOnly", "SameSite=Lax"]
    return "; ".join(parts + (["Secure"] if SECURE else []))


def clear_cookie(name: str) -> str:
    return f"{name}=; Max-Age=0; Path=/"


def page(title: str, body: str) -> bytes:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:32em;margin:3em auto;padding:0 1em;line-height:1.5}}
input,button{{font-size:1em;padding:.4em}}.error{{color:#b00020}}</style></head>
<body><h1>{html.escape(title)}</h1>
{body}
</body></html>
""".encode("utf-8")


def error(message: str) -> str:
    return f'<p class="error">{html.escape(message)}</p>\n' if message else ""


def login_form(message: str = "", email: str = "") -> str:
    return error(message) + f"""<form method="post" action="/login">
<label>Email address <input type="email" name="email" value="{html.escape(email)}" required autofocus></label>
<button type="submit">Email me a sign-in link</button>
</form>"""


def code_form(message: str = "") -> str:
    return error(message) + """<form method="post" action="/auth/code">
<label>Or type the 6-digit code from the email
<input name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 -]*" required></label>
<button type="submit">Sign in</button>
</form>"""


def callback_form(token: str, confirm: bool) -> str:
    hidden = '<input type="hidden" name="confirm" value="1">' if confirm else ""
    return f"""<form method="post" action="/auth/callback">
<input type="hidden" name="token" value="{html.escape(token)}">{hidden}
<button type="submit">{"Continue" if confirm else "Sign in"}</button>
</form>"""


def confirm_page(email_masked: Optional[str], token: str) -> Tuple[str, str]:
    # The link was opened in another browser than the one that asked (a phone, or a link
    # someone else requested for their own account): ask, never sign in silently.
    return "Confirm sign-in", (f"<p>Sign in as <strong>{html.escape(email_masked or 'this account')}</strong>? "
                               "The link was requested in another browser. Continue only if it was you.</p>\n"
                               + callback_form(token, confirm=True))


INVALID_LINK = ("Invalid link", '<p>This link is invalid or expired (each link works once). '
                '<a href="/">Ask for a new one</a>.</p>')


class Handler(BaseHTTPRequestHandler):
    server_version = "magiclinkd-example"

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        routes: Dict[str, Callable[[], None]] = {
            "/": self.home,
            "/auth/callback": lambda: self.link_page(query.get("token", [""])[0]),
            "/account": self.account,
        }
        routes.get(url.path, self.not_found)()

    def do_POST(self) -> None:
        origin = self.headers.get("Origin")
        site = self.headers.get("Sec-Fetch-Site")
        if (origin is not None and origin.lower() != APP_ORIGIN) or site in ("cross-site", "same-site"):
            # A form on another site posting here (login CSRF): refused.
            return self.send_page(403, "Forbidden", "<p>This form must be sent from this site.</p>")
        form = self.read_form()
        routes: Dict[str, Callable[[], None]] = {
            "/login": lambda: self.login(form.get("email", "").strip()),
            "/auth/callback": lambda: self.sign_in(form.get("token", ""), confirm=form.get("confirm") == "1"),
            "/auth/code": lambda: self.verify_code(form.get("code", "")),
            "/logout": self.logout,
        }
        routes.get(urllib.parse.urlsplit(self.path).path, self.not_found)()

    # --- routes -------------------------------------------------------------------------------

    def home(self) -> None:
        session = self.cookie(SESSION_COOKIE)
        if session:
            try:
                ml.session(session, ip=self.client_ip())
                return self.redirect("/account")
            except magiclinkd.MagicLinkError:
                pass  # not signed in (or the daemon is down): show the form
        self.send_page(200, "Sign in", login_form())

    def login(self, email: str) -> None:
        try:
            started = ml.start(email, send="both", redirect="/account", ip=self.client_ip(),
                               user_agent=self.user_agent())
        except magiclinkd.InvalidEmail:
            return self.send_page(400, "Sign in", login_form("Please enter a valid email address.", email))
        except magiclinkd.MagicLinkError as e:
            return self.failed(e)
        minutes = max((started.expires_at - int(time.time())) // 60, 1)
        cookies = [set_cookie(FLOW_COOKIE, started.flow, started.expires_at)] if started.flow else []
        self.send_page(200, "Check your email",
                       f"<p>Check your email: we sent a sign-in link and code to <strong>{html.escape(email)}"
                       f"</strong>. They work once, for {minutes} minutes, in this browser.</p>\n"
                       + code_form() + '\n<p><a href="/">Use another address</a></p>', cookies=cookies)

    def link_page(self, token: str) -> None:
        # GET never signs in: mail scanners and link previews open links before people do.
        if not token:
            return self.send_page(400, *INVALID_LINK)
        try:
            seen = ml.peek(token, flow=self.cookie(FLOW_COOKIE))
        except magiclinkd.MagicLinkError as e:
            return self.failed(e)
        if not seen.valid:
            return self.send_page(400, *INVALID_LINK)
        if not seen.flow_matches:
            return self.send_page(200, *confirm_page(seen.email_masked, token))
        # The browser that asked: post the token at once (the button is there without JavaScript).
        self.send_page(200, "Signing in…", callback_form(token, confirm=False)
                       + "\n<script>document.forms[0].submit()</script>")

    def sign_in(self, token: str, confirm: bool) -> None:
        try:
            login = ml.callback(token, flow=self.cookie(FLOW_COOKIE), confirm=confirm,
                                ip=self.client_ip(), user_agent=self.user_agent())
        except magiclinkd.ConfirmationRequired as e:
            return self.send_page(200, *confirm_page(e.email_masked, token))
        except magiclinkd.InvalidToken:
            return self.send_page(400, *INVALID_LINK)
        except magiclinkd.FlowMismatch:
            return self.send_page(400, "Wrong browser", "<p>Open the link in the browser where you asked for it, "
                                  'or <a href="/">ask for a new one</a> here.</p>')
        except magiclinkd.MagicLinkError as e:
            return self.failed(e)
        self.signed_in(login)

    def verify_code(self, code: str) -> None:
        flow = self.cookie(FLOW_COOKIE)
        if not flow:
            return self.send_page(400, "Sign in", error("That code has expired. Ask for a new one.") + login_form())
        try:
            login = ml.verify_code(flow, code, ip=self.client_ip(), user_agent=self.user_agent())
        except magiclinkd.InvalidCode as e:
            left = e.attempts_left or 0
            message = (f"Wrong code: {left} attempt{'s' if left != 1 else ''} left." if left
                       else "Wrong code, and no attempts left: ask for a new code.")
            return self.send_page(400, "Check your email", code_form(message) + '\n<p><a href="/">Ask for a new code</a></p>')
        except magiclinkd.InvalidRequest:
            return self.send_page(400, "Check your email", code_form("Please type the 6 digits from the email."))
        except magiclinkd.InvalidToken:
            return self.send_page(400, "Sign in", error("That code has expired or was used. Ask for a new one.")
                                  + login_form())
        except magiclinkd.MagicLinkError as e:
            return self.failed(e)
        self.signed_in(login)

    def signed_in(self, login: magiclinkd.Login) -> None:
        # The redirect was checked by the daemon when the link was requested (a path here).
        self.redirect(login.redirect, cookies=[set_cookie(SESSION_COOKIE, login.session, login.expires_at),
                                               clear_cookie(FLOW_COOKIE)])

    def account(self) -> None:
        session = self.cookie(SESSION_COOKIE)
        if not session:
            return self.redirect("/")
        try:
            info = ml.session(session, ip=self.client_ip())
        except magiclinkd.InvalidSession:
            return self.redirect("/", cookies=[clear_cookie(SESSION_COOKIE)])
        except magiclinkd.MagicLinkError as e:
            return self.failed(e)
        self.send_page(200, "Your account", f"""<p>Signed in as {html.escape(info.user.email)}</p>
<form method="post" action="/logout"><button type="submit">Sign out</button></form>""")

    def logout(self) -> None:
        session = self.cookie(SESSION_COOKIE)
        if session:
            try:
                ml.logout(session)
            except magiclinkd.MagicLinkError as e:
                self.log_message("logout failed: %s", type(e).__name__)
        self.redirect("/", cookies=[clear_cookie(SESSION_COOKIE)])

    def not_found(self) -> None:
        self.send_page(404, "Not found", '<p><a href="/">Home</a></p>')

    def failed(self, e: magiclinkd.MagicLinkError) -> None:
        if isinstance(e, magiclinkd.RateLimited):
            wait = e.retry_after or 60
            return self.send_page(429, "Too many requests", f"<p>Too many attempts. Please try again in {wait} seconds.</p>",
                                  headers=[("Retry-After", str(wait))])
        if isinstance(e, (magiclinkd.TransportError, magiclinkd.Unavailable)):
            return self.send_page(503, "Try again later", "<p>Sign-in is not available right now. "
                                  "Please try again in a minute.</p>", headers=[("Retry-After", "30")])
        self.log_message("magiclinkd error: %s", type(e).__name__)  # never the request's secrets
        self.send_page(500, "Something went wrong", '<p>Something went wrong. <a href="/">Start again</a>.</p>')

    # --- helpers ------------------------------------------------------------------------------

    def client_ip(self) -> str:
        # The peer's address. Behind a reverse proxy, use the address your proxy reports (the
        # last X-Forwarded-For hop you trust), never a header the client controls.
        return str(self.client_address[0])

    def user_agent(self) -> Optional[str]:
        return self.headers.get("User-Agent") or None

    def cookie(self, name: str) -> Optional[str]:
        # Parsed by hand: http.cookies.SimpleCookie silently drops every cookie of a header that
        # holds one it dislikes (other apps on the same host set such cookies).
        for part in self.headers.get("Cookie", "").split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name and value:
                return value
        return None

    def read_form(self) -> Dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(max(length, 0), 65536)).decode("utf-8", "replace")
        return {k: v[0] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}

    def redirect(self, location: str, cookies: Sequence[str] = ()) -> None:
        self.respond(303, b"", [("Location", location)], cookies)

    def send_page(self, status: int, title: str, body: str, headers: Headers = (), cookies: Sequence[str] = ()) -> None:
        self.respond(status, page(title, body), [("Content-Type", "text/html; charset=utf-8"), *headers], cookies)

    def respond(self, status: int, body: bytes, headers: Headers, cookies: Sequence[str]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        for value in cookies:
            self.send_header("Set-Cookie", value)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "same-origin")  # link pages hold the token in their URL
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    # The access log shows paths without their query string: the link's holds the token.
    def log_request(self, code: object = "-", size: object = "-") -> None:
        path = urllib.parse.urlsplit(getattr(self, "path", "")).path or "-"
        self.log_message("%s %s %s", getattr(self, "command", "-"), path, int(code) if isinstance(code, int) else code)

    def log_error(self, format: str, *args: object) -> None:
        # http.server's messages may quote the raw request line (and so a token): log the code only.
        self.log_message("error %s", args[0] if args else "-")


def main() -> None:
    server = ThreadingHTTPServer((HOST, PORT), Handler)
    server.daemon_threads = True

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)  # ./run stops the app with SIGTERM, then its daemon
    signal.signal(signal.SIGINT, stop)
    print(f"example app: open {APP_URL}/ (listening on {HOST}:{PORT})", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        ml.close()


if __name__ == "__main__":
    main()
