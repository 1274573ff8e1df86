"""Turn traces, alignments and stats into rich renderables and JSON documents.

Nothing here prints. Model output is data: it only ever enters a ``rich.text.Text``
through ``append`` (never markup), and every control character in it is swapped
for a visible stand-in first (``sanitize``), so a model cannot clear the screen,
move the cursor or reorder text with bidi overrides.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from ..analysis.clock import document_clock, time_ns
from ..analysis.stats import Distribution, RunTotals, Stats
from ..analysis.trace import Alignment, Fragment, StreamAlignment, Trace
from .alignview import (  # noqa: F401 (the view's names, where they have always been)
    CHUNK_MARK,
    CHUNK_MARK_STYLE,
    CHUNK_STYLES,
    SPLIT_STYLE,
    TOKEN_MARK,
    TOKEN_STYLES,
    VIEWS,
    AlignmentView,
)
from .sanitize import VIEW_TABLE, visible
from .wrapping import UnpaddedTable, print_rows, wrap_rows

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from rich.console import Console, ConsoleOptions, RenderResult

    from ..analysis.summary import ModelSummary
    from ..analysis.whatif import WhatIf


def short_id(ident: str, keep: int = 12) -> str:
    """A long id (``toolu_01A09q90qw90lq917835lq9``) cut to its first characters.

    >>> short_id("toolu_01A09q90qw90lq917835lq9"), short_id("call_1")
    ('toolu_01A09q…', 'call_1')
    """
    return ident if len(ident) <= keep + 1 else ident[:keep] + "\u2026"


def _count(n: int, noun: str) -> str:
    """``1 chunk``, ``2 chunks``, ``1,234 chunks``."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def legend(stream: StreamAlignment, view: str, color: bool) -> Text:
    """One line explaining the marks of an ``AlignmentView``."""
    title = stream.kind
    if stream.tool_call_id is not None:
        title += f" ({short_id(stream.tool_call_id)})"
    line = Text(no_wrap=False)
    line.append(visible(title, VIEW_TABLE), "bold" if color else None)
    chunks = len(stream.chunk_indices())
    line.append(f": {_count(stream.token_count, 'token')}, {_count(chunks, 'chunk')}  ")
    if view in ("both", "tokens"):
        if color:
            line.append(" token ", TOKEN_STYLES[0])
            line.append(" token ", TOKEN_STYLES[1])
            line.append(" ")
            line.append(" split token ", SPLIT_STYLE)
        else:
            line.append(f"{TOKEN_MARK} token boundary")
    if view == "both":
        line.append("  ")
    if view in ("both", "chunks"):
        if view == "chunks" and color:
            line.append(" chunk ", CHUNK_STYLES[0])
            line.append(" chunk ", CHUNK_STYLES[1])
        else:
            line.append(CHUNK_MARK, CHUNK_MARK_STYLE if color else None)
            line.append(" chunk boundary")
    return line


class AlignmentPanel:
    """Every stream of an alignment, each with its legend."""

    def __init__(self, alignment: Alignment, view: str = "both", color: bool = True):
        self.alignment = alignment
        self.view = view
        self.color = color

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for row in self.rows(console, options.max_width):
            yield Text(row, no_wrap=True, overflow="ignore") if isinstance(row, str) else row

    def print_to(self, console: Console) -> None:
        """Print the rows a batch at a time (``wrapping.print_rows``)."""
        print_rows(console, self.rows(console, console.width))

    def rows(self, console: Console, width: int) -> Iterator[Text | str]:
        """Each stream's legend and view, in rows of at most ``width`` cells (a row of
        the plain view as a string: see ``AlignmentView.rows_or_plain``)."""
        for stream in self.alignment.streams:
            for row in legend(stream, self.view, self.color).wrap(console, width):
                row.rstrip()  # the space rich leaves where it breaks a row
                yield row
            yield from AlignmentView(stream, self.view, self.color).rows_or_plain(width)


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f} ms" if value >= 1000 else f"{value:.1f} ms"


def _fmt_num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _dist_parts(d: Distribution, fmt: Any = _fmt_ms) -> list[str]:
    if not d.count:
        return ["-"]
    return [
        f"mean {fmt(d.mean)}",
        f"p50 {fmt(d.p50)}",
        f"p90 {fmt(d.p90)}",
        f"p99 {fmt(d.p99)}",
        f"max {fmt(d.max)}",
    ]


