"""Server-sent events: the ``text/event-stream`` decoder, with a time per event.

It follows the WHATWG HTML Standard, section 9.2.6 "Interpreting an event
stream" (https://html.spec.whatwg.org/multipage/server-sent-events.html), like
httpx-sse's decoder, but is fed timed reads and says which read completed each
event. The rules it implements, in the spec's words:

- "Streams must be decoded using the UTF-8 decode algorithm": invalid bytes
  become U+FFFD, and "one leading U+FEFF BYTE ORDER MARK character must be
  ignored if any are present". Lines are split as bytes and decoded whole, so a
  character split across two reads decodes as one.
- "Lines must be separated by either a U+000D CARRIAGE RETURN U+000A LINE FEED
  (CRLF) character pair, a single U+000A LINE FEED (LF) character, or a single
  U+000D CARRIAGE RETURN (CR) character." A CR at the end of one read and an LF
  at the start of the next are one CRLF: a line ending in CR is held until the
  next byte shows which it is (or the body ends).
- "If the line is empty (a blank line): Dispatch the event". Dispatching: "If
  the data buffer is an empty string, set the data buffer and the event type
  buffer to the empty string and return"; else "If the data buffer's last
  character is a U+000A LINE FEED (LF) character, then remove the last
  character from the data buffer", the event's type is the event type buffer
  (``""`` here stands for "message"), its last event ID the last event ID
  buffer; then both buffers are emptied.
- "If the line starts with a U+003A COLON character (:): Ignore the line." It
  dispatches nothing, but here it is still handed back as an ``Event`` with
  ``comment=True`` (a keep-alive took time on the wire); ``data`` is the text
  after the colon, one leading space removed as from a field value.
- "If the line contains a U+003A COLON character (:)": the field name is what
  precedes the first colon, the value what follows it, and "if value starts with
  a U+0020 SPACE character, remove it from value." "Otherwise, the string is not
  empty but does not contain a U+003A COLON character (:)": the whole line is
  the field name and the value is empty.
- Fields: ``data`` — "Append the field value to the data buffer, then append a
  single U+000A LINE FEED (LF) character to the data buffer"; ``event`` — "Set
  the event type buffer to field value"; ``id`` — "If the field value does not
  contain U+0000 NULL, then set the last event ID buffer to the field value.
  Otherwise, ignore the field"; ``retry`` — "If the field value consists of only
  ASCII digits, then interpret the field value as an integer in base ten";
  "Otherwise: The field is ignored." Field names are case-sensitive.
- "Once the end of the file is reached, any pending data must be discarded. (If
  the file ends in the middle of an event, before the final empty line, the
  incomplete event is not dispatched.)" ``finish`` dispatches nothing of it, and
  ``leftover`` counts its bytes, so a caller can tell a truncated stream.

``Event.id`` is the last event ID buffer, which (per the spec) lasts across
events: None until an ``id`` field was seen. ``Event.retry`` is a valid
``retry`` value given inside that event, else None.
"""

from __future__ import annotations

from .decoder import Decoder
from .events import Event

_LF = 0x0A
_COLON = 0x3A
_SPACE = 0x20


class SSEDecoder(Decoder):
    """Decodes a server-sent event stream, read by read.

    >>> dec = SSEDecoder()
    >>> dec.feed(b'data: {"a":', t_ns=10)
    []
    >>> events = dec.feed(b'1}\\n\\n: ping\\r', t_ns=20)
    >>> [(e.data, e.t_ns, e.byte_start, e.byte_end) for e in events]
    [('{"a":1}', 20, 0, 15)]
    >>> [(e.data, e.comment, e.t_ns) for e in dec.feed(b'\\nevent: done\\ndata', t_ns=30)]
    [('ping', True, 30)]
    >>> dec.finish(), dec.leftover
    ([], 16)
    """

    framing = "sse"

    def __init__(self) -> None:
        super().__init__()
        self._data: list[bytes] = []
        """The data buffer: one entry per ``data`` field."""
        self._type = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self._start: int | None = None
        """Body offset of the pending event's first field line; None between events."""
        self._start_read = 0

    def _decode(
        self, buf: bytes, pos: int, tail_len: int, read: int, t_ns: int | None, final: bool
    ) -> tuple[list[Event], int]:
        # The hot loop over a whole body: state in locals, stored back at the end.
        events: list[Event] = []
        n = len(buf)
        base = self._tail_start
        find = buf.find
        has_cr = b"\r" in buf
        data = self._data
        index = self._next_index
        start = self._start
        start_read = self._start_read
        lf = -1
        while pos < n:
            if lf < pos:
                lf = find(b"\n", pos)
                if lf < 0:
                    lf = n  # none in the rest of buf: never look again (CR-only line ends)
            cr = find(b"\r", pos, lf) if has_cr else -1
            if cr >= 0:
                line_end = cr
                if cr + 1 < n:
                    end = cr + 2 if buf[cr + 1] == _LF else cr + 1
                elif final:
                    end = n
                else:
                    break  # maybe the CR of a CRLF split across reads: wait for the next byte
            elif lf < n:
                line_end = lf
                end = lf + 1
            else:
                break
            if line_end == pos:  # a blank line: dispatch
                if data:
                    last_read, last_t = self._line_end_read(end, tail_len, read, t_ns)
                    events.append(
                        Event(
                            index,
                            last_t,
                            start,  # type: ignore[arg-type]  # set with the first line of data
                            base + end,
                            start_read,
                            last_read,
                            b"\n".join(data).decode("utf-8", "replace"),
                            self._type,
                            self._last_id,
                            self._retry,
                        )
                    )
                    index += 1
                    data.clear()
                self._type = ""
                self._retry = None
                start = None
            elif buf.startswith(b"data:", pos):  # by far the most common line
                if start is None:
                    start = base + pos
                    start_read = self._tail_read if pos < tail_len else read
                data.append(buf[pos + 6 if buf[pos + 5] == _SPACE else pos + 5 : line_end])
            elif buf[pos] == _COLON:  # a comment: ignored by the spec, kept as a keep-alive
                last_read, last_t = self._line_end_read(end, tail_len, read, t_ns)
                text = buf[pos + 1 : line_end]
                events.append(
                    Event(
                        index,
                        last_t,
                        base + pos,
                        base + end,
                        self._tail_read if pos < tail_len else read,
                        last_read,
                        (text[1:] if text[:1] == b" " else text).decode("utf-8", "replace"),
                        comment=True,
                    )
                )
                index += 1
            else:
                if start is None:
                    start = base + pos
                    start_read = self._tail_read if pos < tail_len else read
                self._field(buf[pos:line_end])
            pos = end
        self._next_index = index
        self._start = start
        self._start_read = start_read
        return events, pos

    def _line_end_read(
        self, end: int, tail_len: int, read: int, t_ns: int | None
    ) -> tuple[int, int | None]:
        """The read that delivered the last byte of a line end: this one, or the
        last one when it is a CR held back."""
        return (read, t_ns) if end > tail_len else (self._last_read, self._last_t_ns)

    def _field(self, line: bytes) -> None:
        """Process a field line other than ``data``."""
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._type = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\0" not in value:
                self._last_id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self._retry = int(value)

    def _pending_start(self) -> int:
        return self._tail_start if self._start is None else self._start

    def _ended(self) -> bool:
        return self.leftover == 0
