"""One rule for text from outside (model output, a provider's error body, a stored
row, a captured file) on its way to a terminal: every character that could act
instead of being shown gets a visible stand-in.

That is every control character (C0, DEL, C1: a cursor move, a screen clear, a
window title or clipboard write by OSC, a bell), every format character that is
invisible or reorders text (bidi overrides, zero-width space, BOM, word joiner,
tags), and the line and paragraph separators. Zero-width (non-)joiners are text
(emoji sequences, Persian) and stay. A lone surrogate, which has no UTF-8 form,
shows as U+FFFD.

- ``visible(text, table)``: the views' and the live text's form (``LIVE_TABLE``
  keeps newlines and tabs, ``VIEW_TABLE`` shows tabs as ⇥);
- ``terminal_line`` and ``echo_line``: every error, warning, note and progress line,
  kept on one line;
- ``json_text``: JSON documents, with those characters as ``\\uXXXX`` escapes, so
  the document is safe to print and still exact (it decodes to the same text);
- ``rows_for``: data (CSV) printed to a terminal; to a pipe or file it stays
  exact.

The HTML report uses ``visible`` too, before escaping.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, TypeVar

import click

from ..analysis.numbers import finite_json

_FORMAT_RANGES = (
    (0x00AD, 0x00AD),  # soft hyphen
    (0x061C, 0x061C),  # Arabic letter mark (bidi)
    (0x180E, 0x180E),  # Mongolian vowel separator
    (0x200B, 0x200B),  # zero-width space
    (0x200E, 0x200F),  # left-to-right and right-to-left marks
    (0x2028, 0x202E),  # line and paragraph separators; bidi embeddings and overrides
    (0x2060, 0x2064),  # word joiner, invisible operators
    (0x2066, 0x206F),  # bidi isolates; deprecated format characters
    (0xFEFF, 0xFEFF),  # byte order mark, zero-width no-break space
    (0xFFF9, 0xFFFB),  # interlinear annotation
    (0x13430, 0x1343F),  # Egyptian hieroglyph format controls
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0x1D173, 0x1D17A),  # musical symbol format controls
    (0xE0001, 0xE0001),  # language tag
    (0xE0020, 0xE007F),  # tags: invisible ASCII ("ASCII smuggling")
)
"""Unicode's format characters (Cf) and separators (Zl, Zp) that get a stand-in:
all but the zero-width (non-)joiners and the prepended concatenation marks, which
are visible signs."""


def _stand_ins() -> dict[int, str]:
    table = {c: chr(0x2400 + c) for c in range(0x20)}  # ␀ .. ␟ (ESC shows as ␛)
    table[0x7F] = "\u2421"  # ␡
    for c in range(0x80, 0xA0):  # C1 controls, e.g. the 8-bit CSI
        table[c] = f"\\x{c:02x}"
    for first, last in _FORMAT_RANGES:
        for c in range(first, last + 1):
            table[c] = f"<U+{c:04X}>"
    for c in range(0xD800, 0xE000):
        table[c] = "\ufffd"  # a lone surrogate has no UTF-8 form: printing it would fail
    return table


STAND_INS = _stand_ins()
"""Each character that must not reach a terminal as it is, and what is shown instead."""
LIVE_TABLE = {**STAND_INS, ord("\n"): "\n", ord("\t"): "\t"}
"""For live text: as ``llm`` shows it, but with controls made visible."""
VIEW_TABLE = {**STAND_INS, ord("\t"): "\u21e5"}
"""For the alignment view: tabs are visible too (⇥); AlignmentView shows newlines as ↵."""
PIPE_TABLE = {c: "\ufffd" for c in range(0xD800, 0xE000)}
"""For text written to a pipe or a file, which stays exact: only a lone surrogate,
which has no UTF-8 form, is replaced (as ``STAND_INS`` replaces it)."""


def visible(text: str, table: dict[int, str] = LIVE_TABLE) -> str:
    """Replace control characters in model output with visible stand-ins.

    >>> visible("a\\x1b[2Jb\\u202ec\\nd")
    'a␛[2Jb<U+202E>c\\nd'
    """
    return text.translate(table)


def terminal_line(text: str) -> str:
    """A message for the terminal as one line: newlines are shown, not followed.

    >>> terminal_line("Error: stream error: \\x1b]52;c;cHduZWQ=\\x07\\nError: fake")
    'Error: stream error: ␛]52;c;cHduZWQ=␇␊Error: fake'
    """
    return text.translate(STAND_INS)


def echo_line(line: str, err: bool = True) -> None:
    """Print one message line (an error, warning, note, progress) by the rule:
    on standard error unless ``err`` is False."""
    click.echo(terminal_line(line), err=err)


def _json_escape(c: int) -> str:
    if c > 0xFFFF:  # JSON escapes astral characters as a surrogate pair
        c -= 0x10000
        return f"\\u{0xD800 + (c >> 10):04x}\\u{0xDC00 + (c & 0x3FF):04x}"
    return f"\\u{c:04x}"


# json.dumps escapes C0 itself; the rest only ever occurs inside a JSON string,
# where an escape means the same character.
_JSON_RAW = re.compile(
    "[\x7f-\x9f\ud800-\udfff"
    + "".join(f"\\U{first:08x}-\\U{last:08x}" for first, last in _FORMAT_RANGES)
    + "]"
)


def json_text(value: Any, *, indent: int | None = None, default: Any = None) -> str:
    """``value`` as JSON that is safe to print: characters that would act on a
    terminal are ``\\u`` escapes, so the text decodes to exactly what it was.

    >>> print(json_text({"text": "\\u202eevil\\x9b\\x1b"}))
    {"text": "\\u202eevil\\u009b\\u001b"}
    >>> import json
    >>> json.loads(json_text("\\U000e0041")) == "\\U000e0041"
    True
    """
    return json_safe(finite_json(value, ensure_ascii=False, indent=indent, default=default))


def json_safe(text: str) -> str:
    """JSON text with the characters that would act on a terminal as ``\\u``
    escapes (the same string values: they only ever occur inside strings).

    >>> print(json_safe('"a\u2028b"'))
    "a\u2028b"
    """
    if text.isascii():  # a fast path: of the characters escaped, ASCII has only DEL
        return text.replace("\x7f", "\\u007f")
    return _JSON_RAW.sub(lambda m: _json_escape(ord(m.group())), text)


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (a closed one is not)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed
        return False


def rows_for(stream: Any, rows: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Data rows (CSV) as they are written to ``stream``: exact to a pipe or a file;
    on a terminal, each string with stand-ins (newlines and tabs kept)."""
    if not is_terminal(stream):
        return rows
    return ({k: visible(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows)


_Group = TypeVar("_Group", bound=type[click.Group])


def with_safe_errors(group: _Group) -> _Group:
    """``group``'s class, whose errors (click prints them as ``Error: ...``) are
    printed by the rule: they quote files, stored rows and providers."""

    class SafeErrors(group):  # type: ignore[valid-type,misc]
        def invoke(self, ctx: click.Context) -> Any:
            try:
                return super().invoke(ctx)
            except click.ClickException as ex:
                ex.message = terminal_line(ex.message)  # type: ignore[misc]
                raise

    return SafeErrors  # type: ignore[return-value]
