"""Rate statistics of one aligned trace.

Names follow AIPerf (0.13) and vLLM ``bench serve`` where they have one, with
AIPerf's definitions, so that on the same timestamps the figures are equal:

- ``ttft``: from the request start (the client's socket connect) to the first
  text chunk (a non-empty text fragment);
- ``ttst``: from the first to the second text chunk;
- ``gap``: AIPerf's inter-chunk latency, between consecutive text chunks;

A response without text (a tool call, reasoning cut short) is model output all
the same: its figures count every model-output stream it has, as AIPerf counts
the first chunk of output (``Stats.measured`` names what was counted).
- ``itl``: the mean is AIPerf's ITL, ``(last chunk - first chunk) / (tokens - 1)``.
  The distribution around it is streamscope's: one interval per token, from the
  time each token was complete (the first token counts from the first chunk, as
  TTFT does), so tokens that arrive in one chunk have an ITL of 0;
- ``tokens_per_s``: AIPerf's output token throughput per user, ``1 / ITL``.

With ``--wire`` every time above is counted from the wire (``clock == "wire"``):
a chunk arrives when the last byte of the provider's event that carried it was
read from the socket, as AIPerf's own client sees it; how much later llm handed
it over is ``wire.client_delay_ms``, apart.

Percentiles interpolate linearly between ranks, as numpy's default does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from itertools import pairwise
from operator import ne
from typing import Any, NamedTuple

from .clock import on_clock, time_ns, trace_clock
from .trace import KINDS, Alignment, Fragment, StreamAlignment, Trace

# Perceived-latency bands for TTFT, from interaction research: under 50 ms feels
# instant, under 100 ms responsive, under 1 s keeps the flow, past 1 s the wait is
# noticed and past 3 s users grow impatient.
TTFT_BANDS = ((50.0, "instant"), (100.0, "responsive"), (1000.0, "fluid"), (3000.0, "noticed"))
TTFT_BAND_SLOW = "impatient"

DEFAULT_GAP_MS = 50.0
HISTOGRAM_TOP = 8
"""Chunks delivering this many tokens or more share the last histogram bucket."""


@dataclass(frozen=True)
class Distribution:
    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, values: list[float]) -> Distribution:
        if not values:
            return cls(0, None, None, None, None, None)
        ordered = sorted(values)
        return cls(
            count=len(ordered),
            mean=sum(ordered) / len(ordered),
            p50=percentile(ordered, 50),
            p90=percentile(ordered, 90),
            p99=percentile(ordered, 99),
            max=ordered[-1],
        )


@dataclass(frozen=True)
class StreamSummary:
    """Counts for a stream other than the answer text (reasoning, a tool call)."""

    kind: str
    tool_call_id: str | None
    chunks: int
    chars: int
    tokens: int
    first_ms: float | None
    last_ms: float | None


@dataclass(frozen=True)
class KindSummary:
    """Events of a kind that is not model output (``tool_result``, ...): counted only."""

    kind: str
    events: int
    chars: int
    first_ms: float | None
    last_ms: float | None


@dataclass(frozen=True)
class Stats:
    setup_ms: float | None
    """llm's own time before the HTTP request left (building its client)."""
    ttft_ms: float | None
    ttft_band: str | None
    ttst_ms: float | None
    total_ms: float | None
    chunks: int
    chars: int
    bytes: int
    tokens: int
    usage_input_tokens: int | None
    usage_output_tokens: int | None
    usage_reasoning_tokens: int | None
    """The provider's reasoning-token figure, when its usage details give one."""
    usage_compared_tokens: int | None
    """What ``tokens_minus_usage`` compares with: the output tokens, less the
    reasoning tokens when those are known."""
    streamed_compared: str | None
    """The streams counted against usage, e.g. ``text+tool calls``."""
    streamed_compared_tokens: int | None
    tokens_minus_usage: int | None
    """Streamed tokens minus usage, like with like: ``streamed_compared_tokens -
    usage_compared_tokens``."""
    chars_per_chunk: Distribution
    tokens_per_chunk: Distribution
    tokens_per_chunk_histogram: dict[str, int]
    """Chunks by how many tokens they completed: "0", "1", ..., "8+"."""
    one_token_chunks_pct: float | None
    """Share of chunks that are exactly one whole token."""
    sub_token_chunks: int
    """Chunks that carry part of a single token and nothing else."""
    split_tokens: int
    """Tokens whose bytes arrived in more than one chunk."""
    gap_ms: Distribution
    stall_threshold_ms: float
    stalls: int
    stall_ms: float
    """Total time spent in gaps longer than the threshold."""
    itl_ms: Distribution
    """Per-token intervals; the mean is exactly AIPerf's ITL."""
    tokens_per_s: float | None
    """AIPerf's output token throughput per user: (tokens - 1) / (last - first chunk)."""
    tokens_per_s_after_first_chunk: float | None
    """Tokens completed after the first chunk / (last - first chunk): differs from
    ``tokens_per_s`` when the first chunk carries several tokens."""
    chars_per_s: float | None
    """Characters after the first chunk / (last - first chunk)."""
    other_streams: tuple[StreamSummary, ...]
    other_kinds: tuple[KindSummary, ...]
    clock: str = "llm"
    """``llm``: times are when llm handed each fragment over; ``wire``: when its
    bytes were read (from the socket, standard input or a sidecar's times; see
    ``WireStats``); ``server``: the time the server wrote into each event (an
    inspected Ollama stream), with no TTFT."""
    untimed_chunks: int = 0
    """Text chunks with no time on the clock (bytes inspect found already waiting when
    it began reading): counted in every count, in no time or rate."""
    wire: WireStats | None = None
    measured: str = "text"
    """The streams the figures above count: ``text``, or for a response without
    text every model-output stream it has (``tool calls``, ``reasoning+tool calls``)."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class WireStats:
    """What the wire showed: the provider's events underneath llm's fragments."""

    source: str
    """``socket`` (a live run), ``file``, ``stdin``, ``sidecar``, ``cassette``."""
    format: str
    framing: str
    http_status: int | None
    headers_ms: float | None
    """HTTP time to headers: from the request leaving to the response's header block."""
    first_event_ms: float | None
    """Time to the first event on the wire (of any kind: a role chunk, a ping)."""
    first_content_ms: float | None
    """Time to the first event that carried text."""
    events: int
    fragments: int
    """Pieces of model output the events carried (of every kind and choice)."""
    events_by_label: dict[str, int]
    """Every event by what it carried (``text``, ``role``, ``usage``, ``ping``, ...)."""
    events_without_output: int
    """Events that carried no model output: role, ping, usage, finish, keep-alive, ..."""
    reads: int
    reads_per_event: Distribution
    """How many reads each event's bytes spanned."""
    body_bytes: int
    content_bytes: int
    """UTF-8 bytes of the model output the events carried."""
    body_bytes_per_content_byte: float | None
    wire_bytes: int | None
    """The whole HTTP response as read from the socket (``--wire`` runs)."""
    client_delay_ms: Distribution
    """Per text chunk, from its bytes' arrival to llm handing it over (``--wire`` runs)."""
    error: str | None


