"""JSON documents written as they are encoded, a table's rows one to a line.

``json.dumps(..., indent=2)`` encodes in Python, a step per value (a megabyte of
text is a quarter of a million token rows, seven values each), and builds the whole
string before a byte is written. Here the layout is ``indent=2``'s, but a list of
flat rows (dicts of plain values, the same first key in each: fragments, tokens,
reads, events) is encoded by the json module's C encoder in one call and laid out
one row to a line, and the document goes out piece by piece. The values are the
same as ``json.dumps``'s; only the whitespace differs, and characters that would
act on a terminal are ``\\u`` escapes (``sanitize.json_safe``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from ..analysis.numbers import finite
from .sanitize import json_safe

_PLAIN = (str, int, float, bool, type(None))
_BATCH = 10_000
"""Rows encoded in one call."""


def json_pieces(value: Any, default: Callable[[Any], Any] = str) -> Iterator[str]:
    """``value`` as JSON, in pieces that join into the document.

    >>> rows = [{"i": 0, "t": "x"}, {"i": 1, "t": "}, {"}]
    >>> print("".join(json_pieces({"a": [1, 2], "rows": rows})))
    {
      "a": [
        1,
        2
      ],
      "rows": [
        {"i": 0, "t": "x"},
        {"i": 1, "t": "}, {"}
      ]
    }
    >>> json.loads("".join(json_pieces({"rows": [{"i": 0, "t": "}, {\\"i\\": "}]})))
    {'rows': [{'i': 0, 't': '}, {"i": '}]}
    """
    encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=default)

    def encode(piece: Any) -> str:
        try:
            text = encoder.encode(piece)
        except ValueError:  # NaN or Infinity, which are not JSON: null, as finite_json
            text = encoder.encode(finite(piece))
        return json_safe(text)

    yield from _pieces(value, "", encode)


def write_json(value: Any, write: Callable[[str], object]) -> None:
    """``value`` as JSON and a newline, each piece to ``write`` as it is encoded."""
    for piece in json_pieces(value):
        write(piece)
    write("\n")


def _pieces(value: Any, indent: str, encode: Callable[[Any], str]) -> Iterator[str]:
    inner = indent + "  "
    if isinstance(value, dict) and value and all(isinstance(key, str) for key in value):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ("," if i else "") + "\n" + inner + encode(str(key)) + ": "
            yield from _pieces(item, inner, encode)
        yield "\n" + indent + "}"
    elif isinstance(value, (list, tuple)) and value:
        first_key = _first_key_of_rows(value)
        if first_key is not None:
            # A row starts `}, {"<first key>": `, which is never inside a string (there
            # every quote is escaped) nor right after one (`,` `:` `}` or `]` follow):
            # the line breaks go between rows, or between a nested table's rows.
            start = '{"' + encode(first_key)[1:-1] + '": '
            yield "[\n" + inner
            for at in range(0, len(value), _BATCH):  # a batch at a time: no giant string
                rows = encode(value[at : at + _BATCH])[1:-1]
                yield ("," + "\n" + inner if at else "") + rows.replace(
                    "}, " + start, "},\n" + inner + start
                )
            yield "\n" + indent + "]"
            return
        yield "["
        for i, item in enumerate(value):
            yield ("," if i else "") + "\n" + inner
            yield from _pieces(item, inner, encode)
        yield "\n" + indent + "]"
    else:
        yield encode(value)


def _first_key_of_rows(values: list[Any] | tuple[Any, ...]) -> str | None:
    """The first key of the first row, when ``values`` is a table (a list of dicts,
    the first of plain values): the rows are then laid out one to a line. Only
    whitespace goes in (see ``_pieces``): any row is read back as it was."""
    first = values[0]
    if not isinstance(first, dict) or not first or not isinstance(key := next(iter(first)), str):
        return None
    return key if all(isinstance(v, _PLAIN) for v in first.values()) else None