class Parts:
    """Values joined by `` · ``, broken into lines only between two values.

    A narrow console (80 columns, piped) then never separates ``130.1`` from its
    ``ms``; only a single value wider than the whole column (a long error) wraps.
    Values are model or provider data: shown as text, with controls made visible.
    """

    SEPARATOR = " \u00b7 "

    def __init__(self, *parts: str, style: str = ""):
        self.parts = [visible(p) for p in parts if p]
        self.style = style

    def lines(self, width: int) -> list[str]:
        lines: list[str] = []
        line = ""
        for part in self.parts:
            joined = line + self.SEPARATOR + part if line else part
            if line and cell_len(joined) > width:
                lines.append(line)
                line = part
            else:
                line = joined
        return [*lines, line]

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        widest = max(map(cell_len, self.parts), default=0)
        whole = cell_len(self.SEPARATOR.join(self.parts))
        return Measurement(min(widest, options.max_width), min(whole, options.max_width))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Text("\n".join(self.lines(options.max_width)), self.style, overflow="fold")


def _usage_parts(stats: Stats) -> list[str]:
    """What the provider's usage says against what was streamed, like with like."""
    if stats.usage_output_tokens is None:
        return ["-"]
    reported = f"usage reports {_count(stats.usage_output_tokens, 'output token')}"
    if stats.usage_reasoning_tokens is not None:
        reported += (
            f" \u2212 {stats.usage_reasoning_tokens:,} reasoning = {stats.usage_compared_tokens:,}"
        )
    return [
        reported,
        f"streamed {stats.streamed_compared} {stats.streamed_compared_tokens or 0:,} "
        f"({_signed(stats.tokens_minus_usage or 0)})",
    ]


def _signed(n: int) -> str:
    """``+3``, ``−2`` (a minus sign), ``+0``."""
    return ("\u2212" if n < 0 else "+") + f"{abs(n):,}"


def _label(name: str, width: int = 14) -> str:
    return name if len(name) <= width else name[: width - 1] + "\u2026"


_READ_FROM = {
    "socket": "the socket",
    "stdin": "standard input",
    "sidecar": "the .times file",
    "command": "the command's standard output",
}
"""Where a wire-clocked trace's bytes were read from, by ``Wire.source``."""


def status_text(status: str, error: str | None) -> str:
    """A trace's status and why, without saying the status twice.

    >>> status_text("interrupted", "interrupted (Ctrl-C)")
    'interrupted (Ctrl-C)'
    >>> status_text("error", "HTTP 503"), status_text("complete", None)
    ('error: HTTP 503', 'complete')
    """
    if not error:
        return status
    if error == status or error.startswith(status + " "):
        return error
    return f"{status}: {error}"


