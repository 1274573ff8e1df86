"""What the three framing decoders (``sse``, ``ndjson``, ``jsonarray``) share.

Each decoder is fed a body read by read, with the time each read arrived, and
hands back ``Event``s as soon as their last byte is in. This module keeps the
bookkeeping they have in common: the bytes left over from the last read (the
start of a line or element not yet complete), which read delivered which byte,
a leading UTF-8 byte order mark, and decode errors that must not swallow the
events decoded just before them.
"""

from __future__ import annotations

from .events import Event, WireError

BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte order mark: one at the very start of a body is skipped."""


def shown(data: bytes, limit: int = 24) -> str:
    """A short rendering of some body bytes for an error message: text as text,
    control characters and bytes that are not UTF-8 escaped.

    >>> print(shown(b"<html><body>502 Bad Gateway</body></html>"))
    '<html><body>502 Bad Gate'…
    >>> print(shown(b"\\x1b[2J\\xff caf\\xc3\\xa9"))
    '\\x1b[2J\\xff café'
    """
    text = data[:limit].decode("utf-8", "backslashreplace")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return f"'{text}'" + ("…" if len(data) > limit else "")


class Decoder:
    """Base of the framing decoders: ``feed(data, t_ns)`` per read, then ``finish()``.

    ``feed`` returns the events completed by this read, ``finish`` those that
    only the end of the body completes. Events are numbered from 0 in order; an
    event's ``t_ns`` is the ``t_ns`` passed with the read that delivered its last
    byte, ``first_read``/``last_read`` count ``feed`` calls from 0, and
    ``byte_start``/``byte_end`` are offsets in the body as fed (a BOM included).

    Bytes that cannot be decoded raise ``WireError`` (offset and line in it),
    but never at the cost of events before them: a ``feed`` that decoded some
    events before the bad byte returns them, and the error is raised by the next
    call (``feed`` or ``finish``). Call ``finish`` at the end and every event and
    error will have reached you.

    After ``finish``: ``leftover`` is the number of bytes at the end that made no
    complete event (a truncated body), and ``complete`` says whether the body
    ended where its framing allows (e.g. a JSON array's closing ``]``).
    """

    framing = ""

    def __init__(self) -> None:
        self.reads = 0
        """``feed`` calls so far (empty reads counted)."""
        self.bytes_fed = 0
        self.leftover = 0
        self.complete = False
        self._next_index = 0
        self._tail = b""
        """Bytes of the last reads not decoded yet: the start of a line or element."""
        self._tail_start = 0
        """Body offset of ``_tail[0]``."""
        self._tail_read = 0
        """The read that delivered ``_tail[0]``."""
        self._last_read = 0
        self._last_t_ns: int | None = None
        """The last read that delivered bytes, and its time."""
        self._bom_pending = True
        self._error: WireError | None = None
        self._finished = False

    def feed(self, data: bytes, t_ns: int | None = None) -> list[Event]:
        """Decode one read of the body; return the events it completed."""
        if self._error is not None:
            raise self._error
        read = self.reads
        self.reads += 1
        if not data:
            return []
        self.bytes_fed += len(data)
        tail = self._tail
        buf = tail + data if tail else data
        pos = 0
        if self._bom_pending:
            if len(buf) < len(BOM) and BOM.startswith(buf):
                events: list[Event] = []  # maybe the start of a BOM: wait for the rest
            else:
                self._bom_pending = False
                pos = len(BOM) if buf.startswith(BOM) else 0
        if not self._bom_pending:
            events, pos = self._decode(buf, pos, len(tail), read, t_ns, False)
        self._keep_tail(buf, pos, len(tail), read)
        self._last_read, self._last_t_ns = read, t_ns
        if self._error is not None and not events:
            raise self._error
        return events

    def finish(self) -> list[Event]:
        """The end of the body: return the events it completes, set ``leftover``
        and ``complete``."""
        if self._error is not None:
            raise self._error
        if self._finished:
            return []
        self._finished = True
        buf = self._tail
        # Whatever finishing completes ended with the last byte of the last read.
        events, pos = self._decode(buf, 0, len(buf), self._last_read, self._last_t_ns, True)
        self._keep_tail(buf, pos, len(buf), self._last_read)
        self.leftover = self.bytes_fed - self._pending_start()
        self.complete = self._error is None and self._ended()
        if self._error is not None and not events:
            raise self._error
        return events

    def _keep_tail(self, buf: bytes, pos: int, tail_len: int, read: int) -> None:
        if pos >= tail_len:
            self._tail_read = read
        self._tail = buf[pos:]
        self._tail_start += pos

    def _first_read(self, pos: int, tail_len: int, read: int) -> int:
        """The read that delivered ``buf[pos]``, for a ``pos`` where a line or
        element starts: the tail only ever starts where one does."""
        return self._tail_read if pos < tail_len else read

    def _decode(
        self, buf: bytes, pos: int, tail_len: int, read: int, t_ns: int | None, final: bool
    ) -> tuple[list[Event], int]:
        """Decode ``buf`` (the old tail, then this read's bytes) from ``pos``.

        Returns the events completed and the position up to which ``buf`` is
        done with; the rest is kept for the next read. ``final``: no more bytes
        will come. On bad bytes, set ``self._error`` and return what came before.
        """
        raise NotImplementedError

    def _pending_start(self) -> int:
        """Body offset where the bytes that made no event yet begin."""
        return self._tail_start

    def _ended(self) -> bool:
        """Whether the body ended where its framing allows."""
        return self._tail_start == self.bytes_fed
