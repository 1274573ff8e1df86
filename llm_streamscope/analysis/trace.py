"""The types that pass between the stages: capture -> align -> stats -> render.

Every type is an immutable dataclass but ``Arrivals``, which the capture fills as
the stream arrives; ``Fragment``, ``Token`` and ``Placement``, of which a long
stream has hundreds of thousands, use slots. (The capture loop builds none of them
while the stream arrives: see ``capture``.)
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from itertools import chain
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..wire.events import Wire

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD.

    A provider can send half of a surrogate pair as a JSON escape (``"\\ud83d"``);
    Python then holds a code point that has no UTF-8 form, so it could be neither
    tokenized, nor stored, nor printed. Everything else is left exactly as received.
    """
    return _SURROGATE.sub("\ufffd", text)


def is_clean(text: str) -> bool:
    """Whether ``text`` has a UTF-8 form: it holds no lone surrogate.

    Encoding is the check: one C pass, faster than searching for surrogates.
    """
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


# The kinds of llm StreamEvent that carry the model's own output: these are aligned
# to tokens and shown as streams. Any other kind (llm-anthropic's ``tool_result``,
# server-side web search results) is kept in the trace and summarised, not aligned.
KINDS = ("text", "reasoning", "tool_call_name", "tool_call_args")

STATUS_COMPLETE = "complete"
STATUS_ERROR = "error"
STATUS_INTERRUPTED = "interrupted"
STATUS_RUNNING = "running"
"""Only ever read, never stored: a trace whose run is still streaming (see store)."""


@dataclass(frozen=True, slots=True)
class Fragment:
    """One streamed event, as llm yielded it."""

    index: int
    """Position in the whole stream, across kinds."""
    kind: str
    """llm's event type: one of ``KINDS``, or another kind such as ``tool_result``."""
    text: str
    t_ns: int
    """Arrival time in nanoseconds, counted from the request (see ``Trace.setup_ns``)."""
    tool_call_id: str | None = None
    wire_t_ns: int | None = None
    """With ``--wire``: when the bytes that delivered this fragment's end arrived at
    the socket (the last byte of the provider's event that carried it), on the same
    clock as ``t_ns``, which is when llm handed the fragment over. None otherwise (and
    for the bytes an inspected stream had waiting before reading began: untimed)."""
    llm_t_ns: int | None = None
    """When llm handed the fragment over, once ``t_ns`` is on the wire's clock instead
    (``Trace.on_wire_clock``); None while ``t_ns`` is llm's own time, or with no llm."""

    @property
    def stream(self) -> tuple[str, str | None]:
        """Fragments with the same stream key are concatenated and aligned together."""
        return (self.kind, self.tool_call_id)

    @property
    def is_chunk(self) -> bool:
        """A chunk is a non-empty fragment: the one definition used by every count.

        Empty events (a redacted reasoning block, a keep-alive) are kept in the trace
        but deliver nothing, so they are not chunks.
        """
        return bool(self.text)

    @property
    def is_model_output(self) -> bool:
        """Whether this fragment is the model's own output (one of ``KINDS``)."""
        return self.kind in KINDS


