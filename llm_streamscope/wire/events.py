"""The shapes of the wire layer, one definition each, used by every stage."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


class WireError(ValueError):
    """A stream that cannot be decoded past some point.

    ``offset`` is the body byte offset where decoding stopped and ``line`` its
    1-based line number, when known; what decoded before it is still analysed.
    """

    def __init__(self, message: str, *, offset: int | None = None, line: int | None = None):
        where = []
        if line is not None:
            where.append(f"line {line}")
        if offset is not None:
            where.append(f"byte {offset}")
        super().__init__(f"{message} (at {', '.join(where)})" if where else message)
        self.reason = message
        self.offset = offset
        self.line = line


@dataclass(frozen=True, slots=True)
class Read:
    """One read of a response body: its bytes and when they arrived.

    ``t_ns`` is on the trace's clock (nanoseconds from the request leaving) once
    a trace is built; None when the source carries no timing (a plain file).
    """

    t_ns: int | None
    data: bytes


# Event and Piece are not frozen: a frozen dataclass's __init__ sets each field
# through object.__setattr__, which cost as much as the event's json.loads, and a
# 10 MB body has 30,000 events (benchmarks: inspect). Once ``decode`` has handed
# them out they are never changed.
@dataclass(slots=True)
class Event:
    """One event as the provider framed it: an SSE event, an SSE comment line,
    an NDJSON line, or one element of a streamed JSON array.

    Its time is the arrival of its last byte: ``t_ns`` of read ``last_read``.
    """

    index: int
    t_ns: int | None
    byte_start: int
    """Body offset of its first byte (for SSE, of its first field line). Once
    decoded, the events cover the body end to end: the bytes before an event that
    belong to none (blank lines, a JSON array's ``[`` and ``,``) are its own."""
    byte_end: int
    """Body offset one past its last byte, its terminating line end included. Once
    decoded: a comment's blank line is its own, and the last event owns the body's
    end (trailing blank lines, a JSON array's closing ``]``)."""
    first_read: int
    last_read: int
    data: str
    """SSE: the data buffer (``data:`` lines joined by LF); comment: the text after
    ``:``; NDJSON: the line; JSON array: the element's JSON text."""
    event: str = ""
    """SSE ``event:`` type; "" is the default ("message")."""
    id: str | None = None
    retry: int | None = None
    comment: bool = False
    """An SSE ``:`` comment (a keep-alive): never dispatched by the spec, kept here
    because it was on the wire and took time."""


@dataclass(slots=True)
class Piece:
    """One fragment of model output carried by an event: what llm would yield."""

    event_index: int
    kind: str
    """One of ``trace.KINDS``: text, reasoning, tool_call_name, tool_call_args."""
    text: str
    tool_call_id: str | None = None
    choice: int = 0
    """OpenAI chat ``n>1``: the choice index; each choice is a response of its own."""


@dataclass(frozen=True)
class Decoded:
    """A body decoded and mapped: every event, what each carried, the fragments."""

    format: str
    """One of ``formats.FORMATS``."""
    framing: str
    """``sse``, ``ndjson`` or ``json-array``."""
    events: tuple[Event, ...]
    labels: tuple[str, ...]
    """Per event, what it carried: a Piece kind (``text``, ``reasoning``,
    ``tool_call_name``, ``tool_call_args``) or ``role``, ``usage``, ``finish``,
    ``signature``, ``encrypted-reasoning``, ``citation``, ``ping``, ``keep-alive``,
    ``done`` (``[DONE]``), ``start``, ``stop``, ``error``, ``empty``, ``other``. An
    event that carried several things is labelled by the first (its first piece's
    kind, if any); ``also_carried`` holds the rest."""
    pieces: tuple[Piece, ...]
    model: str | None = None
    usage_input: int | None = None
    usage_output: int | None = None
    usage_details: dict | None = None
    server_times_ns: tuple[int | None, ...] | None = None
    """Per event, a time the server wrote into it (Ollama's ``created_at``), in ns
    from the first such time; None when the format carries none."""
    error: WireError | None = None
    """What stopped decoding early (a truncated file, invalid JSON, an error body)."""
    body_bytes: int = 0
    reads: int = 0
    choices: tuple[int, ...] = field(default=(0,))
    also_carried: dict[int, tuple[str, ...]] = field(default_factory=dict)
    """Event index -> what else the event carried beside its label (usage in a
    chunk that also finishes, a signature beside text), only for such events."""
    warnings: tuple[str, ...] = ()
    """What did not fit the format, each naming its event: events of another
    format, a field of the wrong type where model text belongs. Decoding went on."""

    def carried(self, index: int) -> tuple[str, ...]:
        """Everything event ``index`` carried, its label first."""
        return (self.labels[index], *self.also_carried.get(index, ()))

    def label_counts(self) -> dict[str, int]:
        """How many events carried each thing, most first: an event that carried
        usage beside a finish counts once under each."""
        counts = Counter(self.labels)
        for more in self.also_carried.values():
            counts.update(more)
        return dict(counts.most_common())


@dataclass(frozen=True)
class Wire:
    """What the wire showed for one response, kept with its trace.

    ``reads`` and the events in ``decoded`` are timed on the trace's clock
    (nanoseconds from the request leaving), or untimed (None) when the source
    carries no timing. Nothing here ever holds a key: the URL has no query
    string and only allow-listed response headers are kept.
    """

    source: str
    """``socket`` (a live run's reads), ``file``, ``stdin``, ``sidecar``, ``cassette``."""
    decoded: Decoded
    reads: tuple[Read, ...]
    url: str | None = None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    headers_ns: int | None = None
    """When the response's header block had arrived."""
    wire_bytes: int | None = None
    """Every byte of the HTTP response as read from the socket: status line, headers,
    chunked framing and the body as sent (compressed, if it was). Socket only."""


class SourceError(ValueError):
    """A source that cannot be read at all: the message is one line, fit for the user."""


@dataclass(frozen=True)
class Source:
    """A response body as it was read, and what is known about where it came from."""

    name: str
    """The file's path, ``-`` for standard input; a cassette's says which interaction."""
    kind: str
    """``file``, ``sidecar`` (a file timed by its ``.times``), ``stdin``, ``command``
    (``inspect -- CMD``) or ``cassette`` (an httprr trace too): ``Wire.source`` of the
    traces built from it."""
    reads: tuple[Read, ...]
    timed: bool
    """Whether the reads carry arrival times (``Read.t_ns`` set)."""
    origin: str | None = None
    """What t=0 is, in words, when timed: ``stdin: when inspect began reading``, ..."""
    url: str | None = None
    """The request's URL without its query string (a cassette, an httprr trace)."""
    method: str | None = None
    model: str | None = None
    """The model the request named, when the source holds the request."""
    status: int | None = None
    """The HTTP status of the recorded response, when the source holds it."""
    content_type: str | None = None
    notes: tuple[str, ...] = ()
    """What the user should know that does not stop the analysis."""
    interrupted: KeyboardInterrupt | None = None
    """What ended the reading before the stream's end (Ctrl-C, SIGTERM): what came is kept."""

    @property
    def body(self) -> bytes:
        return b"".join(read.data for read in self.reads)
