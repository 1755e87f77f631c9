"""Typed results of the magiclinkd ops: frozen dataclasses.

Times are integer Unix seconds (UTC), as on the wire. Members of a reply that this version does
not know are ignored. The session id in :class:`Login` is left out of ``repr()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional, Tuple

from .errors import ProtocolError

__all__ = [
    "ServerInfo",
    "StartResult",
    "PeekResult",
    "User",
    "Login",
    "SessionInfo",
    "MailCounts",
    "LinkCounts",
    "Status",
    "SessionRecord",
    "DeadLetter",
    "RetryResult",
    "CreatedUser",
]


@dataclass(frozen=True)
class ServerInfo:
    """``hello``: who answers and what it can do. ``apps``: the ids of the apps the daemon
    serves (pass one as ``Client(app=…)`` when there are several); None from a daemon older
    than apps."""

    server: str
    version: str
    protocol: int
    ops: Tuple[str, ...]
    max_line_bytes: int
    apps: Optional[Tuple[str, ...]] = None

    @classmethod
    def from_wire(cls, r: Mapping[str, Any]) -> "ServerInfo":
        return cls(
            server=_str(r, "server"),
            version=_str(r, "version"),
            protocol=_int(r, "protocol"),
            ops=tuple(_str_list(r, "ops")),
            max_line_bytes=_int(r, "max_line_bytes"),
            apps=tuple(_str_list(r, "apps")) if r.get("apps") is not None else None,
        )


@dataclass(frozen=True)
class StartResult:
    """``start``: the mail was queued; its link (and code) stop working at ``expires_at``.

    ``flow`` is a secret for the browser that asked (not shown by ``repr()``): keep it in an
    ``HttpOnly``, ``SameSite=Lax`` cookie and pass it to ``callback``, ``peek`` and
    ``verify_code``. None from a daemon older than flows.
    """

    expires_at: int
    flow: Optional[str] = field(default=None, repr=False)

    @classmethod
    def from_wire(cls, r: Mapping[str, Any]) -> "StartResult":
        return cls(expires_at=_int(r, "expires_at"), flow=_opt_str(r, "flow"))


@dataclass(frozen=True)
class PeekResult:
    """``peek``: what a link is, without using it. ``reason`` (``unknown``, ``expired``,
    ``used``) only when not ``valid``; ``email_masked`` and ``expires_at`` only for tokens that
    exist."""

    valid: bool
    flow_matches: bool
    reason: Optional[str] = None
    email_masked: Optional[str] = None
    expires_at: Optional[int] = None

    @classmethod
    def from_wire(cls, r: Mapping[str, Any]) -> "PeekResult":
        return cls(
            valid=_bool(r, "valid"),
            flow_matches=_bool(r, "flow_matches"),
            reason=_opt_str(r, "reason"),
            email_masked=_opt_str(r, "email_masked"),
            expires_at=_opt_int(r, "expires_at"),
        )


@dataclass(frozen=True)
class User:
    """A user: ``id`` is a stable lower-case UUID, ``email`` the address as first seen."""

    id: str
    email: str

    @classmethod
    def from_wire(cls, r: Mapping[str, Any]) -> "User":
        return cls(id=_str(r, "id"), email=_str(r, "email"))


@dataclass(frozen=True)
class Login:
    """``callback``: a new session. Set ``session`` as the cookie value (it is secret and not
    shown by ``repr()``); ``redirect`` is where the user wanted to go, already validated by
    the daemon."""

    session: str = field(repr=False)
    expires_at: int
    idle_expires_at: int
    user: User
    redirect: str

    @classmethod
    def from_wire(cls, r: Mapping[str, Any]) -> "Login":
        return cls(
            session=_str(r, "session"),
            expires_at=_int(r, "expires_at"),
            idle_expires_at=_int(r, "idle_expires_at"),
            user=User.from_wire(_obj(r, "user")),
            redirect=_str(r, "redirect"),
        )


@dataclass(frozen=True)
class SessionInfo:
    """``session``: the session is live; whose it is and when it ends."""

    user: User
    expires_at: int
    idle_expires_at: int

    @classmethod
    def from_wire(cls, r: Mapping[str, Any]) -> "SessionInfo":
        return cls(
            user=User.from_wire(_obj(r, "user")),
            expires_at=_int(r, "expires_at"),
            idle_expires_at=_int(r, "idle_expires_at"),
        )


@dataclass(frozen=True)
class MailCounts:
    """Messages of the durable mail queue per state."""

    queued: int
    sending: int
    sent: int
    failed: int
    expired: int

    @classmethod
    def from_wire(cls, r: Mapping[str, Any]) -> "MailCounts":
        return cls(
            queued=_int(r, "queued"),
            sending=_int(r, "sending"),
            sent=_int(r, "sent"),
            failed=_int(r, "failed"),
            expired=_int(r, "expired"),
        )


@dataclass(frozen=True)
class LinkCounts:
    """Links looked at with ``peek``: never used (mail scanners, previews) or then used."""

    peeked_never_used: int
    peeked_then_used: int

    @classmethod
    def from_wire(cls, r: Mapping[str, Any]) -> "LinkCounts":
        return cls(peeked_never_used=_int(r, "peeked_never_used"), peeked_then_used=_int(r, "peeked_then_used"))


@dataclass(frozen=True)
class SessionCacheCounts:
    """The daemon's memory of live sessions: ``capacity`` (0 when off), ``entries`` held,
    ``hits`` (``session`` calls answered from it) and ``misses`` (well-formed ones that were not)."""

    capacity: int
    entries: int
    hits: int
    misses: int

    @classmethod
    def from_wire(cls, r: Mapping[str, Any]) -> "SessionCacheCounts":
        return cls(capacity=_int(r, "capacity"), entries=_int(r, "entries"), hits=_int(r, "hits"), misses=_int(r, "misses"))


@dataclass(frozen=True)
class Status:
    """``admin_status``. ``links`` is None from a daemon older than ``peek``, ``session_cache``
    from one without a session cache."""

    version: str
    started_at: int
    uptime_s: int
    users: int
    live_sessions: int
    mail: MailCounts
    links: Optional[LinkCounts] = None
    session_cache: Optional[SessionCacheCounts] = None

    @classmethod
    def from_wire(cls, r: Mapping[str, Any]) -> "Status":
        return cls(
            version=_str(r, "version"),
            started_at=_int(r, "started_at"),
            uptime_s=_int(r, "uptime_s"),
            users=_int(r, "users"),
            live_sessions=_int(r, "live_sessions"),
            mail=MailCounts.from_wire(_obj(r, "mail")),
            links=LinkCounts.from_wire(_obj(r, "links")) if r.get("links") is not None else None,
            session_cache=(SessionCacheCounts.from_wire(_obj(r, "session_cache"))
                           if r.get("session_cache") is not None else None),
        )


@dataclass(frozen=True)
class SessionRecord:
    """One live session as ``admin_sessions`` lists it. ``handle`` names the session for
    ``admin_revoke`` but cannot be used as one."""

    handle: str
    user_id: str
    email: str
    created_at: int
    expires_at: int
    idle_expires_at: int
    ip: Optional[str] = None
    user_agent: Optional[str] = None

    @classmethod
    def from_wire(cls, r: Mapping[str, Any]) -> "SessionRecord":
        return cls(
            handle=_str(r, "handle"),
            user_id=_str(r, "user_id"),
            email=_str(r, "email"),
            created_at=_int(r, "created_at"),
            expires_at=_int(r, "expires_at"),
            idle_expires_at=_int(r, "idle_expires_at"),
            ip=_opt_str(r, "ip"),
            user_agent=_opt_str(r, "user_agent"),
        )


@dataclass(frozen=True)
class DeadLetter:
    """A mail in state ``failed`` or ``expired`` (``admin_dead_letters``)."""

    message_id: str
    recipient: str
    state: str
    attempts: int
    created_at: int
    expires_at: int
    finished_at: Optional[int] = None
    last_error: Optional[str] = None

    @classmethod
    def from_wire(cls, r: Mapping[str, Any]) -> "DeadLetter":
        return cls(
            message_id=_str(r, "message_id"),
            recipient=_str(r, "recipient"),
            state=_str(r, "state"),
            attempts=_int(r, "attempts"),
            created_at=_int(r, "created_at"),
            expires_at=_int(r, "expires_at"),
            finished_at=_opt_int(r, "finished_at"),
            last_error=_opt_str(r, "last_error"),
        )


@dataclass(frozen=True)
class RetryResult:
    """``admin_retry``: ``retried``, or why not (``not_found``, ``not_a_dead_letter``,
    ``link_expired``)."""

    retried: bool
    reason: Optional[str] = None

    def __bool__(self) -> bool:
        return self.retried

    @classmethod
    def from_wire(cls, r: Mapping[str, Any]) -> "RetryResult":
        return cls(retried=_bool(r, "retried"), reason=_opt_str(r, "reason"))


@dataclass(frozen=True)
class CreatedUser:
    """``admin_create_user``: the user, and whether this call created it."""

    user: User
    created: bool

    @classmethod
    def from_wire(cls, r: Mapping[str, Any]) -> "CreatedUser":
        return cls(user=User.from_wire(_obj(r, "user")), created=_bool(r, "created"))


# --- reading members (a reply that breaks the schema is a ProtocolError) -------------------------


def _bad(name: str) -> ProtocolError:
    return ProtocolError(f"malformed reply from magiclinkd: member {name!r} is missing or has the wrong type",
                         request_sent=True)


def _str(r: Mapping[str, Any], name: str) -> str:
    value = r.get(name)
    if not isinstance(value, str):
        raise _bad(name)
    return value


def _opt_str(r: Mapping[str, Any], name: str) -> Optional[str]:
    value = r.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(name)
    return value


def _int(r: Mapping[str, Any], name: str) -> int:
    value = r.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name)
    return value


def _bool(r: Mapping[str, Any], name: str) -> bool:
    value = r.get(name)
    if not isinstance(value, bool):
        raise _bad(name)
    return value


def _opt_int(r: Mapping[str, Any], name: str) -> Optional[int]:
    if r.get(name) is None:
        return None
    return _int(r, name)


def _obj(r: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = r.get(name)
    if not isinstance(value, dict):
        raise _bad(name)
    return value


def _str_list(r: Mapping[str, Any], name: str) -> List[str]:
    value = r.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(name)
    return list(value)


def _obj_list(r: Mapping[str, Any], name: str) -> List[Mapping[str, Any]]:
    value = r.get(name)
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _bad(name)
    return list(value)