def stats_table(trace: Trace, stats: Stats) -> Table:
    """The rate statistics as a two-column table that fits 80 columns.

    Labels are at most 14 characters; a value too long for its line breaks only
    between its parts (see ``Parts``).
    """
    table = UnpaddedTable(show_header=False, box=None, padding=(0, 2, 0, 0), pad_edge=False)
    table.add_column("metric", style="bold", no_wrap=True)
    table.add_column("value")

    def row(name: str, *parts: str) -> None:
        table.add_row(visible(_label(name)), Parts(*parts))

    encoding = trace.encoding_name + ("" if trace.encoding_exact else ", approximate")
    row("model", trace.model_id)
    table.add_row(
        "status",
        Text(visible(status_text(trace.status, trace.error))),
    )
    if not trace.timed:
        row("timing", "no timing in this file", "token and chunk counts only")
    elif stats.untimed_chunks:
        timed = stats.chunks - stats.untimed_chunks
        row(
            "timing",
            f"{stats.untimed_chunks:,} of {_count(stats.chunks, 'text chunk')} untimed: "
            "their bytes had arrived before inspect began reading",
            f"times and rates from the other {timed:,}" if timed else "no times or rates",
        )
    if stats.setup_ms is not None:
        row("setup", f"{_fmt_ms(stats.setup_ms)} in llm before the request left")
    if stats.clock == "wire":
        source = trace.wire.source if trace.wire is not None else "socket"
        where = _READ_FROM.get(source, source)
        row("clock", f"the wire: each chunk when its bytes were read from {where}")
    elif stats.clock == "server":
        row("clock", "the server's own time in each event (created_at): no request start, no TTFT")
    if stats.measured != "text":
        row("output", f"no text: the figures below count the {stats.measured}")
    row("TTFT", f"{_fmt_ms(stats.ttft_ms)}" + (f" ({stats.ttft_band})" if stats.ttft_band else ""))
    row("TTST", _fmt_ms(stats.ttst_ms))
    row("total", _fmt_ms(stats.total_ms))
    row("chunks", f"{stats.chunks:,}", f"{stats.chars:,} chars", f"{stats.bytes:,} bytes")
    row("tokens", f"{stats.tokens:,} ({encoding})")
    row("usage", *_usage_parts(stats))
    row(
        "chars/chunk",
        f"mean {_fmt_num(stats.chars_per_chunk.mean)}",
        f"median {_fmt_num(stats.chars_per_chunk.p50)}",
    )
    histogram = [f"{k}: {v:,}" for k, v in stats.tokens_per_chunk_histogram.items()]
    if histogram:
        histogram[0] = "chunks by tokens completed " + histogram[0]
    row("tokens/chunk", f"mean {_fmt_num(stats.tokens_per_chunk.mean, 2)}", *histogram)
    row(
        "1-token chunks",
        "-"
        if stats.one_token_chunks_pct is None
        else f"{stats.one_token_chunks_pct:.1f}% are exactly one whole token",
    )
    row(
        "sub-token", _count(stats.sub_token_chunks, "chunk"), f"split tokens {stats.split_tokens:,}"
    )
    row("gap", *_dist_parts(stats.gap_ms))
    row(
        "stalls",
        f"{stats.stalls:,} gaps > {stats.stall_threshold_ms:g} ms"
        + (f" ({_fmt_ms(stats.stall_ms)} in all)" if stats.stalls else "")
        if trace.timed
        else "-",
    )
    row("ITL", *_dist_parts(stats.itl_ms))
    row(
        "tokens/s",
        f"{_fmt_num(stats.tokens_per_s)} per user (AIPerf: 1 / mean ITL)",
        f"{_fmt_num(stats.tokens_per_s_after_first_chunk)} after the first chunk",
        f"chars/s {_fmt_num(stats.chars_per_s)}",
    )
    for other in stats.other_streams:
        row(
            other.kind,
            f"id {short_id(other.tool_call_id)}" if other.tool_call_id is not None else "",
            _count(other.chunks, "chunk"),
            _count(other.chars, "char"),
            _count(other.tokens, "token"),
            f"first {_fmt_ms(other.first_ms)}",
            f"last {_fmt_ms(other.last_ms)}",
        )
    for kind in stats.other_kinds:
        row(
            kind.kind,
            _count(kind.events, "event"),
            _count(kind.chars, "char"),
            f"first {_fmt_ms(kind.first_ms)}",
            f"last {_fmt_ms(kind.last_ms)}",
            "not model output: not aligned or shown",
        )
    return table


def inspect_line(name: str, timing: str | None) -> str:
    """What ``inspect`` read, and where its times come from, in one line."""
    return visible(f"{name}: " + (f"times from {timing}" if timing else "no timing in this file"))


def wire_sequence(labels: tuple[str, ...] | list[str], most: int = 12) -> str:
    """The events in order, runs of one label collapsed: what the protocol looked like.

    >>> wire_sequence(["role", "text", "text", "finish", "usage", "done"])
    'role → text ×2 → finish → usage → done'
    """
    groups: list[list] = []
    for label in labels:
        if groups and groups[-1][0] == label:
            groups[-1][1] += 1
        else:
            groups.append([label, 1])
    shown = [f"{label} \u00d7{n:,}" if n > 1 else label for label, n in groups[:most]]
    if len(groups) > most:
        shown.append(f"\u2026 {len(groups) - most:,} more runs")
    return " \u2192 ".join(shown)


