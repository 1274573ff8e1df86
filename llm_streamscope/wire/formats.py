"""Provider formats: which API a stream came from, and what each event carried.

``decode`` takes a body as timed ``Read``s, tells its framing (SSE, NDJSON or a
JSON array) from its first bytes, splits it into ``Event``s with the matching
decoder, tells the provider format from the first JSON event (or takes the one
given), and maps every event to a label and the ``Piece``s of model output it
carried (``mappers``: one per format): the same fragments llm's plugins yield, so
a stream read from a file is aligned and measured like a live one.

Every byte of the body belongs to exactly one event: what lies between two
events (a comment's blank line, extra blank lines, a JSON array's ``[`` and
``,``) goes with one of them (``framing.cover``).

>>> from llm_streamscope.wire.events import Read
>>> body = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\\n\\ndata: [DONE]\\n\\n'
>>> decoded = decode([Read(None, body)])
>>> decoded.format, decoded.framing, decoded.labels, [p.text for p in decoded.pieces]
('openai-chat', 'sse', ('text', 'done'), ['Hi'])
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from . import FORMATS
from .events import Decoded, Event, Read, WireError
from .framing import cover, decoder_for, detect_framing
from .mappers import MAPPERS, format_of
from .payloads import error_message, json_reason, rfc3339_ns, snippet

__all__ = ["FORMATS", "decode", "format_of", "rfc3339_ns"]

_HEAD_BYTES = 64
"""Bytes past any leading whitespace enough to tell the framing by its first field."""


def decode(reads: Iterable[Read], format: str | None = None) -> Decoded:
    """Decode a response body (its reads, in order) and map its events.

    ``format`` is one of ``FORMATS``, or None to detect it from the first JSON event.
    Raises ``WireError`` only when there is nothing to analyse: an empty body, bytes
    that are no event stream, or a stream whose format cannot be told (an HTTP
    error body such as ``{"error": {...}}`` among them). Anything that goes wrong
    later (invalid JSON in one event, an event of an unexpected shape, an error
    event, a body cut inside an event) ends decoding there: ``Decoded.error``
    names it and everything before it is kept. The event that stopped it is kept,
    labelled ``error``, unless it never completed.

    >>> body = b'{"model":"llama3","created_at":"2025-08-20T13:47:54.490267123Z",'
    >>> body += b'"message":{"role":"assistant","content":"Hi"},"done":false}\\n'
    >>> decoded = decode([Read(None, body)])
    >>> decoded.format, decoded.framing, decoded.model, decoded.server_times_ns
    ('ollama', 'ndjson', 'llama3', (0,))
    """
    if format is not None and format not in FORMATS:
        raise WireError(f"unknown format {format!r}; known formats: {', '.join(FORMATS)}")
    reads = tuple(reads)
    body_bytes = sum(len(read.data) for read in reads)
    if not body_bytes:
        raise WireError("the body is empty: no event stream", offset=0)
    framing = detect_framing(_head(reads))
    events, error = _split(reads, framing, body_bytes)
    if format is None:
        if not any(not e.comment for e in events) and error is not None:
            raise error
        format = detect_format(events, reads)
    mapper = MAPPERS[format]()
    labels, stop = mapper.map_all(events)
    if stop is not None:
        error = WireError(stop.reason, offset=stop.offset, line=_line_at(reads, stop.offset or 0))
    _require_some_of(format, events, labels, mapper.unfit, reads)
    mapped = events[: len(labels)]
    # Positions in errors are the events' own; from here on, each event owns the
    # bytes between it and its neighbours too.
    cover(mapped, reads, body_bytes if error is None else None)
    times = mapper.server_times
    server_times_ns = None
    if times:
        origin = next(iter(times.values()))
        server_times_ns = tuple(
            None if (t := times.get(e.index)) is None else t - origin for e in mapped
        )
    return Decoded(
        format=format,
        framing=framing,
        events=tuple(mapped),
        labels=tuple(labels),
        pieces=tuple(mapper.pieces),
        model=mapper.model,
        usage_input=mapper.usage_input,
        usage_output=mapper.usage_output,
        usage_details=mapper.usage_details,
        server_times_ns=server_times_ns,
        error=error,
        body_bytes=body_bytes,
        reads=len(reads),
        choices=tuple(sorted(mapper.choices)) or (0,),
        also_carried=mapper.also_carried,
        warnings=tuple(mapper.warnings()),
    )


def _require_some_of(
    format: str,
    events: list[Event],
    labels: list[str],
    unfit: list[tuple[int, str | None]],
    reads: tuple[Read, ...],
) -> None:
    """Raise WireError when not one data event of the body is of ``format`` (a format
    given that is not the stream's): there is nothing of it to analyse."""
    not_data = sum(labels.count(label) for label in ("keep-alive", "done", "error"))
    if len(unfit) < len(labels) - not_data or labels[-1:] == ["error"]:
        return
    if not unfit:
        raise WireError(f"no data events: nothing of the {format} format in it", offset=0)
    looks = next((f for _, f in unfit if f is not None), None)
    first = events[unfit[0][0]]
    raise WireError(
        f"not one of its {len(unfit):,} data events fits the {format} format"
        + (f" (they look like {looks}: leave out --format, or give that)" if looks else ""),
        offset=first.byte_start,
        line=_line_at(reads, first.byte_start),
    )


# ====================
# Framing: bytes -> events
# ====================


def _head(reads: tuple[Read, ...]) -> bytes:
    """The body's first bytes, from as many reads as it takes."""
    head = b""
    for read in reads:
        head += read.data
        if len(head.lstrip()) >= _HEAD_BYTES:
            break
    return head


def _split(
    reads: tuple[Read, ...], framing: str, body_bytes: int
) -> tuple[list[Event], WireError | None]:
    """Every complete event, and what stopped the decoder early (if anything)."""
    decoder = decoder_for(framing)
    events: list[Event] = []
    try:
        for read in reads:
            events += decoder.feed(read.data, read.t_ns)
        events += decoder.finish()
    except WireError as error:
        if error.line is None and error.offset is not None:
            error = WireError(error.reason, offset=error.offset, line=_line_at(reads, error.offset))
        return events, error
    left = decoder.leftover
    if decoder.complete or (left and not _tail(reads, left).strip()):
        return events, None  # whitespace after the last event is no event cut short
    offset = body_bytes - left
    if left:
        problem = f"the stream ended inside an event ({left} bytes after the last complete one)"
    else:
        problem = "the stream ended before its framing did (a JSON array never closed)"
    return events, WireError(problem, offset=offset, line=_line_at(reads, offset))


def _tail(reads: tuple[Read, ...], size: int) -> bytes:
    """The body's last ``size`` bytes."""
    parts: list[bytes] = []
    have = 0
    for read in reversed(reads):
        parts.append(read.data)
        have += len(read.data)
        if have >= size:
            break
    return b"".join(reversed(parts))[-size:]


def _line_at(reads: tuple[Read, ...], offset: int) -> int:
    """The 1-based line of body byte ``offset`` (built only when reporting an error)."""
    body = b"".join(read.data for read in reads)[:offset]
    ends = body.count(b"\n") or body.count(b"\r")
    return ends + 1


def detect_format(events: list[Event], reads: tuple[Read, ...]) -> str:
    """The format of the first JSON event; raises WireError when it tells none."""
    for event in events:
        if event.comment or event.data == "[DONE]":
            continue
        where = {"offset": event.byte_start, "line": _line_at(reads, event.byte_start)}
        try:
            payload = json.loads(event.data)
        except (ValueError, RecursionError) as error:
            raise WireError(
                f"not a stream of JSON events: the first event is {snippet(event.data)} "
                f"({json_reason(error)})",
                **where,
            ) from None
        found = format_of(payload, event.event)
        if found is not None:
            return found
        if isinstance(payload, dict) and "error" in payload:
            raise WireError(f"an error response, not a stream: {error_message(payload)}", **where)
        raise WireError(
            f"unknown stream format: the first event is {snippet(event.data)}; "
            f"give one of {', '.join(FORMATS)}",
            **where,
        )
    raise WireError("no data events: nothing tells the stream's format", offset=0)