def gap_threshold(given: float | None, stored: float | None = None) -> float:
    """The stall threshold in ms: the one given, else the one a trace was stored with,
    else ``DEFAULT_GAP_MS`` (0 is a threshold like any other)."""
    if given is not None:
        return given
    return stored if stored is not None else DEFAULT_GAP_MS


def percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks of sorted ``ordered``."""
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def ttft_band(ttft_ms: float | None) -> str | None:
    if ttft_ms is None:
        return None
    for limit, name in TTFT_BANDS:
        if ttft_ms < limit:
            return name
    return TTFT_BAND_SLOW


def _ms(ns: int) -> float:
    return ns / 1e6


def compute_stats(trace: Trace, alignment: Alignment, gap_ms: float = DEFAULT_GAP_MS) -> Stats:
    """The stats of an aligned trace: on the wire's clock when every text chunk has
    a wire time, else on llm's (see the module's docstring), or on the server's for
    an inspected stream timed by the times the server wrote into its events."""
    wire = wire_stats(trace)
    clock = trace_clock(trace)
    trace, alignment = on_clock(trace, alignment)
    if clock == "server":
        # Ollama's created_at: gaps are the server's, but t=0 is its first event,
        # not a request start, so there is no TTFT to report.
        stats = _stats(trace, alignment, gap_ms, wire=wire, clock="server")
        return replace(stats, ttft_ms=None, ttft_band=None)
    return _stats(trace, alignment, gap_ms, wire=wire, clock=clock)


def measure(
    trace: Trace, alignment: Alignment, gap_ms: float = DEFAULT_GAP_MS
) -> tuple[Trace, Alignment, Stats]:
    """The trace and alignment on the clock of their stats (``on_clock``), and the stats:
    what every document of a response (views, JSON, HTML, export) is made from."""
    trace, alignment = on_clock(trace, alignment)
    return trace, alignment, compute_stats(trace, alignment, gap_ms)


def wire_stats(trace: Trace) -> WireStats | None:
    """What the trace's wire record shows, None when it has none."""
    wire = trace.wire
    if wire is None:
        return None
    decoded = wire.decoded
    events = decoded.events
    content = sorted({p.event_index for p in decoded.pieces if p.kind == "text"})
    output_events = {p.event_index for p in decoded.pieces}
    content_bytes = sum(len(p.text.encode("utf-8", "surrogatepass")) for p in decoded.pieces)
    # Only a live run has a client handing fragments over; an inspected stream has none.
    delays = (
        [
            _ms((f.t_ns if f.llm_t_ns is None else f.llm_t_ns) - f.wire_t_ns)
            for f in trace.fragments
            if f.kind == "text" and f.is_chunk and f.wire_t_ns is not None
        ]
        if wire.source == "socket"
        else []
    )
    first_event = events[0].t_ns if events else None
    first_content = events[content[0]].t_ns if content else None
    return WireStats(
        source=wire.source,
        format=decoded.format,
        framing=decoded.framing,
        http_status=wire.status,
        headers_ms=None if wire.headers_ns is None else _ms(wire.headers_ns),
        first_event_ms=None if first_event is None else _ms(first_event),
        first_content_ms=None if first_content is None else _ms(first_content),
        events=len(events),
        fragments=len(decoded.pieces),
        events_by_label=decoded.label_counts(),
        events_without_output=len(events) - len(output_events),
        reads=len(wire.reads),
        reads_per_event=Distribution.of([float(e.last_read - e.first_read + 1) for e in events]),
        body_bytes=decoded.body_bytes,
        content_bytes=content_bytes,
        body_bytes_per_content_byte=decoded.body_bytes / content_bytes if content_bytes else None,
        wire_bytes=wire.wire_bytes,
        client_delay_ms=Distribution.of(delays),
        error=None if decoded.error is None else str(decoded.error),
    )


