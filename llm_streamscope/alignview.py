"""The alignment view: a stream's text with its tokens and chunk boundaries marked.

Built in steps over every boundary at once (slices, joins, ``map``), not a step of
Python per character, so a single fragment of megabytes draws in time linear in
its size; rows are cut by ``wrapping.wrap_rows``, so none of its characters is lost.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from functools import cache
from itertools import accumulate, chain, compress, count, repeat
from operator import ne
from typing import TYPE_CHECKING

from rich.text import Span, Text

from .wrapping import wrap_rows

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult

    from .trace import StreamAlignment

VIEWS = ("both", "tokens", "chunks")

# Light backgrounds of four different hues, so that neighbouring tokens (and the
# last and first, where the cycle wraps) stay apart in 16 colours too: under
# TERM=xterm they become bright cyan, yellow, green and magenta; split tokens red.
TOKEN_STYLES = (
    "black on #a5d8ff",
    "black on #ffd8a8",
    "black on #a9e34b",
    "black on #e599f7",
)
CHUNK_STYLES = TOKEN_STYLES[:2]
SPLIT_STYLE = "bold white on #e03131"
CHUNK_MARK_STYLE = "bold magenta"
CHUNK_MARK = "\u2502"  # │ between chunks
TOKEN_MARK = "\u00a6"  # ¦ between tokens, plain output only
NEWLINE_MARK = "\u21b5"  # ↵ where the text has a newline; the view's line ends after it


class AlignmentView:
    """The text of one stream, showing tokens and chunk boundaries at once.

    In colour, tokens alternate background colours, a ``│`` marks every chunk
    boundary and tokens that arrived in pieces are red. In plain output (no
    colour) token boundaries are ``¦`` and chunk boundaries ``│``. A character whose
    bytes span two tokens is shown once, underlined, with the token it starts in.
    Newlines show as ``↵`` (and end the line), tabs as ``⇥``, other controls as
    pictures; removing those marks and the row breaks gives back the text.
    """

    def __init__(
        self,
        stream: StreamAlignment,
        view: str = "both",
        color: bool = True,
        *,
        continues: tuple[int, int, bool] | None = None,
    ):
        """``continues``: this view goes on from another one cut at a token boundary
        (the live view draws a text in two parts), as ``(tokens, chunks, chunk_ends)``:
        the tokens and chunks before it, which keep the colours alternating, and
        whether a chunk ends at the cut, which is marked like any other boundary."""
        if view not in VIEWS:
            raise ValueError(f"view must be one of {', '.join(VIEWS)}")
        self.stream = stream
        self.view = view
        self.color = color
        self.continues = continues

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.rows(options.max_width)

    def rows(self, width: int) -> Iterator[Text]:
        """The view's rows at ``width`` cells: each line cut by ``wrap_rows``."""
        for line in self.lines():
            yield from wrap_rows(line, width)

    def text(self) -> Text:
        """The whole view as one Text (for small streams and tests)."""
        return Text("\n").join(self.lines())

    def lines(self) -> list[Text]:
        """The view one line of model text at a time (each ends at a newline's ``↵``)."""
        marked, spans = self._marked()
        ends = _find_all(marked, "\n")
        if not spans:
            return [Text(line) for line in marked.split("\n")]
        whole = Text(marked, spans=spans)
        lines = list(whole.divide([end + 1 for end in ends]))
        for line in lines[:-1]:
            line.right_crop(1)  # the newline itself: the line break
        return lines

    def _marked(self) -> tuple[str, list[Span]]:
        """The text with its marks, newlines as ``↵\\n``, and (in colour) its styles."""
        s = self.stream
        color = self.color
        show_tokens = self.view in ("both", "tokens")
        show_chunks = self.view in ("both", "chunks")
        ends, chunk_ends = s.token_byte_ends, s.fragment_byte_ends
        data = s.text.encode("utf-8")
        size = len(data)
        # Where a token ends inside a character, the character stays whole, with the
        # token it starts in (underlined): the cut moves to the next character.
        inside = [] if s.text.isascii() else [e for e in ends if _continues_character(data, e)]
        moved = {_next_character(data, e) for e in inside}
        token_cuts = (set(ends) - set(inside)) | moved if show_tokens else set()
        chunk_cuts = set(chunk_ends) if show_chunks else set()
        every = token_cuts | chunk_cuts | (moved if color else set())
        cuts = sorted(c for c in every if 0 < c < size)
        tokens_before, chunks_before, cut_ends_chunk = self.continues or (0, 0, False)

        def mark(is_token: bool, is_chunk: bool) -> str:
            if show_chunks and is_chunk and (show_tokens or not color):
                return CHUNK_MARK
            if show_tokens and is_token and not color:
                return TOKEN_MARK
            return ""

        marks = [
            mark(True, cut_ends_chunk) if self.continues else "",
            *(mark(c in token_cuts, c in chunk_cuts) for c in cuts),
        ]
        starts = [0, *cuts]
        raw = [data[a:b].decode("utf-8") for a, b in zip(starts, [*cuts, size])]
        table = _newline_table()
        pieces = [p.translate(table) for p in raw]
        marked = "".join(chain.from_iterable(zip(marks, pieces)))
        if not color:
            return marked, []
        # Where each mark and each piece begins in ``marked``.
        lengths = chain.from_iterable(zip(map(len, marks), map(len, pieces)))
        offsets = list(accumulate(lengths, initial=0))
        mark_at, piece_at, piece_end = offsets[0:-1:2], offsets[1::2], offsets[2::2]
        if show_tokens:
            split = set(compress(count(), map(ne, s.token_first_fragment, s.token_last_fragment)))
            token_of = map(bisect_right, repeat(ends), starts)
            styles = [
                SPLIT_STYLE if t in split else TOKEN_STYLES[(tokens_before + t) % 4]
                for t in token_of
            ]
        else:
            chunk_of = map(bisect_right, repeat(chunk_ends), starts)
            styles = [CHUNK_STYLES[(chunks_before + c) % 2] for c in chunk_of]
        spans = [Span(a, b, style) for a, b, style in zip(piece_at, piece_end, styles) if a < b]
        spans += [Span(a, a + 1, CHUNK_MARK_STYLE) for a, m in zip(mark_at, marks) if m]
        piece_ending_at = {c: i for i, c in enumerate(cuts)}  # piece i ends where i+1 starts
        for c in moved:  # the character before it spans tokens: its piece's last
            i = piece_ending_at.get(c, len(raw) - 1)
            drawn = len(raw[i][-1].translate(table))
            spans.append(Span(piece_end[i] - drawn, piece_end[i], "underline"))
        return marked, spans


