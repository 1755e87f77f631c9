"""Python client for magiclinkd, the passwordless (magic link) login daemon.

    from magiclinkd import Client, InvalidSession

    with Client() as ml:                      # MAGICLINKD_SOCKET or /run/magiclinkd/magiclinkd.sock
        flow = ml.start("alice@example.com", redirect="/account", ip=remote_ip).flow   # → cookie
        login = ml.callback(token, flow=flow, ip=remote_ip)        # login.session → cookie
        info = ml.session(login.session)                            # info.user.email

See README.md for errors, timeouts and thread/fork behaviour.
"""

from ._version import __version__
from .client import DEFAULT_SOCKET, SAFE_TO_REPEAT, Client
from .errors import (
    ERROR_CLASSES,
    InternalError,
    InvalidEmail,
    InvalidRequest,
    ConfirmationRequired,
    FlowMismatch,
    InvalidCode,
    InvalidSession,
    InvalidToken,
    MagicLinkConnectionError,
    MagicLinkError,
    MagicLinkTimeout,
    PermissionDenied,
    ProtocolError,
    RateLimited,
    RedirectNotAllowed,
    RequestTooLarge,
    ServerError,
    TransportError,
    Unavailable,
    UnknownOp,
)
from .results import (
    CreatedUser,
    DeadLetter,
    LinkCounts,
    Login,
    MailCounts,
    PeekResult,
    RetryResult,
    ServerInfo,
    SessionCacheCounts,
    SessionInfo,
    SessionRecord,
    StartResult,
    Status,
    User,
)

__all__ = [
    "__version__",
    "Client",
    "DEFAULT_SOCKET",
    "SAFE_TO_REPEAT",
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
    "ServerInfo",
    "StartResult",
    "PeekResult",
    "User",
    "Login",
    "SessionInfo",
    "MailCounts",
    "LinkCounts",
    "SessionCacheCounts",
    "Status",
    "SessionRecord",
    "DeadLetter",
    "RetryResult",
    "CreatedUser",
]
