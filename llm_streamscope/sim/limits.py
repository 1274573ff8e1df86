"""The simulator server's bounds: what any client, however it behaves, can hold.

- A connection that sends nothing (and a client that reads nothing) for
  :attr:`Limits.idle_timeout_s` is closed: idle keep-alive connections do not
  pile up, each holding a thread. While a request is awaited and read, Python's
  socket timeout applies; while the response is sent, the kernel's (``SO_SNDTIMEO``):
  a Python timeout polls before every send, and the stream's sends stay as they were.
- At most :attr:`Limits.max_connections` connections are served at once; one
  more is answered ``503`` at once, in the accepting thread, with no thread of
  its own, and closed once the client has read it.
- A request body is read only when its ``Content-Length`` is a whole number of
  bytes (else ``400``) no larger than :attr:`Limits.max_body_bytes` (else ``413``).

The server listens on IPv4 or IPv6, as the host given is (``::1``, ``::``);
:func:`url_host` writes an IPv6 address in a URL's brackets.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..views.sanitize import terminal_line
from .engine import PacedSocket

_REFUSED_KEPT_S = 1.0
"""How long a refused connection stays open for its client to read the 503."""
_REFUSED_MOST = 1024
"""Refused connections kept open at most; beyond, the oldest is closed at once."""


@dataclass(frozen=True)
class Limits:
    """How much one server takes from its clients."""

    max_connections: int = 256
    idle_timeout_s: float = 30.0
    max_body_bytes: int = 32 * 1024 * 1024


DEFAULT_LIMITS = Limits()


class BodyError(Exception):
    """A request body not to be read: its HTTP status and the reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def body_length(headers: Message | Mapping[str, str], limits: Limits) -> int:
    """The body's length from the request's ``Content-Length``; :class:`BodyError` if bad.

    >>> body_length({}, DEFAULT_LIMITS), body_length({"Content-Length": " 7 "}, DEFAULT_LIMITS)
    (0, 7)
    >>> body_length({"Content-Length": "-1"}, DEFAULT_LIMITS)
    Traceback (most recent call last):
    ...
    llm_streamscope.sim.limits.BodyError: Content-Length must be a whole number of bytes, not '-1'
    """
    most = limits.max_body_bytes
    text = (headers.get("Content-Length") or "0").strip()
    if not (text.isascii() and text.isdigit()):
        raise BodyError(400, f"Content-Length must be a whole number of bytes, not {text[:40]!r}")
    length = int(text)
    if length > most:
        raise BodyError(413, f"The request body ({length:,} bytes) is over {most:,} bytes.")
    return length


def url_host(host: str) -> str:
    """``host`` as a URL writes it: an IPv6 address in brackets.

    >>> url_host("127.0.0.1"), url_host("::1")
    ('127.0.0.1', '[::1]')
    """
    return f"[{host}]" if ":" in host else host


def _busy_answer(most: int) -> bytes:
    body = json.dumps(
        {
            "error": {
                "message": f"The simulator is serving {most} connections, its most; "
                "try again shortly.",
                "type": "server_error",
                "param": None,
                "code": "too_many_connections",
            }
        }
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nServer: streamscope-sim\r\n"
        "Content-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class LimitedHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server held to :class:`Limits`, on IPv4 or IPv6."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: Any, limits: Limits) -> None:
        host = address[0]
        if not host:
            raise ValueError("no address to listen on (0.0.0.0 or :: for every one)")
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.limits = limits
        self._open = 0
        self._open_lock = threading.Lock()
        self._refused: list[tuple[socket.socket, float]] = []
        self._busy = _busy_answer(limits.max_connections)
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        # The same connection, as a socket whose sends a response can cap (bandwidth).
        sock = PacedSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
        # Without TCP_NODELAY a small write can wait for the previous one's ACK
        # (Nagle + delayed ACK): the first event stalls ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        seconds, fraction = divmod(self.limits.idle_timeout_s, 1)
        timeval = struct.pack("ll", int(seconds), int(fraction * 1_000_000))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        return sock, address

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            busy = self._open >= self.limits.max_connections
            if not busy:
                self._open += 1
        if busy:
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: the connection is not served
            self._closed()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._closed()

    def _closed(self) -> None:
        with self._open_lock:
            self._open -= 1

    def _refuse(self, sock: socket.socket) -> None:
        """Answer 503 without a thread; the socket is closed once the client has read it
        (closing it with the request unread would reset the connection, answer and all)."""
        try:
            sock.setblocking(False)
            sock.send(self._busy)  # a few hundred bytes: they fit the send buffer
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        self._refused.append((sock, time.monotonic() + _REFUSED_KEPT_S))
        while len(self._refused) > _REFUSED_MOST:
            self._refused.pop(0)[0].close()

    def service_actions(self) -> None:
        """Between accepts (at least every poll interval): close the refused
        connections whose clients have read their answer and hung up, or had time to."""
        super().service_actions()
        now = time.monotonic()
        kept = []
        for sock, deadline in self._refused:
            if _hung_up(sock) or now > deadline:
                sock.close()
            else:
                kept.append((sock, deadline))
        self._refused = kept

    def server_close(self) -> None:
        super().server_close()
        for sock, _ in self._refused:
            sock.close()
        self._refused = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (the SDKs close a connection after an error status
        # and retry on a new one) is not the server's error: no traceback on stderr,
        # which in tests is the stderr of the very run being checked. Nor is one that
        # stopped reading (the kernel's send timeout: EAGAIN).
        if isinstance(sys.exc_info()[1], (ConnectionError, BlockingIOError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class LimitedHandler(BaseHTTPRequestHandler):
    """A request handler of :class:`LimitedHTTPServer`: requests awaited and read
    under the idle timeout; ``read_body`` reads only a body within the limits."""

    server: LimitedHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """A request logged (``--verbose``) by the terminal rule: its path is the client's."""
        line = f"{self.address_string()} - - [{self.log_date_time_string()}] {format % args}"
        sys.stderr.write(terminal_line(line) + "\n")

    def handle_one_request(self) -> None:
        self.connection.settimeout(self.server.limits.idle_timeout_s)
        super().handle_one_request()

    def read_body(self) -> bytes:
        """The request's body; :class:`BodyError` when its length is not to be read.
        The response is then sent in blocking mode, under the kernel's send timeout."""
        raw = self.rfile.read(body_length(self.headers, self.server.limits))
        self.connection.settimeout(None)
        return raw


def _hung_up(sock: socket.socket) -> bool:
    """Whether a refused connection's client has closed it; what it sent is dropped."""
    try:
        for _ in range(16):  # a client that keeps sending does not keep the server here
            if not sock.recv(65536):  # non-blocking since refused
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    return False