def streams_name(kinds: set[str] | list[str]) -> str:
    """How a set of stream kinds is named in the views, in ``KINDS`` order.

    >>> streams_name(["tool_call_args", "reasoning", "tool_call_name"])
    'reasoning+tool calls'
    """
    names = dict.fromkeys(_STREAM_NAMES.get(kind, kind) for kind in KINDS if kind in kinds)
    return "+".join(names) or "text"


def measured_streams(alignment: Alignment) -> tuple[str, list[StreamAlignment]]:
    """The streams a response's figures count, and their name: the text when any
    arrived, else every model-output stream with a chunk (a tool call's name and
    arguments, reasoning), since that is the response's output."""
    text = alignment.stream("text")
    if text is not None and text.chunk_indices():
        return "text", [text]
    output = [s for s in alignment.streams if s.chunk_indices()]
    if not output:
        return "text", [text] if text is not None else []
    return streams_name({s.kind for s in output}), output


def _stats(
    trace: Trace,
    alignment: Alignment,
    gap_ms: float,
    *,
    wire: WireStats | None,
    clock: str = "llm",
) -> Stats:
    measured, streams = measured_streams(alignment)
    # Every chunk of the measured streams, in arrival order: (stream, index within it)
    chunks = [(s, j) for s in streams for j in s.chunk_indices()]
    if len(streams) > 1:
        chunks.sort(key=lambda c: c[0].fragments[c[1]].index)
    # Only what has a time on the clock is measured: bytes inspect found already
    # waiting have none (``time_ns``), and no figure may pass them off as timed.
    chunk_times = [time_ns(s.fragments[j], clock) for s, j in chunks]
    timed = [k for k, t in enumerate(chunk_times) if t is not None]
    times = [t for t in chunk_times if t is not None]
    end_ns = trace.end_ns
    if end_ns is None and trace.fragments:
        end_ns = time_ns(trace.fragments[-1], clock)

    gaps = [_ms(b - a) for a, b in pairwise(chunk_times) if a is not None and b is not None]
    stall_gaps = [g for g in gaps if g > gap_ms]
    tokens = sum(s.token_count for s in streams)
    chars = sum(len(s.text) for s in streams)

    per_chunk_tokens: list[float] = []
    histogram: dict[str, int] = {}
    one_token = sub_token = split = 0
    itl = Distribution.of([])
    tokens_per_s = after_first_chunk = chars_per_s = None
    if chunks:
        # Tokens a chunk completes: those whose last byte it delivered.
        completed = [
            s.fragment_token_end[j] - s.fragment_token_start[j] - s.fragment_ends_mid_token[j]
            for s, j in chunks
        ]
        per_chunk_tokens = list(map(float, completed))
        buckets = Counter(min(n, HISTOGRAM_TOP) for n in completed)
        histogram = {
            (f"{n}+" if n == HISTOGRAM_TOP else str(n)): buckets[n]
            for n in range(HISTOGRAM_TOP + 1)
            if buckets[n] or n <= 1
        }
        for s, j in chunks:
            span = s.fragment_token_end[j] - s.fragment_token_start[j]
            mid = s.fragment_starts_mid_token[j] or s.fragment_ends_mid_token[j]
            if span == 1 and not mid:
                one_token += 1
            elif span == 1:
                sub_token += 1
        split = sum(sum(map(ne, s.token_first_fragment, s.token_last_fragment)) for s in streams)
    if times:
        # Rates count from the first timed chunk: the first of all when every chunk
        # is timed; else the untimed are the first ones (what was already waiting).
        first = timed[0]
        window_ms = _ms(times[-1] - times[0])
        timed_tokens = sum(completed[first:])
        if timed_tokens >= 2:
            # The first token counts from the first chunk (it started there, as TTFT
            # says); the last completes with the last chunk. So the intervals add
            # up to the window, and their mean is AIPerf's ITL: set it exactly.
            token_times = [t for s in streams for t in s.token_times_ns()]
            if len(streams) > 1:
                token_times.sort()
            token_times = token_times[tokens - timed_tokens :]
            token_times[0] = times[0]
            intervals = [_ms(b - a) for a, b in pairwise(token_times)]
            itl = replace(Distribution.of(intervals), mean=window_ms / (timed_tokens - 1))
        if window_ms > 0:
            if itl.mean:
                tokens_per_s = 1000 / itl.mean
            after_first_chunk = (timed_tokens - completed[first]) / (window_ms / 1000)
            timed_chars = sum(len(chunks[k][0].fragments[chunks[k][1]].text) for k in timed[1:])
            chars_per_s = timed_chars / (window_ms / 1000)

    ttft = _ms(chunk_times[0]) if chunk_times and chunk_times[0] is not None else None
    usage = compare_usage(trace, alignment)
    stats = Stats(
        setup_ms=_ms(trace.setup_ns) if trace.setup_ns is not None else None,
        ttft_ms=ttft,
        ttft_band=ttft_band(ttft),
        ttst_ms=gaps[0] if len(timed) >= 2 and timed[1] == 1 else None,
        # From an unknown start when the first chunks' arrivals are unknown too.
        total_ms=_ms(end_ns) if end_ns is not None and len(timed) == len(chunk_times) else None,
        chunks=len(chunks),
        chars=chars,
        bytes=sum(s.fragment_byte_ends[-1] for s in streams if s.fragments),
        tokens=tokens,
        usage_input_tokens=trace.usage_input,
        usage_output_tokens=trace.usage_output,
        usage_reasoning_tokens=usage.reasoning,
        usage_compared_tokens=usage.compared,
        streamed_compared=usage.streams,
        streamed_compared_tokens=usage.streamed,
        tokens_minus_usage=usage.difference,
        chars_per_chunk=Distribution.of([float(len(s.fragments[j].text)) for s, j in chunks]),
        tokens_per_chunk=Distribution.of(per_chunk_tokens),
        tokens_per_chunk_histogram=histogram,
        one_token_chunks_pct=100.0 * one_token / len(chunks) if chunks else None,
        sub_token_chunks=sub_token,
        split_tokens=split,
        gap_ms=Distribution.of(gaps),
        stall_threshold_ms=gap_ms,
        stalls=len(stall_gaps),
        stall_ms=sum(stall_gaps),
        itl_ms=itl,
        tokens_per_s=tokens_per_s,
        tokens_per_s_after_first_chunk=after_first_chunk,
        chars_per_s=chars_per_s,
        other_streams=tuple(_summary(s, clock) for s in alignment.streams if s.kind != "text"),
        other_kinds=tuple(
            KindSummary(
                kind=kind,
                events=len(fragments),
                chars=sum(len(f.text) for f in fragments),
                first_ms=_first_ms(fragments, clock),
                last_ms=_first_ms(fragments[::-1], clock),
            )
            for kind, fragments in trace.other_kinds().items()
        ),
        clock=clock,
        untimed_chunks=len(chunks) - len(timed),
        wire=wire,
        measured=measured,
    )
    return stats if trace.timed else _untimed(stats)


