"""One connection to the daemon's Unix socket: connect, write a line, read a line.

Internal: the public API is :class:`magiclinkd.Client`. Nothing here logs or formats the bytes
that are sent or received (they hold tokens and session ids).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import time

from .errors import MagicLinkConnectionError, MagicLinkTimeout, ProtocolError


class ConnectionLost(Exception):
    """The peer closed or reset the connection (EOF, EPIPE, ECONNRESET). Internal: the client
    turns it into a retry or a :class:`MagicLinkConnectionError`."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def connect(path: str, timeout: float) -> socket.socket:
    """A connected Unix stream socket, or MagicLinkConnectionError / MagicLinkTimeout.

    A listener whose backlog is full makes a non-blocking AF_UNIX connect fail at once with
    EAGAIN instead of waiting: that is retried until the connect timeout is over.
    """
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.connect(path)
            return sock
        except BlockingIOError:
            sock.close()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MagicLinkTimeout(
                    f"could not connect to magiclinkd at {path} within {timeout:g} s (its backlog is full)"
                ) from None
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.05)
        except socket.timeout:
            sock.close()
            raise MagicLinkTimeout(f"could not connect to magiclinkd at {path} within {timeout:g} s") from None
        except OSError as exc:
            sock.close()
            raise MagicLinkConnectionError(f"cannot connect to magiclinkd at {path}: {_why(exc)}") from None


def _why(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such socket (is the daemon running? is the path right?)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (no daemon is listening on that socket)"
    if isinstance(exc, PermissionError):
        return "permission denied (the socket's owner, group and mode decide who may connect)"
    if exc.errno == errno.ENOTSOCK or exc.errno == errno.ENOTDIR:
        return "not a socket"
    return exc.strerror or str(exc)


class Connection:
    """A connected socket plus the bytes read past the last reply line."""

    def __init__(self, path: str, connect_timeout: float, max_reply_bytes: int) -> None:
        self.sock = connect(path, connect_timeout)
        self.pid = os.getpid()
        self.max_reply_bytes = max_reply_bytes
        self.buffer = bytearray()

    def close(self) -> None:
        """Close this process's descriptor. Never shutdown(): after a fork another process may
        share the socket, and closing a descriptor does not end the connection for it."""
        try:
            self.sock.close()
        except OSError:
            pass

    def is_idle_and_open(self) -> bool:
        """True when the connection can carry a request: nothing is waiting to be read and the
        daemon has not closed its side. The server never speaks first, so readable means EOF,
        a reset, or bytes nobody asked for: in every case the connection is not reusable."""
        if self.buffer:
            return False
        try:
            poller = select.poll()
            poller.register(self.sock, select.POLLIN | select.POLLERR | select.POLLHUP)
            events = poller.poll(0)
        except (OSError, ValueError):
            return False
        return not events

    def send(self, data: bytes, timeout: float) -> None:
        """Write all of ``data`` or raise ConnectionLost / socket.timeout / OSError."""
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            raise ConnectionLost("the daemon closed the connection while the request was sent") from None

    def read_line(self, timeout: float) -> bytes:
        """The next line, without its line feed; split on 0x0A only.

        Raises ConnectionLost (EOF or reset before a whole line), socket.timeout (no whole line
        within ``timeout`` seconds in all) or ProtocolError (a line longer than the cap).
        """
        deadline = time.monotonic() + timeout
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                if end > self.max_reply_bytes:
                    raise self._too_long()
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 1]
                return line
            if len(self.buffer) > self.max_reply_bytes:
                raise self._too_long()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("timed out")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
                raise ConnectionLost("the connection was reset before the reply came") from None
            if not chunk:
                raise ConnectionLost("the daemon closed the connection before it replied")
            self.buffer += chunk

    def _too_long(self) -> ProtocolError:
        return ProtocolError(
            f"reply from magiclinkd is longer than {self.max_reply_bytes} bytes (max_reply_bytes)",
            request_sent=True,
        )
