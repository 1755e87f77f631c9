"""A real SMTP server for the delivery tests: aiosmtpd on loopback, with STARTTLS or implicit TLS
using a certificate authority made for the test run, AUTH, and scriptable replies (421/451/550)
so that retries and dead letters can be provoked. Everything it receives is recorded."""

from __future__ import annotations

import datetime
import email.parser
import email.policy
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SMTP_USER = "mailer"
SMTP_PASSWORD = "s3cret-pässword"


class CertificateAuthority:
    """A throwaway CA and a server certificate for localhost / 127.0.0.1 / ::1 signed by it."""

    def __init__(self, directory: Path, common_name: str = "magiclinkd test CA"):
        directory.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.IPAddress(ipaddress.ip_address("::1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_file = directory / "ca.pem"
        self.cert_file = directory / "server.pem"
        self.key_file = directory / "server.key"
        self.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list
    content: bytes
    tls: bool
    authenticated: bool

    @property
    def message(self):
        return email.parser.BytesParser(policy=email.policy.default).parsebytes(self.content)


@dataclass
class Handler:
    """Records everything; answers RCPT and DATA from scripts (a None entry means "accept")."""

    rcpt_script: list = field(default_factory=list)
    data_script: list = field(default_factory=list)
    received: list = field(default_factory=list)
    mail_commands: list = field(default_factory=list)  # (tls, authenticated) at each MAIL
    data_attempts: list = field(default_factory=list)  # raw content of every DATA, accepted or not
    auth_attempts: list = field(default_factory=list)  # (login, tls)
    lock: threading.Lock = field(default_factory=threading.Lock)
    implicit_tls: bool = False

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self.lock:
            self.mail_commands.append((session.ssl is not None or self.implicit_tls, bool(session.authenticated)))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            reply = self.rcpt_script.pop(0) if self.rcpt_script else None
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content or envelope.content
        with self.lock:
            self.data_attempts.append(content)
            reply = self.data_script.pop(0) if self.data_script else None
            if reply:
                return reply
            self.received.append(
                Received(
                    mail_from=envelope.mail_from,
                    rcpt_tos=list(envelope.rcpt_tos),
                    content=content,
                    tls=session.ssl is not None or self.implicit_tls,
                    authenticated=bool(session.authenticated),
                )
            )
        return "250 2.0.0 OK: queued"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SMTPServer:
    """aiosmtpd on 127.0.0.1. mode: "starttls" (STARTTLS required before anything else),
    "tls" (implicit TLS), "plain" (no TLS offered at all)."""

    def __init__(self, ca: CertificateAuthority | None, mode: str = "starttls", auth: bool = True,
                 port: int | None = None):
        self.ca = ca
        self.mode = mode
        self.auth = auth
        self.port = port or free_port()
        self.handler = Handler(implicit_tls=(mode == "tls"))
        self.controller: Controller | None = None

    def _authenticator(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode()
            password = auth_data.password.decode()
            with self.handler.lock:
                self.handler.auth_attempts.append((login, session.ssl is not None or self.mode == "tls"))
            return AuthResult(success=(login == SMTP_USER and password == SMTP_PASSWORD))
        return AuthResult(success=False)

    def start(self) -> "SMTPServer":
        kwargs = dict(hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=True, decode_data=False)
        if self.auth:
            # aiosmtpd does not count implicit TLS as TLS for auth_require_tls, so only the
            # STARTTLS server asks for it (the implicit-TLS port speaks nothing but TLS anyway).
            kwargs.update(authenticator=self._authenticator, auth_required=True,
                          auth_require_tls=(self.mode == "starttls"))
        if self.mode == "starttls":
            kwargs.update(tls_context=self.ca.server_context(), require_starttls=True)
        elif self.mode == "tls":
            kwargs.update(ssl_context=self.ca.server_context(), server_hostname="localhost")
        self.controller = Controller(self.handler, **kwargs)
        if self.mode == "tls":
            # The controller's self-check connects with TLS; let it trust our CA.
            self.controller._trigger_server = self._trigger_tls  # type: ignore[attr-defined]
        self.controller.start()
        return self

    def _trigger_tls(self):
        context = ssl.create_default_context(cafile=str(self.ca.ca_file))
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as s:
                s.recv(1024)

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    # waiting -------------------------------------------------------------------------------
    def wait_for(self, count: int = 1, timeout: float = 20.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.handler.lock:
                if len(self.handler.received) >= count:
                    return list(self.handler.received)
            time.sleep(0.05)
        with self.handler.lock:
            raise AssertionError(
                f"expected {count} message(s), got {len(self.handler.received)}; "
                f"MAIL commands {self.handler.mail_commands}, auth {self.handler.auth_attempts}"
            )

    def settle(self, seconds: float) -> None:
        """Give the daemon time to (wrongly) deliver something."""
        time.sleep(seconds)


def smtp_env(server: SMTPServer, ca_file=None, password_file: Path | None = None, **extra) -> dict:
    env = {
        "MAGICLINKD_MAIL_TRANSPORT": "smtp",
        "MAGICLINKD_SMTP_HOST": "localhost",
        "MAGICLINKD_SMTP_PORT": str(server.port),
        "MAGICLINKD_SMTP_TLS": {"starttls": "starttls", "tls": "tls", "plain": "none"}[server.mode],
        "MAGICLINKD_MAIL_FROM": "Example Shop <login@shop.example>",
        "MAGICLINKD_MAIL_RETRY_MIN_DELAY": "1",
        "MAGICLINKD_MAIL_RETRY_MAX_DELAY": "2",
    }
    if ca_file is not None:
        env["MAGICLINKD_SMTP_CA_FILE"] = str(ca_file)
    if password_file is not None:
        env["MAGICLINKD_SMTP_USERNAME"] = SMTP_USER
        env["MAGICLINKD_SMTP_PASSWORD_FILE"] = str(password_file)
    env.update({k: str(v) for k, v in extra.items()})
    return env
