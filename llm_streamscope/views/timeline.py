"""The timeline: a stream's gaps as a chart, stalls and bursts marked (``--timeline``)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

from rich.text import Text

from ..analysis.clock import time_ns
from ..analysis.stats import Stats
from ..analysis.trace import Alignment
from .render import Parts, _count, _fmt_ms
from .wrapping import wrap_rows

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult


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
