"""The magiclinkd client: one persistent connection to the daemon's Unix socket."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import weakref
from types import TracebackType
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Type, Union

from ._transport import Connection, ConnectionLost
from .errors import MagicLinkConnectionError, MagicLinkTimeout, ProtocolError, ServerError
from .results import (
    CreatedUser,
    DeadLetter,
    Login,
    PeekResult,
    RetryResult,
    ServerInfo,
    SessionInfo,
    SessionRecord,
    StartResult,
    Status,
    _int,
    _obj_list,
)

__all__ = ["Client", "DEFAULT_SOCKET", "SAFE_TO_REPEAT"]

log = logging.getLogger("magiclinkd")

#: Where the daemon's socket is under systemd (see the daemon's README), used when neither the
#: ``socket_path`` argument nor ``MAGICLINKD_SOCKET`` names one.
DEFAULT_SOCKET = "/run/magiclinkd/magiclinkd.sock"

#: Ops that may be sent again when a connection breaks after the request was written: they
#: change nothing that a repeat would change differently (``session`` moves the idle expiry,
#: ``peek`` counts a look at the link).
SAFE_TO_REPEAT: FrozenSet[str] = frozenset(
    {"hello", "session", "peek", "admin_status", "admin_sessions", "admin_dead_letters"}
)

_MAX_ID = 2**53 - 1

# Clients alive in this process, so that a fork can give each a fresh lock in the child (a lock
# held by another thread at fork time would otherwise stay locked there for ever).
_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Client:
    """A client of one magiclinkd daemon.

    ``socket_path`` is the daemon's Unix socket; without it, ``MAGICLINKD_SOCKET``, else
    :data:`DEFAULT_SOCKET`. Constructing never touches the socket: the connection is made by the
    first call and then reused. Each call waits at most ``connect_timeout`` seconds to connect
    and ``read_timeout`` seconds for its reply (also bounding the write).

    A Client may be shared by the threads of a process; a lock serialises the calls (one
    connection, one request at a time). After ``os.fork()`` the child leaves the inherited
    connection to the parent and opens its own. Use it as a context manager, or call
    :meth:`close` when done (a closed client reconnects if it is used again).

    ``app``: the id of the app this client speaks for, on a daemon that serves several (see
    ``hello().apps``); without it, ``MAGICLINKD_APP``, else none (fine for a daemon with one
    app). Every op but ``hello`` sends it as ``params.app``.
    """

    def __init__(
        self,
        socket_path: Optional[Union[str, "os.PathLike[str]"]] = None,
        *,
        connect_timeout: float = 1.0,
        read_timeout: float = 5.0,
        max_reply_bytes: int = 1 << 20,
        app: Optional[str] = None,
    ) -> None:
        if app is not None and (not isinstance(app, str) or not app):
            raise ValueError("app must be a non-empty string (an id from hello().apps)")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("connect_timeout and read_timeout must be positive numbers of seconds")
        if max_reply_bytes <= 0:
            raise ValueError("max_reply_bytes must be positive")
        self.socket_path: str = os.fspath(socket_path) if socket_path else (
            os.environ.get("MAGICLINKD_SOCKET") or DEFAULT_SOCKET
        )
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self.max_reply_bytes = int(max_reply_bytes)
        #: The app every op but ``hello`` names in ``params.app``; None sends no ``app`` (a
        #: daemon that serves one app).
        self.app: Optional[str] = app if app is not None else (os.environ.get("MAGICLINKD_APP") or None)
        self._lock = threading.Lock()
        self._conn: Optional[Connection] = None
        self._last_id = 0
        _clients.add(self)

    def __repr__(self) -> str:
        return f"<magiclinkd.Client socket_path={self.socket_path!r} app={self.app!r}>"

    def __enter__(self) -> "Client":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (if any). Safe to call more than once."""
        with self._lock:
            self._drop()

    # --- app operations -------------------------------------------------------------------------

    def hello(self) -> ServerInfo:
        """The daemon's name, version, protocol, ops and apps (never sends ``app``)."""
        return ServerInfo.from_wire(self.call("hello"))

    def start(
        self,
        email: str,
        *,
        redirect: Optional[str] = None,
        ip: Optional[str] = None,
        user_agent: Optional[str] = None,
        locale: Optional[str] = None,
        send: Optional[str] = None,
    ) -> StartResult:
        """Email a sign-in link (or code) to ``email``.

        ``redirect``: where to send the user after sign-in (a path such as ``"/account"`` or a
        URL of an allowed origin; default ``"/"``). ``ip`` and ``user_agent``: the end user's,
        as the app saw them (``ip`` drives the per-IP rate limit: always pass it). ``locale``: a
        BCP 47 tag choosing the mail's language. ``send``: ``"link"`` (default), ``"code"`` or
        ``"both"``. Keep the result's ``flow`` in the browser (an HttpOnly cookie) for
        :meth:`callback`. Raises :class:`~magiclinkd.InvalidEmail`,
        :class:`~magiclinkd.RedirectNotAllowed`, :class:`~magiclinkd.RateLimited`, …
        """
        return StartResult.from_wire(
            self.call("start", {"email": email, "redirect": redirect, "ip": ip, "user_agent": user_agent,
                                "locale": locale, "send": send})
        )

    def callback(
        self,
        token: str,
        *,
        flow: Optional[str] = None,
        confirm: bool = False,
        ip: Optional[str] = None,
        user_agent: Optional[str] = None,
    ) -> Login:
        """Exchange the link's ``token`` for a session (single use).

        ``flow``: the one ``start`` returned, from the browser's cookie. Without it (or with
        another) the daemon raises :class:`~magiclinkd.ConfirmationRequired` (nothing used; call
        again with ``confirm=True`` once the user agreed) or, with strict binding,
        :class:`~magiclinkd.FlowMismatch`. Raises :class:`~magiclinkd.InvalidToken` (``reason``:
        unknown, expired or used) first.
        """
        return Login.from_wire(
            self.call("callback", {"token": token, "flow": flow, "confirm": True if confirm else None, "ip": ip,
                                   "user_agent": user_agent})
        )

    def verify_code(
        self, flow: str, code: str, *, ip: Optional[str] = None, user_agent: Optional[str] = None
    ) -> Login:
        """Sign in with the 6-digit ``code`` the user typed (``start(send="code")`` or
        ``"both"``), in the browser whose ``flow`` it is. Raises :class:`~magiclinkd.InvalidCode`
        (``attempts_left``) or :class:`~magiclinkd.InvalidToken`."""
        return Login.from_wire(self.call("verify_code", {"flow": flow, "code": code, "ip": ip,
                                                         "user_agent": user_agent}))

    def peek(self, token: str, *, flow: Optional[str] = None) -> PeekResult:
        """Look at a link without using it (for a GET page that mail scanners may open)."""
        return PeekResult.from_wire(self.call("peek", {"token": token, "flow": flow}))

    def session(self, session: str, *, ip: Optional[str] = None) -> SessionInfo:
        """The live session's user and expiry; raises :class:`~magiclinkd.InvalidSession`.

        ``ip``: the end user's, so that the daemon can throttle an IP that tries many session
        ids (:class:`~magiclinkd.RateLimited`)."""
        return SessionInfo.from_wire(self.call("session", {"session": session, "ip": ip}))

    def logout(self, session: str) -> None:
        """End the session (idempotent: an unknown or ended session is fine)."""
        self.call("logout", {"session": session})

    def logout_all(self, user_id: str) -> int:
        """End every session of the user; returns how many were live."""
        return _int(self.call("logout_all", {"user_id": user_id}), "revoked")

    # --- admin operations (root, admin_uids or admin_gids only) -----------------------------------

    def admin_status(self) -> Status:
        return Status.from_wire(self.call("admin_status"))

    def admin_sessions(self, *, user_id: Optional[str] = None, email: Optional[str] = None) -> List[SessionRecord]:
        """A user's live sessions, newest first; give exactly one of ``user_id`` and ``email``."""
        result = self.call("admin_sessions", {"user_id": user_id, "email": email})
        return [SessionRecord.from_wire(s) for s in _obj_list(result, "sessions")]

    def admin_revoke(self, *, handle: Optional[str] = None, user_id: Optional[str] = None) -> int:
        """End the session with this ``handle`` (or unique handle prefix), or all of a user's
        sessions; returns how many were ended."""
        return _int(self.call("admin_revoke", {"handle": handle, "user_id": user_id}), "revoked")

    def admin_dead_letters(self, *, limit: Optional[int] = None) -> List[DeadLetter]:
        """Mail that failed for good or whose link expired first, newest first."""
        result = self.call("admin_dead_letters", {"limit": limit})
        return [DeadLetter.from_wire(m) for m in _obj_list(result, "messages")]

    def admin_retry(self, message_id: str) -> RetryResult:
        """Queue a dead letter again."""
        return RetryResult.from_wire(self.call("admin_retry", {"message_id": message_id}))

    def admin_purge(self) -> int:
        """Delete expired rows now; returns how many were removed."""
        return _int(self.call("admin_purge"), "removed")

    def admin_create_user(self, email: str) -> CreatedUser:
        """Create the user of ``email`` before its first login (or return the existing one)."""
        return CreatedUser.from_wire(self.call("admin_create_user", {"email": email}))

    # --- the generic call -------------------------------------------------------------------------

    def call(self, op: str, params: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """Send one op and return its ``result`` object, or raise its error.

        Members of ``params`` whose value is ``None`` are not sent (the protocol treats null as
        absent). The client's ``app`` is added for every op but ``hello`` unless ``params``
        names one. Every per-op method goes through here.
        """
        if not isinstance(op, str):
            raise TypeError("op must be a str")
        request: Dict[str, Any] = {"id": 0, "op": op}
        if self.app is not None and op != "hello" and (params is None or params.get("app") is None):
            params = {**(params or {}), "app": self.app}
        if params is not None:
            request["params"] = {k: v for k, v in params.items() if v is not None}
        with self._lock:
            self._last_id = self._last_id + 1 if self._last_id < _MAX_ID else 1
            request_id = request["id"] = self._last_id
            line = _encode(request)
            raw = self._exchange(line, op, retry=op in SAFE_TO_REPEAT)
            return self._decode(raw, op, request_id)

    def _call_raw(self, line: bytes) -> bytes:
        """Internal (for the protocol test vectors): send ``line`` plus a line feed exactly as
        given and return the reply line, without checking it. No retry."""
        with self._lock:
            return self._exchange(line + b"\n", "raw request", retry=False)

    # --- internals (called with the lock held) ----------------------------------------------------

    def _connection(self) -> Connection:
        conn = self._conn
        if conn is not None and conn.pid != os.getpid():
            # Inherited across fork(): the parent owns that connection. Close only our copy
            # of the descriptor (no shutdown), and never read from or write to it.
            log.debug("magiclinkd: new process, leaving the inherited connection to the parent")
            conn.close()
            conn = self._conn = None
        if conn is not None and not conn.is_idle_and_open():
            log.debug("magiclinkd: idle connection was closed by the daemon; reconnecting")
            self._drop()
            conn = None
        if conn is None:
            conn = self._conn = Connection(self.socket_path, self.connect_timeout, self.max_reply_bytes)
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _exchange(self, line: bytes, op: str, *, retry: bool) -> bytes:
        attempts = 2 if retry else 1
        for attempt in range(1, attempts + 1):
            conn = self._connection()
            try:
                conn.send(line, self.read_timeout)
                reply = conn.read_line(self.read_timeout)
            except ConnectionLost as lost:
                self._drop()
                if attempt < attempts:
                    log.debug("magiclinkd: %s; sending %s again on a new connection", lost.what, op)
                    continue
                outcome = (
                    "" if retry else "; it may or may not have been carried out (not retried: unsafe to repeat)"
                )
                raise MagicLinkConnectionError(f"{op}: {lost.what}{outcome}", request_sent=True) from None
            except socket.timeout:
                # Drop the connection: a late reply must never be read as the next one's.
                self._drop()
                raise MagicLinkTimeout(
                    f"{op}: no reply from magiclinkd within {self.read_timeout:g} s; the connection was dropped",
                    request_sent=True,
                ) from None
            except ProtocolError:
                self._drop()
                raise
            except OSError as exc:
                self._drop()
                raise MagicLinkConnectionError(
                    f"{op}: connection to magiclinkd failed: {exc.strerror or type(exc).__name__}",
                    request_sent=True,
                ) from None
            if conn.buffer:
                # More than one line for one request: the server never does that.
                self._drop()
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    def _decode(self, raw: bytes, op: str, request_id: int) -> Dict[str, Any]:
        try:
            reply = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self._drop()
            raise ProtocolError(f"{op}: the reply from magiclinkd is not JSON", request_sent=True) from None
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            self._drop()
            raise ProtocolError(f"{op}: the reply from magiclinkd is not a reply object", request_sent=True)
        reply_id = reply.get("id")
        same_id = type(reply_id) is int and reply_id == request_id
        if not same_id:
            # "id": null comes with errors about the line itself (request_too_large, after which
            # the daemon closes): still the answer to this request, as replies come in order.
            # Anything else is not our reply. Either way the connection is not trusted again.
            self._drop()
            if not (reply_id is None and reply["ok"] is False):
                raise ProtocolError(f"{op}: the reply's id does not match the request's", request_sent=True)
        if reply["ok"]:
            result = reply.get("result")
            if not isinstance(result, dict):
                self._drop()
                raise ProtocolError(f"{op}: the reply has no result object", request_sent=True)
            return result
        error = reply.get("error")
        if not isinstance(error, dict) or not isinstance(error.get("code"), str):
            self._drop()
            raise ProtocolError(f"{op}: the reply has no valid error object", request_sent=True)
        raise _server_error(error)


def _encode(request: Mapping[str, Any]) -> bytes:
    text = json.dumps(request, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (a str from a bad decode): send it escaped, as JSON allows.
        data = json.dumps(request, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii")
    return data + b"\n"


def _server_error(error: Mapping[str, Any]) -> ServerError:
    message = error.get("message")
    details = error.get("details")
    retryable = error.get("retryable")
    return ServerError.from_wire(
        error["code"],
        message if isinstance(message, str) else "magiclinkd reported an error",
        retryable if isinstance(retryable, bool) else False,
        details if isinstance(details, dict) else {},
    )