def wire_table(trace: Trace, stats: Stats) -> Table:
    """What the wire showed, in the layout of ``stats_table``."""
    table = UnpaddedTable(show_header=False, box=None, padding=(0, 2, 0, 0), pad_edge=False)
    table.add_column("metric", style="bold", no_wrap=True)
    table.add_column("value")

    def row(name: str, *parts: str) -> None:
        table.add_row(visible(_label(name)), Parts(*parts))

    wire, ws = trace.wire, stats.wire
    if wire is None or ws is None:
        row("wire", "nothing recorded")
        return table
    row(
        "source",
        f"{ws.format} ({ws.framing})",
        wire.source,
        wire.url or "",
        "" if ws.http_status is None else f"HTTP {ws.http_status}",
    )
    if ws.headers_ms is not None:
        row("HTTP headers", f"{_fmt_ms(ws.headers_ms)} after the request left")
    row(
        "first event",
        _fmt_ms(ws.first_event_ms),
        f"first content {_fmt_ms(ws.first_content_ms)}",
    )
    row(
        "events",
        f"{ws.events:,} events for {ws.fragments:,} fragments",
        f"{ws.events_without_output:,} carried no model output",
    )
    row("carried", *(f"{label} {n:,}" for label, n in ws.events_by_label.items()))
    row("in order", wire_sequence(wire.decoded.labels))
    ratio = ws.body_bytes_per_content_byte
    row(
        "bytes",
        f"{ws.body_bytes:,} on the wire for {ws.content_bytes:,} of content",
        "-" if ratio is None else f"{ratio:.1f} per content byte",
        "" if ws.wire_bytes is None else f"{ws.wire_bytes:,} with HTTP headers and framing",
    )
    row(
        "reads",
        f"{ws.reads:,}",
        f"{_fmt_num(ws.reads_per_event.mean, 2)} per event",
        f"an event spanned at most {_fmt_num(ws.reads_per_event.max, 0)}",
    )
    if ws.client_delay_ms.count:
        row("client delay", *_dist_parts(ws.client_delay_ms), "llm handing each chunk over")
    if ws.error:
        row("decode error", ws.error)
    return table


def whatif_table(result: WhatIf) -> Table:
    """A trace re-chunked under each policy, one row each, the trace as sent first."""
    table = UnpaddedTable(box=None, padding=(0, 2, 0, 0), pad_edge=False, header_style="bold")
    table.add_column("policy", no_wrap=True)
    for name in ("events", "bytes", "TTFT", "p99 gap", "wait mean", "wait p99"):
        table.add_column(name, justify="right", no_wrap=True)
    for o in result.outcomes:
        table.add_row(
            o.policy,
            f"{o.events:,}",
            f"{o.bytes:,}",
            _fmt_ms(o.ttft_ms),
            _fmt_ms(o.gap_ms.p99),
            _fmt_ms(o.wait_ms.mean),
            _fmt_ms(o.wait_ms.p99),
        )
    return table


_CLOCKS = {"llm": "llm handing each chunk over", "wire": "the wire", "server": "the server's"}


def whatif_notes(result: WhatIf) -> list[str]:
    """What the figures of ``whatif_table`` count, and where the framing comes from."""
    framing = result.framing
    if framing.source == "measured":
        source = f"measured on this trace's wire ({framing.format})"
    else:
        source = f"{framing.format}'s, from real recordings (--wire measures a run's own)"
    return [
        f"text: {result.tokens:,} tokens, {result.content_bytes:,} bytes; "
        f"times from {_CLOCKS.get(result.clock, result.clock)}",
        f"bytes: {framing.fixed:,} + {framing.per_event:,.1f} per event + the text",
        f"framing: {source}",
        "wait: per byte, when the policy sends it minus when it arrived",
    ]


def response_label(trace: Trace) -> str:
    """What a response of a run streamed, in a few words: "text", "tool call llm_time"."""
    calls = [f.text for f in trace.fragments if f.kind == "tool_call_name" and f.text]
    kinds = [
        kind
        for kind in ("reasoning", "text")
        if any(f.kind == kind and f.text for f in trace.fragments)
    ]
    if calls:
        kinds.append(("tool calls " if len(calls) > 1 else "tool call ") + ", ".join(calls))
    return visible(" + ".join(kinds) or "nothing")


def between_line(between_ms: float | None) -> str:
    return f"{_fmt_ms(between_ms)} between the two responses: the tools running, and llm"


def run_table(totals: RunTotals) -> Table:
    """A run's totals, in the layout of ``stats_table``."""
    table = UnpaddedTable(show_header=False, box=None, padding=(0, 2, 0, 0), pad_edge=False)
    table.add_column("metric", style="bold", no_wrap=True)
    table.add_column("value")
    table.add_row("responses", f"{totals.responses:,}")
    table.add_row("TTFT", f"{_fmt_ms(totals.ttft_ms)} (the first response's)")
    table.add_row(
        "total",
        Parts(
            f"{_fmt_ms(totals.wall_ms)} from the first request to the last token",
            f"{_fmt_ms(totals.streaming_ms)} streaming",
            f"{_fmt_ms(sum(b for b in totals.between_ms if b is not None))} between responses",
        ),
    )
    table.add_row("chunks", f"{totals.chunks:,} of model output, every kind")
    table.add_row("tokens", f"{totals.tokens:,} in every stream")
    return table


