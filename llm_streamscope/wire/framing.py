"""Which framing a body uses, from its first bytes, and a decoder for it."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate

from .decoder import BOM, Decoder, shown
from .events import Event, Read, WireError
from .jsonarray import JSONArrayDecoder
from .ndjson import NDJSONDecoder
from .sse import SSEDecoder

DECODERS: dict[str, type[Decoder]] = {
    "sse": SSEDecoder,
    "ndjson": NDJSONDecoder,
    "json-array": JSONArrayDecoder,
}
FRAMINGS = tuple(DECODERS)

# What an event stream's first line starts with: a comment, or one of the spec's fields.
_SSE_STARTS = (b":", b"data:", b"event:", b"id:", b"retry:")


def decoder_for(framing: str) -> Decoder:
    """A new decoder for ``framing`` (one of ``FRAMINGS``).

    >>> decoder_for("ndjson")
    <llm_streamscope.wire.ndjson.NDJSONDecoder object at ...>
    """
    try:
        return DECODERS[framing]()
    except KeyError:
        raise ValueError(
            f"unknown framing {framing!r}: expected one of {', '.join(FRAMINGS)}"
        ) from None


def detect_framing(first_bytes: bytes) -> str:
    """The framing of a body, from its first bytes (after a BOM and whitespace):
    ``sse`` for a field or comment line, ``json-array`` for ``[``, ``ndjson``
    for ``{``. Pass at least the first 16 bytes that are not whitespace (or the
    whole body): a shorter start is taken as SSE if it could begin a field name.

    >>> detect_framing(b"\\r\\ndata: {}")
    'sse'
    >>> detect_framing(b'[{"candidates": []}')
    'json-array'
    >>> try:
    ...     detect_framing(b"<html>502 Bad Gateway</html>")
    ... except WireError as error:
    ...     print(error)
    not an event stream: starts with '<html>502 Bad Gateway</h'… (at byte 0)
    """
    start = first_bytes.removeprefix(BOM).lstrip(b" \t\r\n")
    if not start:
        what = "only whitespace" if first_bytes else "the body is empty"
        raise WireError(f"not an event stream: {what}", offset=0)
    if start.startswith(b"["):
        return "json-array"
    if start.startswith(b"{"):
        return "ndjson"
    if any(start.startswith(field) or field.startswith(start) for field in _SSE_STARTS):
        return "sse"
    raise WireError(f"not an event stream: starts with {shown(start)}", offset=0)


def cover(events: Sequence[Event], reads: Sequence[Read], body_end: int | None) -> None:
    """Give every byte of the body to exactly one event, in place.

    The decoders give an event the bytes from its first field (or element) to its
    end; what lies between events belongs to none. Here it goes to the event
    after it (a BOM, blank lines, a JSON array's ``[`` and ``,``: its first read
    moves back with it), except after a comment, whose blank line is its own (the
    provider writes ``: ping`` and its blank line together), and after the last
    event when ``body_end`` is given (the body ended where its framing allows):
    trailing blank lines, a JSON array's ``]``. An event that takes bytes after its
    end takes the time of the read that delivered the last of them, so its time
    is still the arrival of its last byte.

    >>> events = [Event(0, 1, 0, 7, 0, 0, "ping", comment=True), Event(1, 2, 8, 18, 1, 1, "{}")]
    >>> cover(events, [Read(1, b": ping\\n\\n"), Read(2, b"data: {}\\n\\n\\n")], 19)
    >>> [(e.byte_start, e.byte_end, e.first_read, e.last_read, e.t_ns) for e in events]
    [(0, 8, 0, 0, 1), (8, 19, 1, 1, 2)]
    """
    if not events:
        return
    read_ends: list[int] = []

    def read_at(offset: int) -> int:
        if not read_ends:
            read_ends.extend(accumulate(len(read.data) for read in reads))
        return bisect_right(read_ends, offset)

    def extend(event: Event, end: int) -> None:
        event.byte_end = end
        event.last_read = read_at(end - 1)
        event.t_ns = reads[event.last_read].t_ns

    end = 0
    before: Event | None = None
    for event in events:
        if event.byte_start != end:
            if before is not None and before.comment:
                extend(before, event.byte_start)
            else:
                event.byte_start = end
                event.first_read = read_at(end)
        end = event.byte_end
        before = event
    if body_end is not None and end != body_end:
        extend(events[-1], body_end)
