"""What a frame of the live view shows (``LiveScreen``), from the fragments so far and
the time: the tail of the text with its tokens and chunks, a strip of the gaps and
the status line. Pure: the tests drive it with a fixed-width console and a clock of
their own; ``liveview.LiveRenderer`` draws it in the tokenizer process.

>>> from rich.console import Console
>>> screen = LiveScreen(stall_ms=50)
>>> screen.begin("gpt-4o-mini", start_ns=0)
>>> screen.add([("text", "Hello", 300_000_000), ("text", " world", 320_000_000)], origin_ns=0)
>>> console = Console(width=80, color_system=None)
>>> with console.capture() as out:
...     console.print(screen.frame(console, now_ns=400_000_000, height=8))
>>> print(out.get().rstrip())
Hello│ world
gaps ▄
● 0.4 s  TTFT 300 ms  2 chunks  gap 80 ms  0 stalls  gpt-4o-mini
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.text import Text

from .alignview import AlignmentView, text_lines, token_cut
from .render import _count
from .sanitize import terminal_line
from .wrapping import wrap_rows

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from ..analysis.tokens import Tokens


class LiveScreen:
    """The live view of one response, from the fragments so far.

    A frame is the tail of the answer (as much as fits), its tokens in colour and
    a ``│`` at every chunk boundary, exactly as the alignment view shows them; a
    strip of the gaps before the latest chunks, one cell each, higher and redder
    as a gap nears the stall threshold (on a log scale from 1 ms), a stall a red
    ``▲``; and a status line: elapsed time, TTFT, chunks, tokens, tokens/s (the
    stats' definitions: the final figures are the ones the stats table prints),
    the gap since the last chunk, and the stalls so far.

    Before the first text arrives the tail shows the reasoning, if any, dimmed.
    ``tokenize`` (``text -> (ids, byte sizes)``) colours the tokens; without it,
    the chunks alone are marked and tokens are not counted.
    """

    STRIP_LABEL = "gaps "
    LONG_LINE = 200_000  # characters of a line drawn at most to cut the tail's rows

    def __init__(
        self, tokenize: Callable[[str], Tokens] | None = None, *, stall_ms: float = 50.0
    ) -> None:
        self.tokenize = tokenize
        self.stall_ms = stall_ms
        self.begin("", start_ns=0)

    def begin(self, model: str, *, start_ns: int, starting: bool = False) -> None:
        """A new response: forget the last one. ``starting``: the run's, before any."""
        self.is_starting = starting
        self.model = terminal_line(model)  # a stored or captured model id is data too
        self.start_ns = start_ns
        self.origin_ns: int | None = None
        self.texts: list[str] = []
        self.chunk_times: list[int] = []
        self.reasoning: list[str] = []
        self.stalls = 0
        self._chars = 0
        self._ends: list[int] = []  # character end offset of each text chunk
        self._prefix = (0, 0)  # (offset, tokens before it): counted once, then added to
        self._settled: tuple[tuple, list[Text], int] | None = None
        """The settled part of the tail (see ``_tail``), and what it was drawn from."""
        self._drawn: tuple[tuple, list[Text], int | None] | None = None
        """The last tail drawn, and what it was drawn from: while nothing arrives (the
        wait for the first token, a stall) a frame redraws only the clock."""

    def add(self, fragments: Sequence[Sequence[Any]], origin_ns: int | None = None) -> None:
        """Fragments that arrived, as ``(kind, text, t_ns)`` with times from the origin."""
        if origin_ns is not None:
            self.origin_ns = origin_ns
        for kind, text, t_ns in fragments:
            if kind == "reasoning":
                self.reasoning.append(text)
            elif kind == "text" and text:
                if self.chunk_times and t_ns - self.chunk_times[-1] > self.stall_ms * 1e6:
                    self.stalls += 1
                self.texts.append(text)
                self.chunk_times.append(t_ns)
                self._chars += len(text)
                self._ends.append(self._chars)

    # -- the frame -----------------------------------------------------------

    def frame(self, console: Console, now_ns: int, height: int) -> RenderableType:
        """What to draw at ``now_ns`` (the capture's clock) on ``height`` rows."""
        width = console.width
        rows = max(1, height - 3)
        drawn_from = (len(self.texts), len(self.reasoning), width, rows, self.tokenize)
        if self._drawn is None or self._drawn[0] != drawn_from:
            self._drawn = (drawn_from, *self._tail(console, width, rows))
        _, tail, tokens = self._drawn
        return Group(*tail, self._strip(width), self._status(now_ns, tokens))

    def _tail(self, console: Console, width: int, rows: int) -> tuple[list[Text], int | None]:
        """The last ``rows`` rows of the answer, and its token count."""
        if not self.texts:
            if not self.reasoning:
                return [], None
            recent = "".join(self.reasoning)[-rows * width :]
            lines = text_lines(recent, style="dim")
            return [row for line in lines for row in wrap_rows(line, width)][-rows:], None
        text = "".join(self.texts)
        # A screenful of characters fills at least the rows (a row holds at most
        # `width` of them), so only that much is aligned and drawn each frame.
        screenful = (rows + 1) * width
        want = len(text) - screenful
        start = _safe_start(text, want)
        if want - start >= 4 * screenful:  # no newline to cut at near it
            return self._tail_from_token(console, text, want, rows)
        # Drawn in two parts cut where the text last started a piece (`_safe_start`):
        # what comes before that cut is settled, drawn once and kept; only the line
        # being written is drawn again each frame.
        cut = max(start, _safe_start(text, len(text)))
        counted = self.tokenize is not None
        before = self._tokens_before(text, start) if counted else 0
        drawn_from = (start, cut, width, self.tokenize, console.color_system)
        if self._settled is None or self._settled[0] != drawn_from:
            # The colours go on from the text's start, as in the final view.
            first = self._continues(start, before) if start else None
            rows_before, tokens_before, _ = self._part(console, text, start, cut, first)
            # The cut follows a newline: the empty row the view starts after it is the
            # first row of the part being written.
            self._settled = (drawn_from, rows_before[:-1], tokens_before)
        _, settled, settled_tokens = self._settled
        goes_on = self._continues(cut, before + settled_tokens) if cut > start else None
        writing, writing_tokens = self._part(console, text, cut, len(text), goes_on)[:2]
        tokens = before + settled_tokens + writing_tokens if counted else None
        return (settled + writing)[-rows:], tokens

    def _tail_from_token(
        self, console: Console, text: str, want: int, rows: int
    ) -> tuple[list[Text], int | None]:
        """The tail of a text with no safe cut near ``want``: drawn from the whole
        text's tokens (tokenized each frame) from the start of the line that holds
        ``want``, so that its rows are cut where the final view's are (from ``want``
        on a line over ``LONG_LINE``: the same text, the rows maybe cut elsewhere)."""
        line_start = text.rfind("\n", 0, want) + 1
        if want - line_start > self.LONG_LINE:
            line_start = want
        if self.tokenize is None:  # the chunks alone: any character is a cut
            part = self._part(console, text, line_start, len(text), self._continues(line_start, 0))
            return part[0][-rows:], None
        ids, sizes = self.tokenize(text)
        before, start = token_cut(text, sizes, line_start)
        first = self._continues(start, before) if start else None
        part = self._part(console, text, start, len(text), first, (ids[before:], sizes[before:]))
        return part[0][-rows:], len(ids)

    def _continues(self, cut: int, tokens_before: int) -> tuple[int, int, bool]:
        """How the view goes on at ``cut`` (a safe offset), as ``AlignmentView``'s
        ``continues``: the tokens and chunks before it, and whether a chunk ends there."""
        at = bisect_left(self._ends, cut)
        ends_chunk = at < len(self._ends) and self._ends[at] == cut
        return tokens_before, at + ends_chunk, ends_chunk

    def _part(
        self,
        console: Console,
        text: str,
        start: int,
        end: int,
        continues: tuple[int, int, bool] | None,
        region: Tokens | None = None,
    ) -> tuple[list[Text], int, int]:
        """``text[start:end]`` as the alignment view draws it, wrapped to the console:
        its rows, its tokens and its chunks. Both ends are where tiktoken starts a
        piece, so its tokens are the whole text's; or ``region`` gives them, cut
        from the whole text's."""
        from ..analysis.align import align_fragments
        from ..analysis.trace import Fragment

        if start >= end:
            return [], 0, 0
        first = bisect_right(self._ends, start)  # the first chunk that ends after it
        last = bisect_right(self._ends, end - 1)  # the chunk holding the last character
        fragments = [
            Fragment(j, "text", text[max(start, self._ends[j - 1] if j else 0) : min(e, end)], 0)
            for j, e in enumerate(self._ends[first : last + 1], first)
        ]
        if region is None and self.tokenize is not None:
            region = self.tokenize(text[start:end])
        elif region is None:  # one "token": the chunks alone
            region = (array("I", [0]), array("I", [len(text[start:end].encode("utf-8"))]))
        view = AlignmentView(
            align_fragments(fragments, region),
            "both" if self.tokenize is not None else "chunks",
            color=console.color_system is not None,
            continues=continues,
        )
        return list(view.rows(console.width)), len(region[0]), len(fragments)

    def _tokens_before(self, text: str, offset: int) -> int:
        """How many tokens ``text[:offset]`` is, at a safe offset (see ``_safe_start``)."""
        assert self.tokenize is not None
        counted, tokens = self._prefix
        if offset < counted or not _is_safe(text, counted):
            counted, tokens = 0, 0
        if offset > counted:
            tokens += len(self.tokenize(text[counted:offset])[0])
            self._prefix = (offset, tokens)
        return tokens

    def _strip(self, width: int) -> Text:
        """One cell per gap, the latest on the right: its height the gap against the
        stall threshold (a full cell is the threshold), a stall a red ``▲``."""
        cells = max(1, width - len(self.STRIP_LABEL))
        strip = Text(no_wrap=True, overflow="crop")
        strip.append(self.STRIP_LABEL, style="dim")
        threshold_ns = max(self.stall_ms * 1e6, 1.0)
        recent = self.chunk_times[-cells - 1 :]
        for a, b in pairwise(recent):
            share = (b - a) / threshold_ns
            if share > 1:
                strip.append("▲", style="bold red")
            else:
                style = "green" if share < 0.5 else "yellow"
                strip.append(_BLOCKS[min(7, int(share * 8))], style=style)
        return strip

    def _status(self, now_ns: int, tokens: int | None) -> Text:
        """Elapsed, TTFT, chunks, tokens, tok/s, the gap since the last chunk, stalls
        and the model, in that order: a narrow terminal cuts the model's name first."""
        origin = self.origin_ns
        status = Text(no_wrap=True, overflow="ellipsis")
        status.append("● ", style="bold green")
        times = self.chunk_times
        if origin is None or not times:
            waited = (now_ns - (origin if origin is not None else self.start_ns)) / 1e9
            status.append(f"{waited:.1f} s", style="bold")
            waiting = "starting…" if self.is_starting else "waiting for the first token"
            status.append(f"  {waiting}", style="dim")
            if self.reasoning:
                status.append("  reasoning", style="dim")
            if self.model:
                status.append(f"  {self.model}", style="dim")
            return status
        parts = [f"TTFT {times[0] / 1e6:,.0f} ms", _count(len(times), "chunk")]
        if tokens is not None:
            parts.append(_count(tokens, "token"))
            if tokens >= 2 and times[-1] > times[0]:
                parts.append(f"{(tokens - 1) / ((times[-1] - times[0]) / 1e9):,.1f} tok/s")
        gap_ms = max(0.0, (now_ns - origin - times[-1]) / 1e6)
        status.append(f"{(now_ns - origin) / 1e9:.1f} s", style="bold")
        status.append("  " + "  ".join(parts) + "  ")
        status.append(f"gap {gap_ms:,.0f} ms", style="bold red" if gap_ms > self.stall_ms else "")
        status.append("  ")
        status.append(_count(self.stalls, "stall"), style="bold red" if self.stalls else "")
        status.append(f"  {self.model}", style="dim")
        return status


_BLOCKS = "▁▂▃▄▅▆▇█"


def _is_safe(text: str, offset: int) -> bool:
    """True where tiktoken's pre-tokenizer always starts a piece: the start of the
    text, or a non-space character right after a newline (no piece of cl100k's or
    o200k's pattern runs from a newline into one). BPE never merges across
    pieces, so the tokens of the text are those of the two sides, cut there."""
    return offset == 0 or (
        0 < offset < len(text) and text[offset - 1] == "\n" and not text[offset].isspace()
    )


def _safe_start(text: str, want: int) -> int:
    """A safe offset at or before ``want`` (0 when there is none): where the tail that
    is drawn begins, so that its tokens are exactly the whole text's."""
    if want <= 0:
        return 0
    at = want
    while (at := text.rfind("\n", 0, at)) >= 0:
        if _is_safe(text, at + 1):
            return at + 1
    return 0
