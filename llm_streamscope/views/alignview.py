"""The alignment view: a stream's text with its tokens and chunk boundaries marked.

Built in steps over every boundary at once (slices, joins, ``map``), not a step of
Python per character, so a single fragment of megabytes draws in time linear in
its size; rows are cut by ``wrapping.wrap_rows``, so none of its characters is lost.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from functools import cache
from itertools import accumulate, chain, compress, count, repeat
from operator import ne, sub
from typing import TYPE_CHECKING

from rich.text import Span, Text

from .wrapping import row_breaks, wrap_rows

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult

    from ..analysis.trace import StreamAlignment

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
        """The view's rows at ``width`` cells: each line cut by ``row_breaks``."""
        for row in self.rows_or_plain(width):
            yield Text(row, no_wrap=True, overflow="ignore") if isinstance(row, str) else row

    def rows_or_plain(self, width: int) -> Iterator[Text | str]:
        """``rows``, a plain row (no colour) as the string it is: printed as it is
        (``wrapping.print_rows``), it needs no ``Text`` of its own."""
        marked, spans = self._marked()
        if not spans:
            for line in marked.split("\n"):
                yield from _cut(line, row_breaks(line, width))
            return
        for styled in self._styled_lines(marked, spans):
            yield from wrap_rows(styled, width)

    def text(self) -> Text:
        """The whole view as one Text (for small streams and tests)."""
        return Text("\n").join(self.lines())

    def lines(self) -> list[Text]:
        """The view one line of model text at a time (each ends at a newline's ``↵``)."""
        marked, spans = self._marked()
        if not spans:
            return [Text(line) for line in marked.split("\n")]
        return self._styled_lines(marked, spans)

    @staticmethod
    def _styled_lines(marked: str, spans: list[Span]) -> list[Text]:
        lines = list(Text(marked, spans=spans).divide(_after_newlines(marked)))
        for line in lines[:-1]:
            line.right_crop(1)  # the newline itself: the line break
        return lines

    def _marked(self) -> tuple[str, list[Span]]:
        """The text with its marks, newlines as ``↵\\n``, and (in colour) its styles.

        Every step works on all the boundaries at once: the cuts (token and chunk
        boundaries, as UTF-8 offsets), the pieces of text between them, the mark
        before each piece and, in colour, each piece's style.
        """
        s = self.stream
        color = self.color
        show_tokens = self.view in ("both", "tokens")
        show_chunks = self.view in ("both", "chunks")
        text = s.text
        ends, chunk_ends = s.token_byte_ends, s.fragment_byte_ends
        data = b"" if text.isascii() else text.encode("utf-8")
        size = len(data) if data else len(text)
        # Where a token ends inside a character, the character stays whole, with the
        # token it starts in (underlined): the cut moves to the next character.
        flags = data.translate(_CONTINUATION)  # 1 for each byte inside a character
        inside = list(compress(ends, map(flags.__getitem__, ends[:-1]))) if data else []
        moved = {_next_character(data, e) for e in inside}
        token_cuts = set(ends) if show_tokens else set()
        if show_tokens and inside:
            token_cuts = token_cuts.difference(inside).union(moved)
        chunk_cuts = set(chunk_ends) - {0, size} if show_chunks else set()
        if show_tokens and not inside and chunk_cuts <= token_cuts:
            cuts = list(ends[:-1])  # the common case: the tokens' own ends, in order
        else:
            every = token_cuts | chunk_cuts | (moved if color else set())
            cuts = sorted(every - {0, size})

        chunk_mark = CHUNK_MARK if show_chunks and (show_tokens or not color) else ""
        token_mark = TOKEN_MARK if show_tokens and not color else ""
        tokens_before, chunks_before, cut_ends_chunk = self.continues or (0, 0, False)
        first = ""
        if self.continues:
            first = chunk_mark if cut_ends_chunk and chunk_mark else token_mark
        if chunk_mark == token_mark:
            marks = [first, *repeat(token_mark, len(cuts))]
        else:
            marks = [first, *(chunk_mark if c in chunk_cuts else token_mark for c in cuts)]
        starts = [0, *cuts]
        if data:  # a cut's character offset: its byte offset less the bytes inside characters
            inner = accumulate(map(flags.count, repeat(1), starts, [*cuts, size]))
            char_cuts = list(map(sub, cuts, inner))
        else:
            char_cuts = cuts
        pieces = list(map(text.__getitem__, map(slice, [0, *char_cuts], [*char_cuts, len(text)])))
        table = _newline_table()
        controls = _controls().search(text) is not None
        if not color:
            marked = "".join(chain.from_iterable(zip(marks, pieces)))
            return marked.translate(table) if controls else _newlines(marked), []
        raw = pieces
        if controls:
            pieces = [p.translate(table) for p in pieces]
        elif "\n" in text:
            pieces = list(map(_newlines, pieces))
        marked = "".join(chain.from_iterable(zip(marks, pieces)))
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


