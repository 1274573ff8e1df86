"""A streamed JSON array (Gemini's ``streamGenerateContent`` without ``alt=sse``):
one event per top-level element, as soon as its last byte arrived.

The body is ``[`` element ``,`` element ... ``]`` with whitespace (CRLF
included) between; each element is an object (or an array). The decoder does
not parse JSON: it follows strings (with their escapes) and bracket depth, so it
knows where an element ends; whether the element is valid JSON is for the
provider mapper to find out. Bytes where the array's own punctuation belongs
that are not (``x`` where ``,`` should be, anything after the closing ``]``)
are an error with their offset.
"""

from __future__ import annotations

import re

from .decoder import Decoder, shown
from .events import Event, WireError

# Everything up to the next bracket that is not inside a string: runs of other bytes and
# whole strings (escapes included), in C. A string not complete in the buffer stops it at
# its opening quote. (The "unrolled loop" form: linear, no catastrophic backtracking.)
_TO_BRACKET = re.compile(rb'[^"{}\[\]]*(?:"[^"\\]*(?:\\.[^"\\]*)*"[^"{}\[\]]*)*', re.DOTALL)
_SPACE = b" \t\r\n"
_OPENERS = b"{["

# Where the decoder is in the array.
_BEFORE_ARRAY, _FIRST, _NEXT, _IN_ELEMENT, _AFTER_ELEMENT, _AFTER_ARRAY = range(6)


class JSONArrayDecoder(Decoder):
    """Decodes a JSON array streamed element by element, read by read.

    >>> dec = JSONArrayDecoder()
    >>> [e.data for e in dec.feed(b'[{"text": "a}\\\\"b"},\\r\\n{"n": [1', t_ns=1)]
    ['{"text": "a}\\\\"b"}']
    >>> [(e.index, e.data, e.byte_start, e.byte_end, e.t_ns) for e in dec.feed(b"]}]", t_ns=2)]
    [(1, '{"n": [1]}', 21, 31, 2)]
    >>> dec.finish(), dec.complete
    ([], True)

    A byte out of place is an error, raised once the events before it are out:

    >>> dec = JSONArrayDecoder()
    >>> [e.data for e in dec.feed(b'[{"a": 1} {"b": 2}]')]
    ['{"a": 1}']
    >>> try:
    ...     dec.finish()
    ... except WireError as error:
    ...     print(error)
    expected ',' or ']' after an array element, found '{"b": 2}]' (at byte 10)
    """

    framing = "json-array"

    def __init__(self) -> None:
        super().__init__()
        self._state = _BEFORE_ARRAY
        self._depth = 0
        self._scan = 0
        """Body offset where the scan of the element stopped, to go on from."""
        self._start = 0
        """Body offset of the element's first byte."""
        self._start_read = 0

    def _decode(
        self, buf: bytes, pos: int, tail_len: int, read: int, t_ns: int | None, final: bool
    ) -> tuple[list[Event], int]:
        events: list[Event] = []
        n = len(buf)
        base = self._tail_start
        state = self._state
        while pos < n:
            if state == _IN_ELEMENT:
                end = self._scan_element(buf, self._scan - base)
                if end < 0:
                    break  # keep the element's first bytes until its end comes
                start = self._start - base
                try:
                    text = buf[start:end].decode("utf-8")
                except UnicodeDecodeError as error:
                    self._error = WireError(
                        "invalid UTF-8 in a JSON array element", offset=base + start + error.start
                    )
                    break
                events.append(
                    Event(
                        self._next_index,
                        t_ns,
                        self._start,
                        base + end,
                        self._start_read,
                        read,
                        text,
                    )
                )
                self._next_index += 1
                state = _AFTER_ELEMENT
                pos = end
                continue
            byte = buf[pos]
            if byte in _SPACE:
                pos += 1
            elif state == _BEFORE_ARRAY and byte == 0x5B:  # [
                state = _FIRST
                pos += 1
            elif state in (_FIRST, _NEXT) and byte in _OPENERS:
                state = _IN_ELEMENT
                self._start = self._scan = base + pos
                self._start_read = self._first_read(pos, tail_len, read)
                self._depth = 0
            elif state == _AFTER_ELEMENT and byte == 0x2C:  # ,
                state = _NEXT
                pos += 1
            elif state in (_FIRST, _AFTER_ELEMENT) and byte == 0x5D:  # ]
                state = _AFTER_ARRAY
                pos += 1
            else:
                self._error = WireError(
                    f"{_EXPECTED[state]}, found {shown(buf[pos:])}", offset=base + pos
                )
                break
        self._state = state
        return events, self._start - base if state == _IN_ELEMENT else pos

    def _scan_element(self, buf: bytes, pos: int) -> int:
        """Follow the element from ``pos``, bracket by bracket; return the position
        just past its end, or -1 when ``buf`` ends first (the depth is kept, and
        the scan goes on from the last bracket or the string cut off)."""
        depth = self._depth
        skip = _TO_BRACKET.match
        n = len(buf)
        while True:
            pos = skip(buf, pos).end()  # type: ignore[union-attr]  # it matches "" at least
            if pos == n or buf[pos] == 0x22:  # "
                break  # the end of buf, or a string that ends beyond it
            if buf[pos] in _OPENERS:
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    return pos + 1
            pos += 1
        self._depth = depth
        self._scan = self._tail_start + pos
        return -1

    def _pending_start(self) -> int:
        return self._start if self._state == _IN_ELEMENT else self.bytes_fed

    def _ended(self) -> bool:
        return self._state == _AFTER_ARRAY


_EXPECTED = {
    _BEFORE_ARRAY: "expected '[' to open the JSON array",
    _FIRST: "expected a JSON object or ']' in the array",
    _NEXT: "expected a JSON object after ',' in the array",
    _AFTER_ELEMENT: "expected ',' or ']' after an array element",
    _AFTER_ARRAY: "expected nothing after the JSON array's closing ']'",
}