@dataclass(frozen=True)
class Trace:
    """Everything captured about one streamed response."""

    id: str
    model_id: str
    encoding_name: str
    encoding_exact: bool
    """False when the model's tokenizer is unknown and ``encoding_name`` is a stand-in."""
    prompt: str | None
    system: str | None
    started_utc: str
    """ISO 8601 wall-clock time at which the request started."""
    fragments: tuple[Fragment, ...]
    status: str = STATUS_COMPLETE
    error: str | None = None
    setup_ns: int | None = None
    """From llm starting the request to the HTTP request leaving (its socket connect).

    Fragment times count from that moment, as TTFT does in AIPerf and vLLM; when no
    connect was seen (a pooled connection, an in-process model) they count from
    llm starting the request and this is None.
    """
    end_ns: int | None = None
    """When the stream ended (or failed), on the same clock as the fragments."""
    usage_input: int | None = None
    usage_output: int | None = None
    turn_id: str | None = None
    """llm's own id for the same response (``turns.id``), once llm has logged it."""
    options: dict = field(default_factory=dict)
    usage_details: dict | None = None
    """The provider's usage breakdown as llm exposes it (``response.token_details``),
    e.g. ``{"completion_tokens_details": {"reasoning_tokens": 512}}``."""
    run_id: str | None = None
    """The run this response belongs to: one run of ``llm streamscope`` can stream
    several responses (a tool chain), each its own trace. None reads as ``id``."""
    run_index: int = 0
    """Position of this trace in its run, from 0."""
    run_offset_ns: int | None = None
    """This trace's time origin minus its run's first trace's origin, on the same
    ``perf_counter_ns`` clock (0 for the first trace; None when not known)."""
    timed: bool = True
    """False when nothing says when the fragments arrived (a captured stream read
    from a plain file): every ``t_ns`` is then 0, and no time is measured."""
    wire: Wire | None = None
    """What the wire showed for this response (``--wire``, or an inspected body)."""

    @property
    def wire_timed(self) -> bool:
        """Whether every text chunk has a wire time: then stats count by the wire."""
        chunks = [f for f in self.fragments if f.kind == "text" and f.is_chunk]
        return bool(chunks) and all(f.wire_t_ns is not None for f in chunks)

    def on_wire_clock(self) -> Trace:
        """This trace with each fragment timed by the wire (``wire_t_ns``) where known,
        llm's own time kept as ``llm_t_ns`` (doing it twice changes nothing). A
        fragment the wire did not time (an empty event) keeps llm's time in both.

        >>> t = Trace("t", "m", "o200k_base", True, None, None, "",
        ...           (Fragment(0, "text", "Hi", 90, wire_t_ns=80),
        ...            Fragment(1, "reasoning", "", 95)))
        >>> f, empty = t.on_wire_clock().on_wire_clock().fragments
        >>> (f.t_ns, f.wire_t_ns, f.llm_t_ns), (empty.t_ns, empty.wire_t_ns, empty.llm_t_ns)
        ((80, 80, 90), (95, None, 95))
        """
        # Built directly: dataclasses.replace costs 6 us a fragment (0.6 s for 100k).
        return dataclasses.replace(
            self,
            fragments=tuple(
                Fragment(
                    f.index,
                    f.kind,
                    f.text,
                    f.t_ns if f.wire_t_ns is None else f.wire_t_ns,
                    f.tool_call_id,
                    f.wire_t_ns,
                    f.t_ns if f.llm_t_ns is None else f.llm_t_ns,
                )
                for f in self.fragments
            ),
        )

    def streams(self) -> dict[tuple[str, str | None], list[Fragment]]:
        """Model-output fragments grouped by stream key, in order of first fragment.

        These are the streams that are aligned; see ``other_kinds`` for the rest.
        """
        grouped: dict[tuple[str, str | None], list[Fragment]] = {}
        for fragment in self.fragments:
            if fragment.is_model_output:
                grouped.setdefault(fragment.stream, []).append(fragment)
        return grouped

    def other_kinds(self) -> dict[str, list[Fragment]]:
        """Fragments that are not model output (``tool_result``, ...), by kind."""
        grouped: dict[str, list[Fragment]] = {}
        for fragment in self.fragments:
            if not fragment.is_model_output:
                grouped.setdefault(fragment.kind, []).append(fragment)
        return grouped


@dataclass(frozen=True, slots=True)
class Token:
    """One BPE token of the final text, placed in time.

    Built on demand from an ``Alignment``; the alignment itself stores columns.
    """

    index: int
    id: int
    byte_start: int
    byte_end: int
    first_fragment: int
    """Index (within the stream) of the fragment that delivered the token's first byte."""
    last_fragment: int
    """Index (within the stream) of the fragment that delivered the token's last byte."""
    t_ns: int
    """When the token was complete: the arrival of its last byte."""

    @property
    def split(self) -> bool:
        """True when the token's bytes arrived in more than one fragment."""
        return self.first_fragment != self.last_fragment


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one fragment sits among its stream's tokens.

    The store keeps these fields as columns of ``streamscope_fragments`` and the
    JSON document as keys of each fragment, under the same names.

    >>> Placement(byte_start=3, token_start=0, token_end=2,
    ...           starts_mid_token=True, ends_mid_token=False).token_end
    2
    """

    byte_start: int
    """UTF-8 byte offset of the fragment's first byte in its stream's text."""
    token_start: int
    """First token the fragment touches."""
    token_end: int
    """One past the last token it touches (equal to ``token_start`` when it is empty)."""
    starts_mid_token: bool
    """Its first byte is not the first byte of a token."""
    ends_mid_token: bool
    """Its last byte is not the last byte of a token."""


PLACEMENT_FIELDS = tuple(f.name for f in fields(Placement))
"""``Placement``'s field names, in order."""


