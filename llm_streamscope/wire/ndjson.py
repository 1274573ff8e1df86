"""Newline-delimited JSON (Ollama's stream, chunk JSONL files): one event per line.

Lines end with LF (a CR before it is dropped); blank lines are skipped; a line
is UTF-8 and is decoded whole, so a character split across two reads decodes as
one. Invalid UTF-8 is an error naming the line and byte. The last line needs no
line end: ``finish`` hands it back. Whether a line holds valid JSON is for the
provider mapper to find out.
"""

from __future__ import annotations

from .decoder import Decoder
from .events import Event, WireError

_CR = 0x0D


class NDJSONDecoder(Decoder):
    """Decodes newline-delimited JSON, read by read.

    >>> dec = NDJSONDecoder()
    >>> [(e.data, e.t_ns) for e in dec.feed(b'{"a":1}\\r\\n\\n{"b":', t_ns=5)]
    [('{"a":1}', 5)]
    >>> [(e.index, e.data, e.byte_start, e.byte_end, e.t_ns) for e in dec.feed(b"2}", t_ns=9)]
    []
    >>> [(e.index, e.data, e.byte_start, e.byte_end, e.t_ns) for e in dec.finish()]
    [(1, '{"b":2}', 10, 17, 9)]
    """

    framing = "ndjson"

    def __init__(self) -> None:
        super().__init__()
        self._line = 0
        """Lines completed so far (blank ones included): line numbers for errors."""

    def _decode(
        self, buf: bytes, pos: int, tail_len: int, read: int, t_ns: int | None, final: bool
    ) -> tuple[list[Event], int]:
        events: list[Event] = []
        n = len(buf)
        base = self._tail_start
        while pos < n:
            lf = buf.find(b"\n", pos)
            if lf >= 0:
                end = lf + 1
            elif final:
                lf = end = n  # the last line, with no line end
            else:
                break
            line = buf[pos : lf - 1 if lf > pos and buf[lf - 1] == _CR else lf]
            self._line += 1
            if line.strip():
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as error:
                    self._error = WireError(
                        "invalid UTF-8 in a line of NDJSON",
                        offset=base + pos + error.start,
                        line=self._line,
                    )
                    break
                events.append(
                    Event(
                        self._next_index,
                        t_ns,
                        base + pos,
                        base + end,
                        self._first_read(pos, tail_len, read),
                        read,
                        text,
                    )
                )
                self._next_index += 1
            pos = end
        return events, pos
