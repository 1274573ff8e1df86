"""One self-contained HTML file of a run: ``--html FILE``.

It opens offline: no script, no font, no stylesheet or image from anywhere else.
Each response shows its text as tokens in alternating colours with a bar at every
chunk boundary (hover a token for its id, bytes, arrival and gap), three inline
SVG charts (the arrival of each chunk, the gap before it, the tokens it
completed), and the stats table, rendered by ``render.stats_table`` through
rich's own HTML export. Model text is escaped: a ``<script>`` in an answer is
shown, never run. ``whatif --html`` writes its own report in the same style
(``whatif_html``): the policies' table and a chart of each figure by policy.
"""

from __future__ import annotations

import html
from bisect import bisect_right
from collections.abc import Sequence
from itertools import pairwise
from typing import TYPE_CHECKING

from ..analysis.clock import document_clock, time_ns
from ..analysis.stats import Stats
from ..analysis.trace import Alignment, StreamAlignment, Trace
from .render import stats_table, whatif_notes, whatif_table, wire_table
from .reportfile import MARK
from .sanitize import visible

if TYPE_CHECKING:
    from ..analysis.summary import ModelRuns, ModelSummary
    from ..analysis.whatif import WhatIf

STYLE = """
body { font: 14px/1.5 system-ui, sans-serif; margin: 2em; color: #1f2328; background: #fff; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 2em; }
.meta { color: #59636e; }
.text { font: 13px/1.9 ui-monospace, monospace; white-space: pre-wrap; word-break: break-all;
        border: 1px solid #d1d9e0; padding: .8em; border-radius: 6px; }
.t0 { background: #dbeafe; } .t1 { background: #fde68a; } .split { background: #fca5a5; }
.cb { border-left: 2px solid #c026d3; margin-left: -1px; }
svg { display: block; margin: .6em 0; }
.chart text { font: 11px system-ui, sans-serif; fill: #59636e; }
pre.stats { font: 12px/1.4 ui-monospace, monospace; }
"""


def _text(value: str) -> str:
    """Text as HTML: controls as visible stand-ins first (the terminal's rule), so
    none reaches the page raw (ESC, NUL, a bidi override inside a token).

    >>> _text("<b>\x1b[2J\u202e")
    '&lt;b&gt;␛[2J&lt;U+202E&gt;'
    """
    return html.escape(visible(value))


NAMED_BAR = 96
"""Pixels per bar when bars are named: room for a name such as ``every 100 ms``."""


def _char_index(text: str) -> list[int]:
    """Byte offset of the start of each character of ``text`` (UTF-8), and the end."""
    offsets = [0]
    for ch in text:
        offsets.append(offsets[-1] + len(ch.encode("utf-8", "surrogatepass")))
    return offsets


def token_html(stream: StreamAlignment, clock: str | None = "llm") -> str:
    """The stream's text as token spans, a chunk bar at every fragment boundary.

    Boundaries are byte offsets; one inside a character (BPE can cut one) is drawn
    at the start of that character. A token's time and gap are on ``clock``
    (``stats.document_clock``), left out where it gives none.
    """
    text = stream.text
    starts = _char_index(text)
    times = [time_ns(f, clock) for f in stream.fragments]
    chunk_ends = set(stream.fragment_byte_ends[:-1])
    cuts = sorted({0, *stream.token_byte_ends, *chunk_ends})
    parts = []
    for a, b in pairwise(cuts):
        if a in chunk_ends:
            parts.append('<span class="cb"></span>')
        piece = text[bisect_right(starts, a) - 1 : bisect_right(starts, b) - 1]
        if not piece:
            continue  # inside one character, drawn with the piece before
        token = bisect_right(stream.token_byte_ends, a)
        last = stream.token_last_fragment[token]
        done, before = times[last], times[last - 1] if last else None
        title = (
            f"token {token} · id {stream.token_ids[token]} · "
            f"bytes {stream.token_byte_start(token)}–{stream.token_byte_ends[token]}"
            + ("" if done is None else f" · complete at {done / 1e6:.1f} ms")
            + ("" if done is None or before is None else f" · gap {(done - before) / 1e6:.1f} ms")
        )
        css = "split" if stream.token_first_fragment[token] != last else f"t{token % 2}"
        parts.append(f'<span class="{css}" title="{_text(title)}">{_text(piece)}</span>')
    return "".join(parts)


