"""The exceptions raised by the magiclinkd client.

Everything the client raises on purpose derives from :class:`MagicLinkError`, in two branches:

- :class:`TransportError`: the daemon could not be reached or did not answer properly
  (:class:`MagicLinkConnectionError`, :class:`MagicLinkTimeout`, :class:`ProtocolError`).
  ``request_sent`` tells whether the request may have reached the daemon (then its outcome is
  unknown).
- :class:`ServerError`: the daemon answered with an error. ``code``, ``message``, ``retryable``
  and ``details`` are the wire error's; each wire code has its own subclass, and a code this
  version does not know yet raises :class:`ServerError` itself.

Messages never contain tokens, session ids or other secrets.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple, Type

__all__ = [
    "MagicLinkError",
    "TransportError",
    "MagicLinkConnectionError",
    "MagicLinkTimeout",
    "ProtocolError",
    "ServerError",
    "InvalidRequest",
    "UnknownOp",
    "RequestTooLarge",
    "InvalidEmail",
    "RedirectNotAllowed",
    "RateLimited",
    "InvalidToken",
    "InvalidSession",
    "InvalidCode",
    "ConfirmationRequired",
    "FlowMismatch",
    "Unavailable",
    "InternalError",
    "PermissionDenied",
    "ERROR_CLASSES",
]


class MagicLinkError(Exception):
    """Base class of every error raised by this package."""


# --- transport ----------------------------------------------------------------------------------


class TransportError(MagicLinkError):
    """The exchange with the daemon failed below the protocol's error replies.

    ``request_sent`` is True when the request was (or may have been) written before the failure:
    the daemon may then have carried it out. The client already retried the ops that are safe
    to repeat (``hello``, ``session`` and the read-only admin ops) once on a fresh connection.
    """

    def __init__(self, message: str, *, request_sent: bool = False) -> None:
        super().__init__(message)
        self.request_sent = request_sent

    def __reduce__(self) -> Tuple[Any, ...]:
        return (_rebuild_transport_error, (type(self), str(self), self.request_sent))


def _rebuild_transport_error(cls: Type[TransportError], message: str, request_sent: bool) -> TransportError:
    return cls(message, request_sent=request_sent)


class MagicLinkConnectionError(TransportError, ConnectionError):
    """Cannot connect (no socket, refused, permission) or the connection was lost.

    Also a built-in :class:`ConnectionError` (so an :class:`OSError`).
    """


class MagicLinkTimeout(TransportError, TimeoutError):
    """The connect timeout or the read timeout expired.

    Also a built-in :class:`TimeoutError`. After a read timeout the connection is dropped, so a
    late reply is never taken for the answer to a later request.
    """


class ProtocolError(TransportError):
    """The reply is not what the protocol promises: not JSON, wrong ``id``, too long, …"""


# --- server errors ------------------------------------------------------------------------------


class ServerError(MagicLinkError):
    """The daemon answered with an error (``{"ok": false, "error": {...}}``).

    Raised as such for codes this client does not know: use ``retryable`` to decide whether to
    try again.
    """

    #: The wire code of the subclass; empty on the base class.
    CODE = ""

    def __init__(
        self,
        code: str,
        message: str,
        retryable: bool = False,
        details: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.details: Dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, retryable={self.retryable!r})"

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), (self.code, self.message, self.retryable, self.details))

    @classmethod
    def from_wire(cls, code: str, message: str, retryable: bool, details: Mapping[str, Any]) -> "ServerError":
        """The exception for one wire error: the code's subclass, or ServerError for new codes."""
        return ERROR_CLASSES.get(code, ServerError)(code, message, retryable, details)


def _str_detail(details: Mapping[str, Any], name: str) -> Optional[str]:
    value = details.get(name)
    return value if isinstance(value, str) else None


