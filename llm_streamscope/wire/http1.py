"""HTTP/1.1 responses from the raw bytes a connection read, each body byte kept
with the time of the socket read that carried it.

Pure: the input is what :mod:`.tap` records, a list of ``(t_ns, bytes)`` socket
reads (post-TLS plaintext), and the output is one :class:`HttpResponse` per
response found on the connection. The body is de-framed (``Transfer-Encoding:
chunked``, ``Content-Length``, or read until the connection closed, RFC 9112
section 6.3) and decompressed (``Content-Encoding`` gzip or deflate) one read at
a time, so every body :class:`~.events.Read` has the time of the socket read
whose bytes produced it, however the framing split across reads.

>>> reads = [(10, b"HTTP/1.1 200 OK\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n5\\r"),
...          (20, b"\\nhello\\r\\n0\\r\\n\\r\\n")]
>>> response = parse_response(reads)
>>> response.status, response.headers_ns, response.body, response.complete
(200, 10, (Read(t_ns=20, data=b'hello'),), True)
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from .events import Read, WireError

KEPT_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "date",
        "server",
        "server-timing",
        "x-request-id",
        "request-id",
        "openai-processing-ms",
        "openai-model",
        "openai-version",
        "retry-after",
    }
)
"""The only response headers kept (lower-case names): what describes the stream and
its timing. Never cookies or anything that could carry a credential."""

_NO_BODY = (204, 304)
_HEX_DIGITS = b"0123456789abcdefABCDEF"


@dataclass(frozen=True)
class HttpResponse:
    """One HTTP/1.x response as it arrived.

    ``body`` holds one :class:`~.events.Read` per socket read that carried body
    bytes (after de-chunking and decompression), timed by that read. Times are
    whatever the reads carried (the tap's ``perf_counter_ns``).
    """

    status: int
    reason: str
    version: str
    headers: tuple[tuple[str, str], ...]
    """Response headers from :data:`KEPT_HEADERS` only, names lower-cased, in order."""
    headers_ns: int | None
    """Time of the read that completed the header block."""
    body: tuple[Read, ...]
    complete: bool
    """The body ended as its framing says (the last chunk, all of Content-Length,
    or the connection's close for a body read until close)."""
    header_bytes: int
    """Bytes of the status line and header block on the wire."""
    wire_bytes: int
    """All bytes of this response on the wire: headers, framing, (compressed) body."""
    error: WireError | None = None
    """What stopped the parse early (a bad chunk size, an undecodable body); the
    body before it is kept. Offsets are of the connection's bytes."""

    def header(self, name: str) -> str | None:
        """The value of a kept header (first occurrence), by case-insensitive name."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    @property
    def body_bytes(self) -> bytes:
        """The whole body, joined."""
        return b"".join(r.data for r in self.body)


class _Decompressor:
    """Content-Encoding gzip / deflate, one piece at a time."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        # 32 + MAX_WBITS: a gzip or zlib header, detected; deflate may also come raw.
        wbits = 16 + zlib.MAX_WBITS if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self._z = zlib.decompressobj(wbits)
        self._first = True

    def feed(self, data: bytes) -> bytes:
        if self._first and self.encoding == "deflate" and data:
            self._first = False
            if data[0] & 0x0F != 8:  # no zlib header: a raw deflate stream (RFC 9110 8.4.1.2)
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._z.decompress(data)

    def flush(self) -> bytes:
        return self._z.flush()


class _Parser:
    """The parse of one connection's reads; see :func:`parse_responses`."""

    def __init__(self) -> None:
        self.responses: list[HttpResponse] = []
        self.buf = b""  # bytes received and not yet consumed
        self.offset = 0  # connection offset of buf[0]
        self.state = "head"
        # the response being parsed
        self.status = 0
        self.reason = ""
        self.version = ""
        self.headers: tuple[tuple[str, str], ...] = ()
        self.headers_ns: int | None = None
        self.header_bytes = 0
        self.start = 0  # connection offset where it began
        self.body: list[Read] = []
        self.remaining = 0  # body bytes left (length) or of the current chunk (chunked)
        self.decompress: _Decompressor | None = None
        self.error: WireError | None = None
        """What stopped the parse."""
        self.undecodable: WireError | None = None
        """A body kept as it came (an encoding this parser cannot undo)."""

    # ---- per read

    def feed(self, t_ns: int, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos = 0
        out: list[bytes] = []  # body bytes this read produced
        while self.error is None:
            state = self.state
            if state == "head":
                pos = self._head(buf, pos, t_ns)
                if self.state == "head":
                    break
            elif state == "length" or state == "chunk-data":
                take = min(self.remaining, len(buf) - pos)
                if take == 0 and self.remaining:
                    break
                out.append(buf[pos : pos + take])
                pos += take
                self.remaining -= take
                if self.remaining == 0:
                    if state == "length":
                        self._emit(out, t_ns)
                        self._finish(pos, complete=True)
                    else:
                        self.state = "chunk-end"
            elif state == "close":
                out.append(buf[pos:])
                pos = len(buf)
                break
            elif state == "chunk-size":
                end = buf.find(b"\n", pos)
                if end < 0:
                    break
                line = buf[pos:end].split(b";", 1)[0].strip()
                if not line or line.strip(_HEX_DIGITS):  # int() alone takes "0x1", "1_0"
                    self._fail(f"bad chunk size {line[:20]!r}", self.offset + pos)
                    break
                size = int(line, 16)
                pos = end + 1
                if size == 0:
                    self.state = "trailers"
                else:
                    self.remaining = size
                    self.state = "chunk-data"
            elif state == "chunk-end":
                if len(buf) - pos < 1 or (buf[pos : pos + 1] == b"\r" and len(buf) - pos < 2):
                    break
                if buf.startswith(b"\r\n", pos):
                    pos += 2
                elif buf.startswith(b"\n", pos):
                    pos += 1
                else:
                    self._fail("chunk data longer than its size", self.offset + pos)
                    break
                self.state = "chunk-size"
            elif state == "trailers":
                end = buf.find(b"\n", pos)
                if end < 0:
                    break
                blank = buf[pos:end].strip() == b""
                pos = end + 1
                if blank:
                    self._emit(out, t_ns)
                    self._finish(pos, complete=True)
        self._emit(out, t_ns)
        self.offset += pos
        self.buf = buf[pos:]

    def close(self, closed: bool) -> None:
        """The reads ended: ``closed`` by the server (an empty read), or just no more
        recorded (a body that runs until close is then incomplete)."""
        if self.state == "head":
            if self.buf.strip() and self.error is None:
                self._fail("the connection ended inside a response's header block", self.offset)
            return
        self._finish(len(self.buf), complete=closed and self.state == "close")

    # ---- steps

    def _head(self, buf: bytes, pos: int, t_ns: int) -> int:
        """Parse a header block starting at ``pos`` if it has all arrived."""
        end = buf.find(b"\r\n\r\n", pos)
        lf_end = buf.find(b"\n\n", pos)
        if lf_end >= 0 and (end < 0 or lf_end < end):
            end, sep = lf_end, 2
        else:
            sep = 4
        if end < 0:
            if pos < len(buf) and not b"HTTP/".startswith(buf[pos : pos + 5]):
                self._fail(
                    f"not an HTTP response: starts {buf[pos : pos + 20]!r}", self.offset + pos
                )
            return pos
        lines = buf[pos:end].decode("latin-1").splitlines()
        status_line = lines[0] if lines else ""
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            self._fail(f"bad status line {status_line[:40]!r}", self.offset + pos)
            return pos
        self.start = self.offset + pos
        self.version = parts[0]
        self.status = int(parts[1])
        self.reason = parts[2] if len(parts) > 2 else ""
        fields: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields.append((name.strip().lower(), value.strip()))
        self.headers = tuple((k, v) for k, v in fields if k in KEPT_HEADERS)
        self.headers_ns = t_ns
        pos = end + sep
        self.header_bytes = self.offset + pos - self.start
        self.body = []
        values = dict(fields)
        encoding = values.get("content-encoding", "").lower()
        self.decompress = None
        if encoding in ("gzip", "x-gzip", "deflate"):
            self.decompress = _Decompressor(encoding)
        elif encoding not in ("", "identity"):
            self.undecodable = WireError(f"content-encoding {encoding!r} is not decoded")
        if 100 <= self.status < 200:
            self.state = "head"  # an interim response: the real one follows
            return pos
        transfer = values.get("transfer-encoding", "").lower()
        if self.status in _NO_BODY:
            self._finish(pos, complete=True)
        elif "chunked" in transfer:
            self.state = "chunk-size"
        elif "content-length" in values:
            try:
                self.remaining = int(values["content-length"])
            except ValueError:
                self._fail("bad content-length", self.start)
                return pos
            self.state = "length"
            if self.remaining == 0:
                self._finish(pos, complete=True)
        else:
            self.state = "close"
        return pos

    def _decompressed(self, data: bytes, *, flush: bool = False) -> bytes:
        if self.decompress is None:
            return data
        try:
            return self.decompress.flush() if flush else self.decompress.feed(data)
        except zlib.error as e:
            self.error = WireError(f"body does not decompress ({e})", offset=self.offset)
            return b""

    def _emit(self, out: list[bytes], t_ns: int) -> None:
        if not out:
            return
        data = b"".join(out)
        out.clear()
        if self.decompress is not None and self.error is None:
            data = self._decompressed(data)
        if data:
            self.body.append(Read(t_ns, data))

    def _fail(self, message: str, offset: int) -> None:
        self.error = WireError(message, offset=offset)

    def _finish(self, pos: int, *, complete: bool) -> None:
        """The response ends at ``buf[pos]``."""
        if self.decompress is not None and self.error is None:
            tail = self._decompressed(b"", flush=True)
            if tail and self.body:
                last = self.body[-1]
                self.body[-1] = Read(last.t_ns, last.data + tail)
        self.responses.append(
            HttpResponse(
                status=self.status,
                reason=self.reason,
                version=self.version,
                headers=self.headers,
                headers_ns=self.headers_ns,
                body=tuple(self.body),
                complete=complete and self.error is None,
                header_bytes=self.header_bytes,
                wire_bytes=self.offset + pos - self.start,
                error=self.error or self.undecodable,
            )
        )
        self.state = "head"
        self.undecodable = None
        self.body = []
        self.decompress = None


def parse_responses(reads: Iterable[tuple[int, bytes]]) -> list[HttpResponse]:
    """Every response in one connection's reads, in order; 1xx interim responses
    are skipped. The last one may be incomplete (``complete`` False: the reads
    ended mid-body) or stopped by an ``error``; bytes that are not HTTP at all
    give a response-less ``WireError``.

    An empty read is the connection's end: the body of a response without a
    length ends there, complete.

    >>> two = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nhi"
    >>> [r.body_bytes for r in parse_responses([(1, two + two)])]
    [b'hi', b'hi']
    """
    parser = _Parser()
    closed = False
    for t_ns, data in reads:
        if not data:
            closed = True
            break
        parser.feed(t_ns, data)
        if parser.error is not None:
            break
    if parser.error is not None and parser.status == 0:
        raise parser.error
    parser.close(closed)
    if not parser.responses and parser.error is not None:
        raise parser.error  # cut off inside the first header block
    return parser.responses


def parse_response(reads: Iterable[tuple[int, bytes]]) -> HttpResponse:
    """The last (final) response in one connection's reads: after a retry on a
    kept-alive connection, the one the client went on with.

    Raises :class:`~.events.WireError` when the reads hold no response at all.
    """
    responses = parse_responses(reads)
    if not responses:
        raise WireError("no HTTP response was read", offset=0)
    return responses[-1]