def _bars(
    values: list[float],
    *,
    height: int,
    color: str,
    label: str,
    line: float | None,
    names: list[str] | None = None,
) -> str:
    """A bar per value, scaled to the largest (and ``line``, drawn dashed).

    With ``names``, each bar is wide enough to be named below it, and hovering it
    shows its name and value.
    """
    width = max(300, min(1000, 4 * len(values)), NAMED_BAR * len(names or ()))
    top = max([*values, line or 0, 1e-9])
    step = width / max(1, len(values))
    rects = "".join(
        f'<rect x="{i * step:.1f}" y="{height - v / top * height:.1f}" '
        f'width="{max(step - 0.5, 0.5):.1f}" height="{v / top * height:.1f}" fill="{color}"'
        + ("/>" if names is None else f"><title>{_text(names[i])}: {v:,.1f}</title></rect>")
        for i, v in enumerate(values)
    )
    dashed = ""
    if line is not None and line <= top:
        y = height - line / top * height
        dashed = (
            f'<line x1="0" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#dc2626" '
            'stroke-dasharray="4 3"/>'
        )
    below = "".join(
        f'<text x="{(i + 0.5) * step:.1f}" y="{height + 16}" text-anchor="middle">'
        f"{_text(name)}</text>"
        for i, name in enumerate(names or ())
    )
    return (
        # 200: room beside the bars for the longest label ("gap before each chunk (ms)")
        f'<svg class="chart" width="{width + 200}" height="{height + 18 + (16 if names else 0)}">'
        f'<g transform="translate(0,4)">{rects}{dashed}{below}</g>'
        f'<text x="{width + 6}" y="12">{_text(label)}</text>'
        f'<text x="{width + 6}" y="{height}">max {top:,.1f}</text></svg>'
    )


SERIES_COLORS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563")
"""One colour per model in an overlaid chart, in the order the models were named."""


def arrival_steps(stream: StreamAlignment, clock: str | None = "llm") -> list[tuple[float, int]]:
    """(arrival in ms, tokens complete once it arrived) for each chunk of ``stream``
    that has a time on ``clock``.

    A token cut across chunks counts once its last byte arrived, as in the stats.
    """
    done = 0
    steps = []
    for j in stream.chunk_indices():
        done += (
            stream.fragment_token_end[j]
            - stream.fragment_token_start[j]
            - stream.fragment_ends_mid_token[j]
        )
        t = time_ns(stream.fragments[j], clock)
        if t is not None:
            steps.append((t / 1e6, done))
    return steps


def _paths(
    series: list[tuple[str, list[list[tuple[float, int]]]]],
    *,
    width: int = 760,
    height: int = 260,
    x_label: str,
    y_label: str,
) -> str:
    """Step lines overlaid in one chart: one ``<path>`` per series, a sub-path per
    run of it, each in its colour, with a legend. Points are (x, y), ascending x."""
    points = [p for _, runs in series for run in runs for p in run]
    right = max([x for x, _ in points] + [1e-9])
    top = max([y for _, y in points] + [1])

    def at(x: float, y: float) -> str:
        return f"{x / right * width:.1f},{height - y / top * height:.1f}"

    lines = []
    legend = []
    for i, (label, runs) in enumerate(series):
        color = SERIES_COLORS[i % len(SERIES_COLORS)]
        d = []
        for run in runs:
            if not run:
                continue
            # From the request (0, 0): flat until a chunk arrives, then up by its tokens.
            d.append(f"M{at(0, 0)}")
            previous = 0
            for x, y in run:
                d.append(f"L{at(x, previous)} L{at(x, y)}")
                previous = y
        lines.append(
            f'<path d="{" ".join(d)}" fill="none" stroke="{color}" stroke-width="1.5" '
            f'stroke-opacity="0.8"><title>{_text(label)}</title></path>'
        )
        y = 16 * i + 12
        legend.append(
            f'<rect x="{width + 10}" y="{y - 9}" width="12" height="10" fill="{color}"/>'
            f'<text x="{width + 28}" y="{y}">{_text(label)}</text>'
        )
    return (
        f'<svg class="chart" width="{width + 320}" height="{height + 40}">'
        f'<g transform="translate(0,4)">'
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="none" stroke="#d1d9e0"/>'
        f"{''.join(lines)}</g>{''.join(legend)}"
        f'<text x="0" y="{height + 20}">0 · {_text(x_label)} → '
        f"{right:,.1f}</text>"
        f'<text x="{width + 10}" y="{height}">{_text(y_label)}: max {top:,}</text></svg>'
    )


def charts_html(stream: StreamAlignment, stats: Stats, clock: str | None = "llm") -> str:
    """Arrival of each chunk and the gap before it, for the chunks timed on ``clock``
    (none on an untimed trace), and the tokens each chunk completed."""
    chunks = stream.chunk_indices()
    at = [time_ns(stream.fragments[j], clock) for j in chunks]
    times = [t / 1e6 for t in at if t is not None]
    gaps = [(b - a) / 1e6 for a, b in pairwise(at) if a is not None and b is not None]
    completed = [
        stream.fragment_token_end[j]
        - stream.fragment_token_start[j]
        - stream.fragment_ends_mid_token[j]
        for j in chunks
    ]
    timed = ""
    if times:
        timed = _bars(
            times, height=80, color="#2563eb", label="arrival of each chunk (ms)", line=None
        ) + _bars(
            gaps,
            height=80,
            color="#16a34a",
            label="gap before each chunk (ms)",
            line=stats.stall_threshold_ms,
        )
    return timed + _bars(
        [float(n) for n in completed],
        height=40,
        color="#9333ea",
        label="tokens each chunk completed",
        line=None,
    )


