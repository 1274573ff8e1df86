"""Turn traces, alignments and stats into rich renderables: the stats, wire, run,
whatif and compare tables (the JSON documents are ``documents``, the chart ``timeline``).

Nothing here prints. Model output is data: it only ever enters a ``rich.text.Text``
through ``append`` (never markup), and every control character in it is swapped
for a visible stand-in first (``sanitize``), so a model cannot clear the screen,
move the cursor or reorder text with bidi overrides.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from ..analysis.stats import Distribution, RunTotals, Stats
from ..analysis.trace import Alignment, StreamAlignment, Trace
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
from .wrapping import UnpaddedTable, print_rows

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