def run_document(
    run_id: str,
    responses: list[tuple[Trace, Alignment, Stats]],
    totals: RunTotals,
) -> dict[str, Any]:
    """The ``--json`` document of a run: each response's ``trace_document``, and the totals."""
    return {
        "run_id": run_id,
        "responses": [trace_document(*response) for response in responses],
        "totals": totals.to_dict(),
    }


def compare_table(summaries: Sequence[ModelSummary]) -> Table:
    """Models side by side: one column per model, one row per figure (see
    ``comparison.AGGREGATION`` for how each is taken across runs)."""
    table = UnpaddedTable(box=None, padding=(0, 2, 0, 0), pad_edge=False, header_style="bold")
    table.add_column("", style="bold", no_wrap=True)
    for summary in summaries:
        table.add_column(Text(visible(summary.label)), overflow="fold")

    def row(name: str, values: Iterable[str]) -> None:
        table.add_row(name, *(Text(visible(v)) for v in values))

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}%"

    row(
        "runs",
        (
            f"{s.complete}" if s.complete == s.runs else f"{s.complete} of {s.runs} complete"
            for s in summaries
        ),
    )
    row(
        "encoding",
        (
            "-" if s.encoding is None else s.encoding + ("" if s.encoding_exact else " (approx.)")
            for s in summaries
        ),
    )
    row("TTFT p50", (_fmt_ms(s.ttft_ms.p50) for s in summaries))
    row("TTFT p90", (_fmt_ms(s.ttft_ms.p90) for s in summaries))
    row("ITL p50", (_fmt_ms(s.itl_ms.p50) for s in summaries))
    row("ITL p99", (_fmt_ms(s.itl_ms.p99) for s in summaries))
    row("tokens/s", (_fmt_num(s.tokens_per_s.mean) for s in summaries))
    row("tokens/chunk", (_fmt_num(s.tokens_per_chunk, 2) for s in summaries))
    row("1-token chunks", (pct(s.whole_token_chunks_pct) for s in summaries))
    row(
        "stalls",
        (
            "-" if s.stall_threshold_ms is None else f"{s.stalls:,} > {s.stall_threshold_ms:g} ms"
            for s in summaries
        ),
    )
    row(
        "usage/tiktoken",
        (
            "-"
            if s.usage_output_tokens is None
            else f"{s.usage_output_tokens:,} / {s.tiktoken_tokens or 0:,} "
            f"({_signed(s.tokens_minus_usage or 0)})"
            for s in summaries
        ),
    )
    return table


def _ms(ns: int) -> float:
    return ns / 1e6


FRAGMENT_COLUMNS = (
    "index",
    "kind",
    "tool_call_id",
    "text",
    "t_ms",
    "llm_t_ms",
    "wire_t_ms",
    "byte_start",
    "byte_end",
    "token_start",
    "token_end",
    "starts_mid_token",
    "ends_mid_token",
)
"""The keys of a ``fragment_rows`` row, in order (the CSV header, even with no rows):
the fragment, then its ``Placement`` under the same names, with ``byte_end`` beside
``byte_start``."""
_TOKEN_FIELDS = FRAGMENT_COLUMNS[7:]
"""The place among the tokens: null for a fragment that is not model output."""


def fragment_rows(trace: Trace, alignment: Alignment) -> Iterator[dict[str, Any]]:
    """One dict per fragment, in arrival order, with its place among the tokens.

    ``t_ms`` is on the clock the stats name (``stats.trace_clock``; null where the
    fragment has no time on it); ``llm_t_ms`` and ``wire_t_ms`` are the two clocks
    by name, each null where it did not time the fragment.
    """
    positions = alignment.fragment_positions()
    clock = document_clock(trace)
    for f in trace.fragments:
        t_ms = _time_ms(f, clock)
        llm_t_ms = t_ms if clock == "llm" else None  # else llm's, once it was put aside
        row = {
            "index": f.index,
            "kind": f.kind,
            "tool_call_id": f.tool_call_id,
            "text": f.text,
            "t_ms": t_ms,
            "llm_t_ms": llm_t_ms if f.llm_t_ns is None else _ms(f.llm_t_ns),
            "wire_t_ms": None if f.wire_t_ns is None else _ms(f.wire_t_ns),
        }
        if f.index not in positions:  # not model output: not aligned
            yield row | dict.fromkeys(_TOKEN_FIELDS)
            continue
        stream, j = positions[f.index]
        placement = stream.placement(j)
        yield row | {
            "byte_start": placement.byte_start,
            "byte_end": stream.fragment_byte_ends[j],
            "token_start": placement.token_start,
            "token_end": placement.token_end,
            "starts_mid_token": placement.starts_mid_token,
            "ends_mid_token": placement.ends_mid_token,
        }