@dataclass(frozen=True)
class StreamAlignment:
    """One stream's fragments mapped onto the BPE tokens of its concatenated text.

    All offsets are UTF-8 byte offsets into the stream's text. Token and fragment
    data are stored as parallel columns (tuples of ints) so that aligning a
    megabyte of text does not build a Python object per token or fragment;
    ``placement(i)`` reads one fragment's columns as a ``Placement``.
    """

    kind: str
    tool_call_id: str | None
    fragments: tuple[Fragment, ...]
    text: str
    token_ids: tuple[int, ...]
    token_byte_ends: tuple[int, ...]
    """Exclusive end offset of each token; token i starts where token i-1 ends."""
    token_first_fragment: tuple[int, ...]
    token_last_fragment: tuple[int, ...]
    fragment_byte_ends: tuple[int, ...]
    fragment_token_start: tuple[int, ...]
    """First token that fragment i touches."""
    fragment_token_end: tuple[int, ...]
    """One past the last token that fragment i touches (equal to start when empty)."""
    fragment_starts_mid_token: tuple[bool, ...]
    fragment_ends_mid_token: tuple[bool, ...]

    @property
    def token_count(self) -> int:
        return len(self.token_ids)

    def token_byte_start(self, i: int) -> int:
        return self.token_byte_ends[i - 1] if i else 0

    def fragment_byte_start(self, i: int) -> int:
        return self.fragment_byte_ends[i - 1] if i else 0

    def placement(self, i: int) -> Placement:
        """Where fragment ``i`` (within the stream) sits among the tokens."""
        return Placement(
            self.fragment_byte_start(i),
            self.fragment_token_start[i],
            self.fragment_token_end[i],
            self.fragment_starts_mid_token[i],
            self.fragment_ends_mid_token[i],
        )

    def placements(self) -> Iterator[Placement]:
        """Every fragment's placement, in stream order."""
        byte_starts = chain((0,), self.fragment_byte_ends)
        return map(
            Placement,
            byte_starts,
            self.fragment_token_start,
            self.fragment_token_end,
            self.fragment_starts_mid_token,
            self.fragment_ends_mid_token,
        )

    def token(self, i: int) -> Token:
        last = self.token_last_fragment[i]
        return Token(
            index=i,
            id=self.token_ids[i],
            byte_start=self.token_byte_start(i),
            byte_end=self.token_byte_ends[i],
            first_fragment=self.token_first_fragment[i],
            last_fragment=last,
            t_ns=self.fragments[last].t_ns,
        )

    def tokens(self) -> list[Token]:
        # Column by column (``map``), not ``token(i)`` for each: a megabyte of text is
        # a quarter of a million tokens.
        times = [f.t_ns for f in self.fragments]
        return list(
            map(
                Token,
                range(self.token_count),
                self.token_ids,
                chain((0,), self.token_byte_ends),
                self.token_byte_ends,
                self.token_first_fragment,
                self.token_last_fragment,
                map(times.__getitem__, self.token_last_fragment),
            )
        )

    def chunk_indices(self) -> list[int]:
        """Indices (within the stream) of the fragments that are chunks."""
        return [j for j, f in enumerate(self.fragments) if f.is_chunk]

    def token_times_ns(self) -> list[int]:
        """Completion time of every token, in order."""
        times = [f.t_ns for f in self.fragments]
        return [times[j] for j in self.token_last_fragment]


@dataclass(frozen=True)
class Alignment:
    """Every stream of a trace aligned against one encoding."""

    encoding_name: str
    streams: tuple[StreamAlignment, ...]

    def stream(self, kind: str = "text", tool_call_id: str | None = None) -> StreamAlignment | None:
        for s in self.streams:
            if s.kind == kind and (tool_call_id is None or s.tool_call_id == tool_call_id):
                return s
        return None

    def fragment_positions(self) -> dict[int, tuple[StreamAlignment, int]]:
        """Map a trace-wide fragment index to its stream alignment and index within it."""
        positions: dict[int, tuple[StreamAlignment, int]] = {}
        for s in self.streams:
            for j, fragment in enumerate(s.fragments):
                positions[fragment.index] = (s, j)
        return positions


@dataclass
class Arrivals:
    """What a capture has received so far: llm's events and their arrival times.

    Filled by ``capture`` as the stream arrives (appends only, never rewritten), so
    other threads can read it while it grows: the trace writer, the stall watchdog.
    """

    events: list[Any] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    flowing: threading.Event = field(default_factory=threading.Event)
    """Set once the first event has arrived, or the stream has ended without one.

    Helper threads (the trace writer, the live-text flusher, the stall watchdog)
    block on it before doing anything: while the request waits for its first
    token, no thread of streamscope's runs a line of Python beside llm's client.
    """


def stream_ending(trace: Trace) -> str:
    """How a stream that did not complete ended, as an ``Error:`` line says it, the
    status said once.

    >>> t = Trace("t", "m", "o200k_base", True, None, None, "2026-12-06T00:00:00",
    ...           (Fragment(0, "text", "Hi", 5),), status="interrupted",
    ...           error="interrupted (Ctrl-C)")
    >>> stream_ending(t)
    'stream interrupted after 1 fragment (Ctrl-C)'
    >>> stream_ending(dataclasses.replace(t, fragments=(), status="error", error="HTTP 500"))
    'stream error: HTTP 500'
    """
    received = len(trace.fragments)
    where = f" after {received} fragment{'s' if received != 1 else ''}" if received else ""
    error = trace.error or ""
    if error.startswith(trace.status + " "):  # "interrupted (Ctrl-C)": not twice
        return f"stream {trace.status}{where} {error[len(trace.status) + 1 :]}"
    return f"stream {trace.status}{where}: {error}"


def one_line(error: BaseException) -> str:
    """An exception as one readable line, with its cause when that says more.

    The OpenAI client reports a dropped connection as just "Connection error.";
    the httpx error behind it says what happened.
    """
    message = " ".join(str(error).split()) or type(error).__name__
    cause = error.__cause__
    if cause is not None:
        detail = " ".join(str(cause).split())
        if detail and detail not in message:
            message = f"{message} ({detail})"
    return message if len(message) <= 300 else message[:297] + "..."
