"""Which framing a body uses, from its first bytes, and a decoder for it."""

from __future__ import annotations

from .decoder import BOM, Decoder, shown
from .events import WireError
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