def text_lines(text: str, style: str = "") -> list[Text]:
    """Text without tokens or chunks, shown as the view shows it (controls as
    pictures, a newline as ``↵`` ending the line), one ``Text`` per line.

    >>> [line.plain for line in text_lines("a\\tb\\nc")]
    ['a⇥b↵', 'c']
    """
    return [Text(line, style=style) for line in text.translate(_newline_table()).split("\n")]


@cache
def _newline_table() -> dict[int, str]:
    """The view's stand-ins for controls (``render.VIEW_TABLE``), and a newline as
    ``↵`` and a line break."""
    from .render import VIEW_TABLE

    return {**VIEW_TABLE, ord("\n"): NEWLINE_MARK + "\n"}


def _continues_character(data: bytes, offset: int) -> bool:
    """True when ``offset`` falls inside a character of UTF-8 ``data``."""
    return offset < len(data) and data[offset] & 0xC0 == 0x80


def _next_character(data: bytes, offset: int) -> int:
    """The first character boundary at or after ``offset`` in UTF-8 ``data``."""
    while _continues_character(data, offset):
        offset += 1
    return offset


def _find_all(text: str, needle: str) -> list[int]:
    """Every offset of ``needle`` in ``text``.

    >>> _find_all("a↵\\nb↵\\n", "\\n")
    [2, 5]
    """
    found = []
    at = text.find(needle)
    while at >= 0:
        found.append(at)
        at = text.find(needle, at + 1)
    return found
