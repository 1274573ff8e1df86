"""The live tap: every socket read of a request, timed, underneath llm's HTTP client.

While a :class:`WireTap` is entered, the ``connect_tcp`` of the HTTP cores'
network backends is wrapped: ``httpcore2`` (the openai and anthropic SDKs, so
llm's OpenAI models, streamscope-sim and llm-anthropic) and ``httpcore``
(httpx, so llm-gemini), each in its sync (``SyncBackend``) and async
(``AnyIOBackend``) form. Every connection opened meanwhile is a tapped stream
whose ``read`` does one ``time.perf_counter_ns()`` and one list append - nothing
else - so the timing is as close to the socket as Python gets, and the client
above it runs as before. Decoding (:mod:`.http1`, then the event decoders)
happens afterwards.

What is recorded, and what never is: the post-TLS bytes the connection read (a
proxy's ``CONNECT`` reply before TLS is dropped); from each request, only the
method and the path of its request line, without the query string (Gemini's
``key=``). Request headers and bodies are written, never recorded.

Use::

    with WireTap() as tap:
        log = tap.start()          # right before each response's request
        for chunk in response: ...
        http = log.response()      # status, kept headers, body Reads timed per read

On exit every backend is restored (even after an error) and the connections
still open stop recording; outside the ``with`` nothing is wrapped at all.
"""

from __future__ import annotations

import functools
import importlib
import socket
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .http1 import HttpResponse, parse_response

_clock = time.perf_counter_ns

BACKENDS = (
    ("httpcore2._backends.sync", "SyncBackend"),
    ("httpcore2._backends.anyio", "AnyIOBackend"),
    ("httpcore._backends.sync", "SyncBackend"),
    ("httpcore._backends.anyio", "AnyIOBackend"),
)
"""The network backends whose ``connect_tcp`` the tap wraps (module, class); the
``AnyIOBackend`` ones are async. A module that is not installed is skipped."""

COVERED_MODULES = ("llm.default_plugins.openai_models", "llm_anthropic", "llm_gemini")
"""Modules of llm model classes whose requests go through a tapped backend."""


def covers(model: Any) -> bool:
    """Whether ``model`` (an llm model, sync or async) makes its requests through a
    transport the tap sees: llm's OpenAI models (and streamscope-sim, one of them),
    llm-anthropic's and llm-gemini's."""
    return any(cls.__module__ in COVERED_MODULES for cls in type(model).__mro__)


@dataclass
class WireLog:
    """What one request read on the wire, filled in by the tap.

    Times are ``time.perf_counter_ns()`` values (the clock of llm's capture). If the
    client retried, the log holds the last request only: the one whose response
    llm went on with.
    """

    connect_ns: int | None = None
    """When the connection's ``connect_tcp`` was called (None: not seen)."""
    connected_ns: int | None = None
    """When the TCP connection was up."""
    tls_ns: int | None = None
    """When the TLS handshake was done (None: plain HTTP)."""
    request_ns: int | None = None
    """The request's first write."""
    host: str | None = None
    """The host asked for (through a proxy: the tunnel's TLS server name)."""
    port: int | None = None
    scheme: str | None = None
    """``http`` or ``https``."""
    alpn: str | None = None
    """The TLS ALPN protocol agreed (``http/1.1``; ``h2`` cannot be parsed here)."""
    method: str | None = None
    path: str | None = None
    """The request target's path, never its query string."""
    reused: bool = False
    """The connection had carried an earlier request (a pooled connection): its
    connect times are from then."""
    reads: list[tuple[int, bytes]] = field(default_factory=list)
    """Every read of the connection since the request: (perf_counter_ns, bytes)."""

    def response(self) -> HttpResponse | None:
        """The response parsed from :attr:`reads` (:func:`.http1.parse_response`);
        None when nothing was read. Raises :class:`~.events.WireError` when what
        was read is not HTTP/1.x."""
        if not any(data for _, data in self.reads):
            return None
        return parse_response(self.reads)


def _discard(item: object) -> None:
    """Where a tapped stream's reads go while no log wants them."""


# Linux's SO_TIMESTAMPNS (the socket module does not name it); elsewhere, none.
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None)
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size) if _SO_TIMESTAMPNS is not None else 0