def _untimed(stats: Stats) -> Stats:
    """``stats`` of a trace that carries no times, with every measured time taken out."""
    return replace(
        stats,
        setup_ms=None,
        ttft_ms=None,
        ttft_band=None,
        ttst_ms=None,
        total_ms=None,
        gap_ms=Distribution.of([]),
        stalls=0,
        stall_ms=0.0,
        itl_ms=Distribution.of([]),
        tokens_per_s=None,
        tokens_per_s_after_first_chunk=None,
        chars_per_s=None,
        other_streams=tuple(replace(s, first_ms=None, last_ms=None) for s in stats.other_streams),
        other_kinds=tuple(replace(k, first_ms=None, last_ms=None) for k in stats.other_kinds),
        untimed_chunks=stats.chunks,
    )


def _summary(stream: StreamAlignment, clock: str) -> StreamSummary:
    nonempty = [stream.fragments[j] for j in stream.chunk_indices()]
    return StreamSummary(
        kind=stream.kind,
        tool_call_id=stream.tool_call_id,
        chunks=len(nonempty),
        chars=len(stream.text),
        tokens=stream.token_count,
        first_ms=_first_ms(nonempty, clock),
        last_ms=_first_ms(nonempty[::-1], clock),
    )


def _first_ms(fragments: Sequence[Fragment], clock: str) -> float | None:
    """The time of the first of ``fragments`` that has one on ``clock``."""
    return next((_ms(t) for f in fragments if (t := time_ns(f, clock)) is not None), None)