def _table_html(renderable: object) -> str:
    """A rich table as preformatted HTML with inline styles (rich's own export)."""
    import io

    from rich.console import Console

    console = Console(file=io.StringIO(), record=True, width=100, color_system="truecolor")
    console.print(renderable)
    return console.export_html(inline_styles=True, code_format='<pre class="stats">{code}</pre>')


def report_html(run_id: str, responses: list[tuple[Trace, Alignment, Stats]]) -> str:
    """The whole report of a run, as one HTML document."""
    body = [f"<h1>llm streamscope · run {_text(run_id)}</h1>"]
    for i, (trace, alignment, stats) in enumerate(responses):
        if len(responses) > 1:
            body.append(f"<h2>response {i + 1} of {len(responses)}</h2>")
        clock = document_clock(trace)
        encoding = trace.encoding_name + ("" if trace.encoding_exact else " (approximate)")
        body.append(
            '<p class="meta">'
            + _text(f"{trace.model_id} · {encoding} · {trace.status} · started {trace.started_utc}")
            + "</p>"
        )
        for stream in alignment.streams:
            name = stream.kind + (f" {stream.tool_call_id}" if stream.tool_call_id else "")
            body.append(
                f"<h2>{_text(name)}: {stream.token_count:,} tokens, "
                f"{len(stream.chunk_indices()):,} chunks</h2>"
            )
            body.append(f'<div class="text">{token_html(stream, clock)}</div>')
            if stream.kind == "text":
                body.append(charts_html(stream, stats, clock))
        body.append("<h2>stats</h2>" + _table_html(stats_table(trace, stats)))
        if trace.wire is not None:
            body.append("<h2>wire</h2>" + _table_html(wire_table(trace, stats)))
    return _document(f"llm streamscope · {run_id}", body)


def _document(title: str, body: list[str]) -> str:
    """One HTML document of ``body``'s parts, with the report's style."""
    return (
        f'<!doctype html>\n{MARK}\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_text(title)}</title>"
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def compare_html(
    runs: Sequence[ModelRuns],
    summaries: Sequence[ModelSummary],
    *,
    prompt: str | None,
    note: str | None = None,
) -> str:
    """``compare --html``: each model's runs overlaid in one chart (tokens complete
    against the time each chunk arrived, one colour per model) and the table."""
    from .render import compare_table

    series = []
    for model in runs:
        steps = []
        for response in model.responses:
            alignment = response.alignment
            text = alignment.stream("text") if alignment is not None else None
            if text is not None and response.trace.timed:
                steps.append(arrival_steps(text, document_clock(response.trace)))
        series.append((model.spec.label, steps))
    body = ["<h1>llm streamscope · compare</h1>"]
    if prompt is not None:
        body.append(f'<p class="meta">prompt: {_text(prompt)}</p>')
    if note:
        body.append(f'<p class="meta">{_text(note)}</p>')
    body.append(
        "<h2>tokens as they arrived</h2>"
        '<p class="meta">One line per run: flat while waiting, a step up at each chunk by '
        "the tokens it completed. Steeper is faster; long flats are stalls; tall steps "
        "are chunks of many tokens.</p>"
    )
    body.append(_paths(series, x_label="ms from the request", y_label="tokens"))
    body.append("<h2>side by side</h2>" + _table_html(compare_table(summaries)))
    return _document("llm streamscope · compare", body)


def whatif_html(run_id: str, results: list[WhatIf]) -> str:
    """``whatif --html``: per response, the policies' table and a chart of each
    figure by policy (events, bytes, p99 gap, the reader's mean wait)."""
    body = [f"<h1>llm streamscope whatif · run {_text(run_id)}</h1>"]
    for i, result in enumerate(results):
        if len(results) > 1:
            body.append(f"<h2>response {i + 1} of {len(results)}</h2>")
        notes = map(_text, whatif_notes(result))
        body.append('<p class="meta">' + "<br>".join(notes) + "</p>")
        body.append(_table_html(whatif_table(result)))
        body.append("<h2>by policy</h2>")
        names = [o.policy for o in result.outcomes]
        for label, values, color in (
            ("events", [float(o.events) for o in result.outcomes], "#2563eb"),
            ("bytes on the wire", [float(o.bytes) for o in result.outcomes], "#9333ea"),
            ("p99 gap (ms)", [o.gap_ms.p99 or 0.0 for o in result.outcomes], "#16a34a"),
            (
                "mean wait (ms)",
                [o.wait_ms.mean or 0.0 for o in result.outcomes],
                "#dc2626",
            ),
        ):
            body.append(_bars(values, height=80, color=color, label=label, line=None, names=names))
    return _document(f"llm streamscope whatif · {run_id}", body)