class _ArrivalSocket:
    """A plain TCP socket whose ``recv`` also reads when the kernel received the
    newest bytes it returns (``SO_TIMESTAMPNS``).

    A read returns when llm's client asks for the bytes, which on a busy client is
    later than they arrived: by its work on the previous chunk (0.5-5 ms, more on
    the first). The kernel's receive time does not depend on the client. Only on a
    plain connection: a TLS socket reads the kernel's bytes itself. Where TCP
    merged several segments into one read, the time is the newest one's.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received_ns: int | None = None
        """``CLOCK_REALTIME`` ns of the newest segment of the last ``recv``."""
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)  # type: ignore[arg-type]

    def recv(self, max_bytes: int, flags: int = 0) -> bytes:
        data, ancillary, _, _ = self.sock.recvmsg(max_bytes, _ANCILLARY, flags)
        self.received_ns = None
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                self.received_ns = seconds * 1_000_000_000 + nanoseconds
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


@dataclass
class _Connection:
    """What a tapped stream knows of its connection (passed on through ``start_tls``)."""

    host: str
    port: int
    connect_ns: int
    connected_ns: int
    scheme: str = "http"
    tls_ns: int | None = None
    alpn: str | None = None
    requests: int = 0
    tunnel: str | None = None
    """The authority of a ``CONNECT`` sent on it (``host:port``)."""

    def after_tls(self, server_hostname: str | None, stream: Any) -> _Connection:
        """The same connection once TLS is up (through a proxy: to the tunnel's end)."""
        host, port = self.host, self.port
        if self.tunnel is not None:
            tunnel_host, _, tunnel_port = self.tunnel.rpartition(":")
            host, port = tunnel_host, int(tunnel_port) if tunnel_port.isdigit() else 443
        ssl_object = stream.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        return _Connection(
            server_hostname or host,
            port,
            self.connect_ns,
            self.connected_ns,
            "https",
            _clock(),
            alpn,
        )


def request_line(data: bytes | memoryview) -> tuple[str | None, str | None]:
    """Method and path (no query string, no fragment) of the request line that
    starts ``data``; (None, None) if it is not one. Nothing after the line is
    looked at. A ``CONNECT``'s target is its authority.

    >>> request_line(b"POST /v1beta/models/g:streamGenerateContent?key=K HTTP/1.1\\r\\nX: y")
    ('POST', '/v1beta/models/g:streamGenerateContent')
    >>> request_line(b"GET http://example.com/a/b?q=1 HTTP/1.1\\r\\n")
    ('GET', '/a/b')
    """
    head = bytes(data[:8192])
    end = head.find(b"\r\n")
    parts = head[: end if end >= 0 else len(head)].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return None, None
    method = parts[0].decode("ascii", "replace")
    target = parts[1].decode("ascii", "replace")
    if method == "CONNECT":
        return method, target
    if "://" in target:  # absolute form (a plain-HTTP proxy): drop scheme and authority
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    return method, target.split("?", 1)[0].split("#", 1)[0]


class _Tapped:
    """A network stream of a backend, with its reads recorded into the tap's log.

    The read path is :meth:`read` in the sync/async subclasses: the inner read,
    one clock read, one append. Which log a read goes to is settled at the first
    write of each request (:meth:`_request`), never per read.
    """

    def __init__(self, stream: Any, tap: WireTap, connection: _Connection) -> None:
        self._stream = stream
        self._tap = tap
        self._connection = connection
        self._log: WireLog | None = None
        self._reads: list[tuple[int, bytes]] | None = None
        self._append: Callable[[tuple[int, bytes]], None] = _discard
        self._arrivals: _ArrivalSocket | None = None
        self._floor = 0
        """No read is timed before this: the request, then the read before (a kernel
        time is converted to our clock with a few microseconds of jitter)."""
        if tap._streams is not None:
            tap._streams.add(self)

    def _time_arrivals(self) -> None:
        """Time this plain connection's reads by the kernel's receive time, from now
        on (never before a ``CONNECT`` or TLS: ``start_tls`` needs the real socket)."""
        inner = getattr(self._stream, "_sock", None)
        if _SO_TIMESTAMPNS is None or type(inner) is not socket.socket:
            return
        try:
            self._arrivals = _ArrivalSocket(inner)
        except OSError:
            return
        self._stream._sock = self._arrivals

    def _request(self, buffer: bytes | memoryview) -> None:
        """Before a write: if it starts a request, point the reads at the current log."""
        log = self._tap.current
        reads = self._reads
        if log is not None and log is self._log and log.reads is reads and not reads:
            return  # a later write of the request (its body): nothing read since the first
        if log is None:
            self._log, self._reads, self._append = None, None, _discard
            return
        now = _clock()
        method, path = request_line(buffer)
        connection = self._connection
        if method == "CONNECT":
            connection.tunnel = path
        elif connection.scheme == "http" and self._arrivals is None and _sync(self):
            self._time_arrivals()
        if log.request_ns is not None:
            log.reads = []  # an earlier request (a retry, a proxy's CONNECT): keep this one
        log.connect_ns, log.connected_ns = connection.connect_ns, connection.connected_ns
        log.tls_ns, log.alpn = connection.tls_ns, connection.alpn
        log.host, log.port, log.scheme = connection.host, connection.port, connection.scheme
        log.method, log.path = method, path
        log.reused = connection.requests > 0
        log.request_ns = self._floor = now
        connection.requests += 1
        self._log, self._reads, self._append = log, log.reads, log.reads.append

    def _tls(self, inner: Any, server_hostname: str | None) -> _Tapped:
        """The stream ``start_tls`` returned, tapped in turn; this one stops recording
        (what it read, e.g. a proxy's reply to CONNECT, is not part of the response)."""
        self._append = _discard
        if self._tap._streams is None:  # the tap was exited meanwhile
            return inner  # type: ignore[no-any-return]
        return type(self)(inner, self._tap, self._connection.after_tls(server_hostname, inner))

    def _detach(self) -> None:
        """Stop recording for good: reads and writes go straight to the inner stream."""
        if self._arrivals is not None:
            self._stream._sock = self._arrivals.sock
            self._arrivals = None
        self.read = self._stream.read  # type: ignore[method-assign]
        self.write = self._stream.write  # type: ignore[method-assign]
        self._append = _discard

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _sync(stream: _Tapped) -> bool:
    return isinstance(stream, _SyncTapped)


class _SyncTapped(_Tapped):
    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data: bytes = self._stream.read(max_bytes, timeout)
        now = _clock()
        arrivals = self._arrivals
        if arrivals is not None and arrivals.received_ns is not None:
            # The kernel's clock is the wall clock: how long ago, on ours.
            now = max(now - max(0, time.time_ns() - arrivals.received_ns), self._floor)
            self._floor = now
        self._append((now, data))
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._request(buffer)
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> Any:
        return self._tls(
            self._stream.start_tls(ssl_context, server_hostname, timeout), server_hostname
        )


class _AsyncTapped(_Tapped):
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data: bytes = await self._stream.read(max_bytes, timeout)
        self._append((_clock(), data))
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._request(buffer)
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> Any:
        inner = await self._stream.start_tls(ssl_context, server_hostname, timeout)
        return self._tls(inner, server_hostname)


def _tapped_connect(original: Callable[..., Any], tap: WireTap) -> Callable[..., Any]:
    """``connect_tcp`` of a sync backend, returning tapped streams."""

    @functools.wraps(original)
    def connect_tcp(backend: Any, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        start = _clock()
        stream = original(backend, host, port, *args, **kwargs)
        return _SyncTapped(stream, tap, _Connection(host, port, start, _clock()))

    return connect_tcp


def _tapped_async_connect(original: Callable[..., Any], tap: WireTap) -> Callable[..., Any]:
    """``connect_tcp`` of an async backend, returning tapped streams."""

    @functools.wraps(original)
    async def connect_tcp(backend: Any, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        start = _clock()
        stream = await original(backend, host, port, *args, **kwargs)
        return _AsyncTapped(stream, tap, _Connection(host, port, start, _clock()))

    return connect_tcp


def backend_classes() -> list[type]:
    """The installed backend classes of :data:`BACKENDS`."""
    classes = []
    for module_name, class_name in BACKENDS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        classes.append(getattr(module, class_name))
    return classes


_entered_lock = threading.Lock()
_entered: list[WireTap] = []


class WireTap:
    """Records the socket reads of HTTP requests while entered (see the module doc).

    One tap at a time per process: entering a second raises ``RuntimeError``. A log
    follows one request at a time (llm makes one at a time): requests made in
    parallel while one log is current would take it from each other.
    """

    covers = staticmethod(covers)

    def __init__(self) -> None:
        self.current: WireLog | None = None
        """The log the next request's reads go to (set by :meth:`start`)."""
        self._originals: list[tuple[type, Any]] = []
        self._streams: weakref.WeakSet[_Tapped] | None = None

    def start(self) -> WireLog:
        """A fresh log for the next request, made current; call it right before each
        response's request. The log then holds that request's reads (if the client
        retries, those of its last attempt)."""
        self.current = WireLog()
        return self.current

    def __enter__(self) -> WireTap:
        with _entered_lock:
            if _entered:
                raise RuntimeError("a WireTap is already entered")
            _entered.append(self)
        self._streams = weakref.WeakSet()
        try:
            for cls in backend_classes():
                original = cls.__dict__["connect_tcp"]
                is_async = cls.__name__ == "AnyIOBackend"
                wrap = _tapped_async_connect if is_async else _tapped_connect
                self._originals.append((cls, original))
                cls.connect_tcp = wrap(original, self)  # type: ignore[attr-defined]
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()

    def _restore(self) -> None:
        try:
            while self._originals:
                cls, original = self._originals.pop()
                cls.connect_tcp = original  # type: ignore[attr-defined]
            streams, self._streams = self._streams, None
            for stream in list(streams or ()):
                stream._detach()
        finally:
            with _entered_lock:
                if self in _entered:
                    _entered.remove(self)