# Where providers put their reasoning-token count in llm's ``token_details``:
# OpenAI ``completion_tokens_details.reasoning_tokens`` (``output_tokens_details``
# in the Responses API), Gemini ``thoughtsTokenCount``, Anthropic
# ``output_tokens_details.thinking_tokens``.
REASONING_TOKEN_KEYS = ("reasoning_tokens", "thoughtsTokenCount", "thinking_tokens")


def reasoning_tokens(details: Any) -> int | None:
    """The reasoning-token figure in a provider's usage details, wherever it is nested.

    >>> reasoning_tokens({"completion_tokens_details": {"reasoning_tokens": 521}})
    521
    >>> reasoning_tokens({"thoughtsTokenCount": 3867}), reasoning_tokens(None)
    (3867, None)
    """
    if not isinstance(details, dict):
        return None
    for key in REASONING_TOKEN_KEYS:
        value = details.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    for value in details.values():
        found = reasoning_tokens(value)
        if found is not None:
            return found
    return None


class UsageComparison(NamedTuple):
    reasoning: int | None
    compared: int | None
    streams: str | None
    streamed: int | None
    difference: int | None


_STREAM_NAMES = {"tool_call_name": "tool calls", "tool_call_args": "tool calls"}


def compare_usage(trace: Trace, alignment: Alignment) -> UsageComparison:
    """Streamed tokens against the provider's output usage, like with like.

    Usage counts every output token, reasoning and tool calls included. When the
    usage details give the reasoning tokens, the streamed non-reasoning tokens
    (text and tool calls) are compared with output - reasoning; otherwise every
    streamed model token is compared with the output.
    """
    reasoning = reasoning_tokens(trace.usage_details)
    if trace.usage_output is None:
        return UsageComparison(reasoning, None, None, None, None)
    counted = [s for s in alignment.streams if reasoning is None or s.kind != "reasoning"]
    kinds = {s.kind for s in counted if s.token_count}
    streamed = sum(s.token_count for s in counted)
    compared = trace.usage_output - (reasoning or 0)
    return UsageComparison(reasoning, compared, streams_name(kinds), streamed, streamed - compared)


