"""TEMPORARY stand-in for H1's decoders (wire-decoders branch), same API; removed on merge.

Only LF/CRLF line ends, no spec subtleties: enough to develop the mappers against.
"""

from __future__ import annotations

from .events import Event, WireError


class _LineDecoder:
    def __init__(self) -> None:
        self.buffer = b""
        self.base = 0  # body offset of buffer[0]
        self.reads = -1
        self.events: list[Event] = []
        self.leftover = 0
        self.complete = False

    error: WireError | None = None

    def feed(self, data: bytes, t_ns: int | None) -> list[Event]:
        if self.error is not None:
            raise self.error
        self.reads += 1
        self.t_ns = t_ns
        self.buffer += data
        out: list[Event] = []
        while True:
            end = self.buffer.find(b"\n")
            if end < 0:
                break
            line = self.buffer[:end].rstrip(b"\r")
            start = self.base
            self.buffer = self.buffer[end + 1 :]
            self.base += end + 1
            try:
                self.line(line, start, self.base, t_ns, out)
            except WireError as error:  # raised by the next call: events before it first
                self.error = error
                break
        return out

    def line(self, line: bytes, start: int, end: int, t_ns: int | None, out: list[Event]) -> None:
        raise NotImplementedError

    def finish(self) -> list[Event]:
        self.leftover = len(self.buffer)
        self.complete = not self.leftover
        return []


class SSEDecoder(_LineDecoder):
    def __init__(self) -> None:
        super().__init__()
        self.data: list[str] = []
        self.kind = ""
        self.start: int | None = None
        self.first = 0
        self.count = 0

    def emit(self, out: list[Event], **kw) -> None:
        out.append(Event(index=self.count, **kw))
        self.count += 1

    def line(self, line: bytes, start: int, end: int, t_ns: int | None, out: list[Event]) -> None:
        text = line.decode("utf-8", "replace")
        if start == 0 and text.startswith("\ufeff"):
            text = text[1:]
        if not text:
            if self.data:
                self.emit(
                    out,
                    t_ns=t_ns,
                    byte_start=self.start or 0,
                    byte_end=end,
                    first_read=self.first,
                    last_read=self.reads,
                    data="\n".join(self.data),
                    event=self.kind,
                )
            self.data, self.kind, self.start = [], "", None
            return
        name, _, value = text.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "":
            self.emit(
                out,
                t_ns=t_ns,
                byte_start=start,
                byte_end=end,
                first_read=self.reads,
                last_read=self.reads,
                data=value,
                comment=True,
            )
            return
        if self.start is None:
            self.start, self.first = start, self.reads
        if name == "data":
            self.data.append(value)
        elif name == "event":
            self.kind = value

    def finish(self) -> list[Event]:
        self.leftover = len(self.buffer) + (0 if self.start is None else self.base - self.start)
        self.complete = not self.leftover
        return []


class NDJSONDecoder(_LineDecoder):
    def line(self, line: bytes, start: int, end: int, t_ns: int | None, out: list[Event]) -> None:
        if not line.strip():
            return
        try:
            text = line.decode()
        except UnicodeDecodeError:
            raise WireError("invalid UTF-8", offset=start) from None
        out.append(Event(len(self.events), t_ns, start, end, self.reads, self.reads, text))
        self.events.append(out[-1])

    def finish(self) -> list[Event]:
        if self.error is not None:
            raise self.error
        out: list[Event] = []
        if self.buffer.strip():
            self.line(self.buffer, self.base, self.base + len(self.buffer), self.t_ns, out)
        self.buffer = b""
        self.complete = True
        return out


class JSONArrayDecoder:
    def __init__(self) -> None:
        self.body = b""
        self.ends: list[tuple[int, int | None, int]] = []  # (body end, t_ns, read index)
        self.leftover = 0
        self.complete = False

    def feed(self, data: bytes, t_ns: int | None) -> list[Event]:
        self.body += data
        self.ends.append((len(self.body), t_ns, len(self.ends)))
        return []

    def finish(self) -> list[Event]:
        import json

        text = self.body.decode()
        decoder = json.JSONDecoder()
        i = text.index("[") + 1
        out: list[Event] = []
        while True:
            while i < len(text) and text[i] in " \r\n\t,":
                i += 1
            if i >= len(text) or text[i] == "]":
                self.complete = i < len(text)
                break
            try:
                _, end = decoder.raw_decode(text, i)
            except ValueError:
                self.leftover = len(text) - i
                break
            bstart, bend = len(text[:i].encode()), len(text[:end].encode())
            read = next(r for r in self.ends if r[0] >= bend)
            first = next(r for r in self.ends if r[0] > bstart)
            out.append(Event(len(out), read[1], bstart, bend, first[2], read[2], text[i:end]))
            i = end
        return out


def decoder_for(framing: str) -> SSEDecoder | NDJSONDecoder | JSONArrayDecoder:
    if framing == "sse":
        return SSEDecoder()
    if framing == "ndjson":
        return NDJSONDecoder()
    if framing == "json-array":
        return JSONArrayDecoder()
    raise WireError(f"no stand-in decoder for {framing}")


def detect_framing(first_bytes: bytes) -> str:
    head = first_bytes.removeprefix(b"\xef\xbb\xbf").lstrip()
    if head.startswith((b"data:", b"event:", b"id:", b"retry:", b":")):
        return "sse"
    if head.startswith(b"["):
        return "json-array"
    if head.startswith(b"{"):
        return "ndjson"
    raise WireError(f"not an event stream: starts with {first_bytes[:20]!r}", offset=0)
