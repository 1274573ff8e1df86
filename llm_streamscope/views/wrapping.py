"""Rows of model text that keep every character, and tables without trailing padding.

Rich's own wrapping drops the spaces that fall at a full row's end, so a token's
leading space vanishes where a row breaks before it. Every view that draws model
text wraps it here instead: a row breaks before a run of spaces (the space then
starts the next row, with the word it belongs to, as tokens do) or, in a word
longer than the row, where the row is full (never inside a control's stand-in);
nothing is dropped, and nothing is added, so joining the rows gives back the line.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from itertools import accumulate, islice
from typing import TYPE_CHECKING, cast

from rich.cells import get_character_cell_size
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult

_ONE_CELL = frozenset(
    c
    for first, last in ((0x20, 0x7E), (0xA0, 0x2FF), (0x370, 0x482), (0x2500, 0x25FC))
    for c in map(chr, range(first, last + 1))
    if get_character_cell_size(c) == 1
) | frozenset("\u21b5\u21e5")  # and the view's ↵ and ⇥
"""Characters that take one cell each and never join the next (a quick test of a row)."""


class _CellsOf(dict[str, int]):
    """The cells of each character met so far, looked up in C: rich's measure, and
    one for an emoji selector. Summed, they are the most rich can count for any
    run of characters, however its styles cut it into segments (rich measures
    each alone: a family emoji cut by a token's colour is its four faces, a
    heart and its selector two cells or one)."""

    def __missing__(self, char: str) -> int:
        self[char] = cells = 1 if char == "\ufe0f" else get_character_cell_size(char)
        return cells


_CELLS = _CellsOf()


def row_breaks(line: str, width: int) -> list[int]:
    """Where the rows of ``line`` (no newline in it) start, after the first: each row
    at most ``width`` cells, as rich counts them however the row is styled.

    A row breaks before the latest run of spaces that follows a non-space in it,
    else (one long word) where it is full:

    >>> line = "The capital of France is  Paris"
    >>> [line[a:b] for a, b in zip([0, *row_breaks(line, 12)], [*row_breaks(line, 12), None])]
    ['The capital', ' of France', ' is  Paris']
    >>> row_breaks("abcdefgh", 3), row_breaks("中文字中文", 5)
    ([3, 6], [2, 4])
    """
    width = max(1, width)
    breaks: list[int] = []
    start = 0
    while (end := _row_end(line, start, width)) < len(line):
        space = line.rfind(" ", start + 1, end + 1)
        while space > start and line[space - 1] == " ":  # back to its run's start
            space -= 1
        start = space if space > start else _outside_stand_in(line, start, end)
        breaks.append(start)
    return breaks


_STAND_IN = re.compile(r"<U\+[0-9A-F]{4,5}>|\\x[0-9a-f]{2}")
"""A character's stand-in (``sanitize.STAND_INS``): one mark, never cut in two."""


def _outside_stand_in(line: str, start: int, end: int) -> int:
    """``end``, or the start of a stand-in that ``end`` would cut, where one starts
    after ``start``.

    >>> _outside_stand_in("ab<U+200B>", 0, 5), _outside_stand_in("<U+200B>", 0, 5)
    (2, 5)
    """
    for found in _STAND_IN.finditer(line, max(start + 1, end - 8), end + 8):
        if found.start() < end < found.end():
            return found.start()
    return end


def _row_end(line: str, start: int, width: int) -> int:
    """Where a row that starts at ``start`` is full: the first character that does
    not fit (the line's end when the rest fits). Characters that take no cell (a
    combining accent) stay with the one before."""
    window = line[start : start + width + 1]  # enough: a character takes a cell or two
    if _ONE_CELL.issuperset(window):
        return min(start + width, len(line))
    return start + max(1, bisect_right(list(accumulate(map(_CELLS.__getitem__, window))), width))


def wrap_rows(line: Text, width: int) -> list[Text]:
    """``line`` cut into rows at ``row_breaks``, styles kept; rich does not wrap them
    again (each fits), nor crop them."""
    rows = list(line.divide(row_breaks(line.plain, width)))
    for row in rows:
        row.no_wrap, row.overflow, row.end = True, "ignore", "\n"
    return rows


class Rows:
    """Rows (``wrap_rows``) printed in one go: rich's print then handles a segment of
    each row and never splits a long line itself."""

    def __init__(self, rows: list[Text | str]):
        self.rows = rows

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for row in self.rows:
            if isinstance(row, str):  # plain: already drawable, controls made visible
                yield Segment(row)
            else:
                yield from row.render(console)
            yield Segment.line()


def print_rows(console: Console, rows: Iterable[Text | str], batch: int = 256) -> None:
    """Print rows a batch at a time: one print of a long stream would make rich hold
    every segment of it at once, and one print per row costs more than the row."""
    rows = iter(rows)
    while some := list(islice(rows, batch)):
        console.print(Rows(some))


class UnpaddedTable(Table):
    """A rich ``Table`` whose lines end where their text does: rich pads every cell
    to its column's width, which would leave trailing spaces on every plain line."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        segments = cast("Iterable[Segment]", super().__rich_console__(console, options))
        for line in Segment.split_lines(segments):
            yield from _rstrip(line)
            yield Segment.line()


def _rstrip(line: list[Segment]) -> Iterator[Segment]:
    """The line without its trailing spaces that show no background."""
    end = len(line)
    while end and _blank(line[end - 1]) and not line[end - 1].text.strip(" "):
        end -= 1
    if end and _blank(line[end - 1]):
        last = line[end - 1]
        yield from line[: end - 1]
        yield Segment(last.text.rstrip(" "), last.style, last.control)
    else:
        yield from line[:end]


def _blank(segment: Segment) -> bool:
    """A segment whose spaces show nothing: no background, no underline, no control."""
    style = segment.style
    return segment.control is None and (
        style is None or (style.bgcolor is None and not style.underline and not style.reverse)
    )