EXPORT_COLUMNS = ("trace_id", *FRAGMENT_COLUMNS)
"""The keys of an ``export_rows`` row: a fragment row, and the trace it belongs to."""


def export_rows(responses: list[tuple[Trace, Alignment, Stats]]) -> Iterator[dict[str, Any]]:
    """Every fragment of a run's responses, in run order, each with its trace id."""
    for trace, alignment, _ in responses:
        for row in fragment_rows(trace, alignment):
            yield {"trace_id": trace.id} | row


def _time_ms(fragment: Fragment, clock: str | None) -> float | None:
    t = time_ns(fragment, clock)
    return None if t is None else _ms(t)


def trace_document(trace: Trace, alignment: Alignment, stats: Stats) -> dict[str, Any]:
    """The ``--json`` document: the trace, its alignment and its stats, every time on
    the clock ``stats.clock`` names (a token's is its last fragment's)."""
    clock = document_clock(trace)
    return {
        "trace_id": trace.id,
        "turn_id": trace.turn_id,
        "run_id": trace.run_id,
        "run_index": trace.run_index,
        "run_offset_ms": None if trace.run_offset_ns is None else _ms(trace.run_offset_ns),
        "model": trace.model_id,
        "encoding": trace.encoding_name,
        "encoding_exact": trace.encoding_exact,
        "status": trace.status,
        "error": trace.error,
        "started_utc": trace.started_utc,
        "prompt": trace.prompt,
        "system": trace.system,
        "options": trace.options,
        "fragments": list(fragment_rows(trace, alignment)),
        "streams": [
            {
                "kind": s.kind,
                "tool_call_id": s.tool_call_id,
                "fragment_indices": [f.index for f in s.fragments],
                "tokens": [
                    {
                        "index": t.index,
                        "id": t.id,
                        "byte_start": t.byte_start,
                        "byte_end": t.byte_end,
                        "first_fragment": s.fragments[t.first_fragment].index,
                        "last_fragment": s.fragments[t.last_fragment].index,
                        "t_ms": _time_ms(s.fragments[t.last_fragment], clock),
                    }
                    for t in s.tokens()
                ],
            }
            for s in alignment.streams
        ],
        "stats": stats.to_dict(),
        "wire": wire_document(trace),
    }


EVENT_COLUMNS = (
    "index",
    "t_ms",
    "label",
    "carried",
    "event",
    "byte_start",
    "byte_end",
    "first_read",
    "last_read",
    "data",
)
"""The keys of a ``wire_event_rows`` row, in order."""


def wire_event_rows(trace: Trace) -> Iterator[dict[str, Any]]:
    """One dict per event on the wire, in order: what it carried, its bytes and reads."""
    if trace.wire is None:
        return
    decoded = trace.wire.decoded
    for e, label in zip(decoded.events, decoded.labels):
        yield {
            "index": e.index,
            "t_ms": None if e.t_ns is None else _ms(e.t_ns),
            "label": label,
            "carried": " ".join(decoded.carried(e.index)),
            "event": "comment" if e.comment else e.event or None,
            "byte_start": e.byte_start,
            "byte_end": e.byte_end,
            "first_read": e.first_read,
            "last_read": e.last_read,
            "data": e.data,
        }


EXPORT_EVENT_COLUMNS = ("trace_id", *EVENT_COLUMNS)


def export_event_rows(responses: list[tuple[Trace, Alignment, Stats]]) -> Iterator[dict[str, Any]]:
    """Every wire event of a run's responses, in run order, each with its trace id."""
    for trace, _, _ in responses:
        for row in wire_event_rows(trace):
            yield {"trace_id": trace.id} | row


def wire_document(trace: Trace) -> dict[str, Any] | None:
    """The ``wire`` key of the ``--json`` document: the response, its reads and events."""
    wire = trace.wire
    if wire is None:
        return None
    return {
        "source": wire.source,
        "format": wire.decoded.format,
        "framing": wire.decoded.framing,
        "url": wire.url,
        "status": wire.status,
        "headers": wire.headers,
        "headers_ms": None if wire.headers_ns is None else _ms(wire.headers_ns),
        "error": None if wire.decoded.error is None else str(wire.decoded.error),
        "reads": [
            {"t_ms": None if r.t_ns is None else _ms(r.t_ns), "bytes": len(r.data)}
            for r in wire.reads
        ],
        "events": list(wire_event_rows(trace)),
    }