def _int_detail(details: Mapping[str, Any], name: str) -> Optional[int]:
    value = details.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class InvalidRequest(ServerError):
    """Malformed request or a missing or wrong-typed member (``field`` names it when known)."""

    CODE = "invalid_request"

    @property
    def field(self) -> Optional[str]:
        return _str_detail(self.details, "field")


class UnknownOp(ServerError):
    """The daemon does not know the op (an older daemon?)."""

    CODE = "unknown_op"

    @property
    def op(self) -> Optional[str]:
        return _str_detail(self.details, "op")


class RequestTooLarge(ServerError):
    """The request line was longer than the daemon's ``max_line_bytes``."""

    CODE = "request_too_large"

    @property
    def max_line_bytes(self) -> Optional[int]:
        return _int_detail(self.details, "max_line_bytes")


class InvalidEmail(ServerError):
    """The address is not one plain ``local@domain`` address."""

    CODE = "invalid_email"


class RedirectNotAllowed(ServerError):
    """The redirect is neither a local path nor a URL of an allowed origin."""

    CODE = "redirect_not_allowed"


class RateLimited(ServerError):
    """Too many ``start`` requests; nothing was sent. Try again in ``retry_after`` seconds."""

    CODE = "rate_limited"

    @property
    def retry_after(self) -> Optional[int]:
        """Seconds until one more request would be accepted (``details.retry_after_s``)."""
        return _int_detail(self.details, "retry_after_s")


class InvalidToken(ServerError):
    """The link (or, for ``verify_code``, the flow's login) is not usable; ``reason`` is
    ``"unknown"``, ``"expired"`` or ``"used"``."""

    CODE = "invalid_token"

    @property
    def reason(self) -> Optional[str]:
        return _str_detail(self.details, "reason")


class InvalidSession(ServerError):
    """Not a live session (unknown, logged out, expired or idle-expired)."""

    CODE = "invalid_session"


class InvalidCode(ServerError):
    """``verify_code``: a wrong code; ``attempts_left`` more may be tried for this flow (0: the
    code is dead, the link still works; a new ``start`` sends a new code)."""

    CODE = "invalid_code"

    @property
    def attempts_left(self) -> Optional[int]:
        return _int_detail(self.details, "attempts_left")


class ConfirmationRequired(ServerError):
    """``callback`` without the flow of the link's ``start`` (another browser or device, a mail
    scanner, or a link someone else requested). Nothing was consumed: show ``email_masked`` and
    ``requested_at`` to the user and repeat the call with ``confirm=True`` if they agree."""

    CODE = "confirmation_required"

    @property
    def email_masked(self) -> Optional[str]:
        return _str_detail(self.details, "email_masked")

    @property
    def requested_at(self) -> Optional[int]:
        return _int_detail(self.details, "requested_at")


class FlowMismatch(ServerError):
    """``callback`` without the link's flow when the daemon runs with ``flow_binding: strict``:
    the link only works in the browser that asked for it (it is still usable there)."""

    CODE = "flow_mismatch"


class Unavailable(ServerError):
    """The daemon cannot serve now (busy, shutting down, mail queue full); retryable."""

    CODE = "unavailable"

    @property
    def reason(self) -> Optional[str]:
        return _str_detail(self.details, "reason")


class InternalError(ServerError):
    """A bug in the daemon; the message says nothing about internals."""

    CODE = "internal_error"


class PermissionDenied(ServerError):
    """An admin op from a peer that is not one of the daemon's administrators."""

    CODE = "permission_denied"


#: Wire code → exception class.
ERROR_CLASSES: Mapping[str, Type[ServerError]] = {
    c.CODE: c
    for c in (
        InvalidRequest,
        UnknownOp,
        RequestTooLarge,
        InvalidEmail,
        RedirectNotAllowed,
        RateLimited,
        InvalidToken,
        InvalidSession,
        InvalidCode,
        ConfirmationRequired,
        FlowMismatch,
        Unavailable,
        InternalError,
        PermissionDenied,
    )
}
