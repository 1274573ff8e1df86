"""Report files (``--html FILE``, ``--svg FILE``): written only where nothing of
anyone else's is lost.

A report replaces a file only when that file is one of ours (it carries
:data:`MARK` near its start), is empty, or is not a regular file (``/dev/null``,
a pipe); anything else, a SQLite database above all (``--html logs.db``), is
refused unless the user says ``--overwrite``. Commands check when the option is
read (the options and their check are here, beside the rule), so a refusal comes
before a run rather than after it, and again just before writing: the file may
have appeared in between (a run creates logs.db).
"""

from __future__ import annotations

import os
import pathlib
import stat
from typing import Any

import click

MARK = "<!-- written by llm streamscope -->"
"""In the first lines of every report file: what makes a file ours to replace."""

_HEAD_BYTES = 512
"""How far into a file :data:`MARK` is looked for."""
_SQLITE_HEADER = b"SQLite format 3\x00"


class ReportFileError(click.ClickException):
    """A report that was not written, in one line fit for the user (``Error: ...``, exit 1)."""


def marked_svg(svg: str) -> str:
    """rich's SVG export with :data:`MARK` before its root element.

    >>> marked_svg("<svg></svg>")
    '<!-- written by llm streamscope -->\\n<svg></svg>'
    """
    return f"{MARK}\n{svg}"


def refusal(path: pathlib.Path) -> str | None:
    """Why replacing ``path`` would lose something that is not ours, or None."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None  # a device or a pipe: nothing stored is replaced
        with open(path, "rb") as existing:
            head = existing.read(_HEAD_BYTES)
    except FileNotFoundError:
        return None
    except OSError:
        return None  # unreadable: writing it will say why, in its own words
    if head.startswith(_SQLITE_HEADER):
        return "it is a SQLite database"
    if head and MARK.encode() not in head:
        return "it exists and is not a report streamscope wrote"
    return None


def check_replaceable(path: pathlib.Path, overwrite: bool = False) -> None:
    """Raise :class:`ReportFileError` unless ``path`` may take a report."""
    reason = None if overwrite else refusal(path)
    if reason is not None:
        raise ReportFileError(f"Not writing {path}: {reason} (--overwrite replaces it)")


def write_report(path: pathlib.Path, text: str, overwrite: bool = False) -> None:
    """Write a report to ``path``; raises :class:`ReportFileError` when refused or failed."""
    check_replaceable(path, overwrite)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as ex:
        raise ReportFileError(f"Cannot write {path}: {ex.strerror or ex}") from None


def html_option(help: str) -> Any:
    """``--html FILE``: where a command also writes its HTML report."""
    return click.option(
        "html_path",
        "--html",
        type=click.Path(dir_okay=False, writable=True, path_type=pathlib.Path),
        callback=replaceable,
        help=help,
    )


def overwrite_option(func: Any) -> Any:
    """``--overwrite``, for a command with ``--html``/``--svg``."""
    # Eager: read before --html and --svg, whose callbacks (replaceable) look at it.
    return click.option(
        "--overwrite",
        is_flag=True,
        is_eager=True,
        help="Let --html/--svg replace a file streamscope did not write",
    )(func)


def replaceable(ctx: click.Context, param: click.Parameter, path: Any) -> Any:
    """The callback of ``--html``/``--svg``: a file not ours is refused as the
    option is read, not after a whole run."""
    if path is not None:
        check_replaceable(path, ctx.params.get("overwrite", False))
    return path