TIMELINE_MODES = ("position", "time")
"""How ``Timeline`` lays out its columns: by chunk position, or by equal slices of time."""


@dataclass(frozen=True)
class TimelineColumn:
    """One column of a ``Timeline``: what arrived in it."""

    gap_ms: float | None
    """The largest gap before a chunk in the column; None when no gap ends in it."""
    burst: bool
    """Whether a chunk in it came within a millisecond of the one before."""
    tokens: int | None
    """The tokens its chunks completed; None when no chunk arrived in it."""
    chunks: int
    """How many chunks it holds (by position: the chunks whose gaps it draws)."""


class Timeline:
    """The text stream's gaps as a chart: stalls (gaps over the threshold) and
    bursts (chunks within a millisecond of the one before) marked above the bars
    (a column holding both shows the stall), the tokens completed written below.

    ``by="position"``: one column per chunk (or per few, on a long stream), from the
    second chunk on (the first one's wait is the TTFT); the bar is the gap before
    the chunk. ``by="time"``: the columns are equal slices of time from the request
    to the last chunk, the bar is the largest gap that ends in a slice, so a pause
    is a blank stretch ending in a tall bar, and a last row marks the TTFT::

        # six chunks at 10, 10.5, 30, 130, 140 and 150 ms, by time, plain, 40 columns:
                   =                       !
          100 ms                           #
                                           #
                 --------------------------#---
                                           #
                                           #
            0 ms       #                   # ##
          tokens   1   1                   1 13
            TTFT --|                   150.0 ms

    Plain characters when the console has no colour: ``#`` bars, ``-`` for the
    stall threshold, ``!`` a stall, ``=`` a burst.
    """

    HEIGHT = 6
    LEFT = 9
    """Columns of the labels on the left (``"1,234 ms "``)."""
    BLOCKS = " ▁▂▃▄▅▆▇█"

    def __init__(self, alignment: Alignment, stats: Stats, by: str = "position"):
        if by not in TIMELINE_MODES:
            raise ValueError(f"by must be one of {TIMELINE_MODES}, not {by!r}")
        self.by = by
        text = alignment.stream("text")
        # Only the chunks with a time on the stats' clock are drawn: none when the
        # trace has no times at all, the later ones when inspect found the first waiting.
        clock = None if stats.untimed_chunks >= stats.chunks else stats.clock
        chunks = (
            [j for j in text.chunk_indices() if time_ns(text.fragments[j], clock) is not None]
            if text
            else []
        )
        self.times = [text.fragments[j].t_ns for j in chunks] if text else []
        self.tokens = (
            [
                text.fragment_token_end[j]
                - text.fragment_token_start[j]
                - text.fragment_ends_mid_token[j]
                for j in chunks
            ]
            if text
            else []
        )
        self.stats = stats

    def _columns(self, width: int) -> list[TimelineColumn]:
        """Columns by position: from the second chunk on, chunks sharing a column
        when more than fit."""
        gaps = [(b - a) / 1e6 for a, b in pairwise(self.times)]
        tokens = self.tokens[1:]
        per = max(1, -(-len(gaps) // width))
        return [
            TimelineColumn(
                max(gaps[i : i + per]),
                min(gaps[i : i + per]) < 1,
                sum(tokens[i : i + per]),
                len(gaps[i : i + per]),
            )
            for i in range(0, len(gaps), per)
        ]

    def _time_columns(self, width: int) -> list[TimelineColumn]:
        """Columns by time: ``width`` equal slices from 0 to the last chunk (which
        falls in the last one); a chunk falls in the slice its arrival lies in."""
        end = self.times[-1]
        gaps: list[list[float]] = [[] for _ in range(width)]
        tokens: list[list[int]] = [[] for _ in range(width)]
        for i, (t, n) in enumerate(zip(self.times, self.tokens)):
            column = min(width - 1, t * width // end) if end > 0 else 0
            tokens[column].append(n)
            if i:
                gaps[column].append((t - self.times[i - 1]) / 1e6)
        return [
            TimelineColumn(
                max(g, default=None), min(g, default=1) < 1, sum(n) if n else None, len(n)
            )
            for g, n in zip(gaps, tokens)
        ]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for row in self._rows(console, options):
            if isinstance(row, Text):
                row.rstrip()  # blank columns at the right end are no more than padding
            yield row

    def _rows(self, console: Console, options: ConsoleOptions) -> RenderResult:
        stats = self.stats
        if stats.chunks and not self.times:
            have = "has no time" if stats.chunks == 1 else "have no times"
            yield from wrap_rows(  # rich's own wrapping would leave a space at each row's end
                Text(
                    f"timeline: its {_count(stats.chunks, 'text chunk')} {have} "
                    "(see the stats' timing row), no gaps to draw",
                    style="dim",
                ),
                options.max_width,
            )
            return
        if len(self.times) < 2:
            yield from wrap_rows(
                Text("timeline: fewer than two text chunks timed, no gaps to draw", style="dim"),
                options.max_width,
            )
            return
        color = console.color_system is not None
        width = max(10, options.max_width - self.LEFT - 1)
        by_time = self.by == "time"
        columns = self._time_columns(width) if by_time else self._columns(width)
        top = max(*(c.gap_ms or 0 for c in columns), stats.stall_threshold_ms, 1e-9)
        per = max(c.chunks for c in columns)
        if by_time:
            layout = (
                f"timeline by time: {len(self.times):,} chunks in {_fmt_ms(self.times[-1] / 1e6)}"
                f", {_fmt_ms(self.times[-1] / 1e6 / width)} per column"
            )
            bar = "the largest gap ending in a column"
        else:
            layout = f"timeline: {len(self.times):,} chunks" + (
                f", {per} per column" if per > 1 else ""
            )
            bar = "the gap before a chunk"
        yield Parts(
            layout,
            f"TTFT {_fmt_ms(stats.ttft_ms)} (tokens the first chunk completed: {self.tokens[0]})",
            f"bar: {bar}",
            f"{'!' if not color else '▲'} stall > {stats.stall_threshold_ms:g} ms",
            f"{'=' if not color else '≈'} burst < 1 ms",
            style="dim",
        )
        marks = Text(" " * self.LEFT)
        for column in columns:
            if column.gap_ms is None:
                marks.append(" ")
            elif column.gap_ms > stats.stall_threshold_ms:
                marks.append("▲" if color else "!", style="bold red")
            elif column.burst:
                marks.append("≈" if color else "=", style="cyan")
            else:
                marks.append(" ")
        yield marks
        threshold_row = min(self.HEIGHT - 1, int(stats.stall_threshold_ms / top * self.HEIGHT))
        for row in reversed(range(self.HEIGHT)):
            label = f"{top:,.0f} ms" if row == self.HEIGHT - 1 else "0 ms" if row == 0 else ""
            line = Text(f"{label:>{self.LEFT - 1}} ", style="dim")
            for column in columns:
                gap = column.gap_ms or 0
                eighths = round(gap / top * self.HEIGHT * 8) - row * 8
                style = "red" if gap > stats.stall_threshold_ms else "green"
                if eighths >= 8:
                    line.append("█" if color else "#", style=style)
                elif eighths > 0 and color:
                    line.append(self.BLOCKS[eighths], style=style)
                elif eighths >= 4:
                    line.append("#", style=style)
                elif row == threshold_row and top > stats.stall_threshold_ms:
                    line.append("┄" if color else "-", style="dim red")
                else:
                    line.append(" ")
            yield line
        tokens = Text(f"{'tokens':>{self.LEFT - 1}} ", style="dim")
        for column in columns:
            n = column.tokens
            if n is None:
                tokens.append(" ")
            else:
                tokens.append(str(n) if n < 10 else "+", style="bold" if n != 1 else "")
        yield tokens
        if by_time:
            yield self._ttft_axis(columns, color)

    def _ttft_axis(self, columns: list[TimelineColumn], color: bool) -> Text:
        """The last row of a timeline by time: a line from the request to the column
        of the first chunk, and the time of the last chunk at the right end."""
        first = next(i for i, c in enumerate(columns) if c.chunks)
        axis = Text(f"{'TTFT':>{self.LEFT - 1}} ", style="dim")
        axis.append(("─" if color else "-") * first + ("┤" if color else "|"), style="bold")
        end = _fmt_ms(self.times[-1] / 1e6)
        room = len(columns) - first - 1
        if room > len(end):
            axis.append(f"{end:>{room}}", style="dim")
        return axis