@dataclass(frozen=True)
class RunTotals:
    """A run of several responses (a tool chain) as a whole.

    Times are on the run's one clock: each trace's ``run_offset_ns`` places its
    time origin after the first's.
    """

    responses: int
    wall_ms: float | None
    """From the first request leaving to the end of the last stream."""
    streaming_ms: float | None
    """The responses' own times, each from its request leaving to its stream's end."""
    between_ms: tuple[float | None, ...]
    """From the end of each stream to llm starting the next request: running the
    tools, and llm's own work between the two."""
    chunks: int
    """Model-output chunks of every kind (text, reasoning, tool-call arguments)."""
    tokens: int
    """Tokens of every model-output stream."""
    ttft_ms: float | None
    """The first response's TTFT: when the user first saw something."""

    def to_dict(self) -> dict:
        return asdict(self)


def run_totals(responses: list[tuple[Trace, Alignment, Stats]]) -> RunTotals:
    """Totals of a run's responses, in run order."""
    between: list[float | None] = []
    for (a, _, _), (b, _, _) in pairwise(responses):
        if None in (a.run_offset_ns, a.end_ns, b.run_offset_ns):
            between.append(None)
            continue
        next_start = b.run_offset_ns - (b.setup_ns or 0)  # type: ignore[operator]
        between.append(_ms(next_start - a.run_offset_ns - a.end_ns))  # type: ignore[operator]
    ends = [t.end_ns for t, _, _ in responses]
    last = responses[-1][0] if responses else None
    wall = None
    if last is not None and last.run_offset_ns is not None and last.end_ns is not None:
        wall = _ms(last.run_offset_ns + last.end_ns)
    return RunTotals(
        responses=len(responses),
        wall_ms=wall,
        streaming_ms=None if None in ends else _ms(sum(ends)),  # type: ignore[arg-type]
        between_ms=tuple(between),
        chunks=sum(f.is_chunk and f.is_model_output for t, _, _ in responses for f in t.fragments),
        tokens=sum(s.token_count for _, a, _ in responses for s in a.streams),
        ttft_ms=responses[0][2].ttft_ms if responses else None,
    )