def _cut(line: str, breaks: list[int]) -> list[str]:
    """``line`` cut at ``breaks``.

    >>> _cut("abcdef", [2, 4])
    ['ab', 'cd', 'ef']
    """
    return list(map(line.__getitem__, map(slice, [0, *breaks], [*breaks, len(line)])))


def _newlines(text: str) -> str:
    """Each newline as ``↵`` and a line break."""
    return text.replace("\n", NEWLINE_MARK + "\n")


def _after_newlines(text: str) -> list[int]:
    """The offset after each newline in ``text``.

    >>> _after_newlines("a↵\\nb↵\\n")
    [3, 6]
    """
    found = []
    at = text.find("\n")
    while at >= 0:
        found.append(at + 1)
        at = text.find("\n", at + 1)
    return found


def text_lines(text: str, style: str = "") -> list[Text]:
    """Text without tokens or chunks, shown as the view shows it (controls as
    pictures, a newline as ``↵`` ending the line), one ``Text`` per line.

    >>> [line.plain for line in text_lines("a\\tb\\nc")]
    ['a⇥b↵', 'c']
    """
    return [Text(line, style=style) for line in text.translate(_newline_table()).split("\n")]


@cache
def _controls() -> re.Pattern[str]:
    """Any character the view shows as something else, but a newline."""
    from .sanitize import VIEW_TABLE

    return re.compile("[" + "".join(re.escape(chr(c)) for c in VIEW_TABLE if c != 10) + "]")


_CONTINUATION = bytes(int(b & 0xC0 == 0x80) for b in range(256))
"""A ``bytes.translate`` table: 1 for a UTF-8 continuation byte, else 0."""


@cache
def _newline_table() -> dict[int, str]:
    """The view's stand-ins for controls (``sanitize.VIEW_TABLE``), and a newline as
    ``↵`` and a line break."""
    from .sanitize import VIEW_TABLE

    return {**VIEW_TABLE, ord("\n"): NEWLINE_MARK + "\n"}


def token_cut(text: str, sizes: Sequence[int], offset: int) -> tuple[int, int]:
    """The last token boundary of ``text`` at or before character ``offset`` that is
    also a character boundary (``sizes``: the tokens' UTF-8 sizes), as the tokens
    before it and its character offset.

    >>> token_cut("Hello world", [5, 6], 8), token_cut("a😀b", [1, 2, 3], 2)
    ((1, 5), (1, 1))
    """
    data = text.encode("utf-8")
    ends = list(accumulate(sizes))
    before = bisect_right(ends, len(text[:offset].encode("utf-8")))
    while before and ends[before - 1] < len(data) and data[ends[before - 1]] & 0xC0 == 0x80:
        before -= 1  # a token that ends inside a character: the cut goes before it
    return before, len(data[: ends[before - 1]].decode("utf-8")) if before else 0


def _next_character(data: bytes, offset: int) -> int:
    """The first character boundary at or after ``offset`` in UTF-8 ``data``."""
    while offset < len(data) and data[offset] & 0xC0 == 0x80:
        offset += 1
    return offset
