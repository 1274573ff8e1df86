"""What the commands share: the group, their common options, and the printing of runs.

Click commands and printing only: the run itself is ``session``, the live text
``views.live``. The cli package is the only one that owns a rich ``Console`` and
raises ``click.ClickException``. Heavy imports (rich, tiktoken, the simulator)
happen inside the commands so that ``llm --help`` does not pay for them.
"""

from __future__ import annotations

import functools
import os
import pathlib
import sys
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import click

from ..analysis.numbers import GAP_MS
from ..views.reportfile import html_option, marked_svg, overwrite_option, replaceable, write_report
from ..views.sanitize import echo_line, terminal_line, with_safe_errors
from .types import CommandGroup

if TYPE_CHECKING:
    from rich.console import Console

    from ..analysis.stats import RunTotals, Stats
    from ..analysis.trace import Alignment, Trace

VIEW_CHOICES = ("both", "tokens", "chunks")


@click.group(cls=with_safe_errors(CommandGroup), default="run", default_if_no_args=False)
def streamscope() -> None:
    """See how a model's answer actually arrives.

    Streams a prompt, timestamps every fragment the moment it arrives, aligns the
    fragments with the model's BPE tokens and reports TTFT, gaps, stalls, tokens
    per chunk and tokens/s. `run` is the default command:

    \b
        llm streamscope -m streamscope-sim "Why does streaming feel fast?"
        llm streamscope -m gpt-4o-mini "Explain SSE" --json
        llm streamscope run --help
    """


def database_option(func: Any) -> Any:
    return click.option(
        "-d",
        "--database",
        type=click.Path(dir_okay=False, path_type=pathlib.Path),
        help="Path to the log database (default: llm's logs.db)",
    )(func)


def timeline_option(func: Any) -> Any:
    # Two switches of one value: an optional value (--timeline=time) would take the
    # prompt in `--timeline "..."` for its value.
    func = click.option(
        "--timeline-by-time",
        "timeline",
        flag_value="time",
        help="Also draw the timeline, its columns equal slices of time",
    )(func)
    return click.option(
        "--timeline",
        "timeline",
        flag_value="position",
        default=None,
        help="Also draw the gaps between chunks as a timeline, a column per chunk",
    )(func)


def gap_ms_option(func: Any) -> Any:
    return click.option(
        "--gap-ms",
        type=GAP_MS,
        default=None,
        help="Gaps between chunks longer than this count as stalls  [default: 50]",
    )(func)


def otel_option(func: Any) -> Any:
    return click.option(
        "--otel",
        is_flag=True,
        help="Also send the traces to an OpenTelemetry collector (OTLP, set by the "
        "OTEL_* environment variables) once the stream has ended",
    )(func)


def _check_otel(otel: bool) -> None:
    """--otel that cannot work (no SDK: how to install it): one line, before any request."""
    if otel:
        from ..otlp import unusable

        problem = unusable()
        if problem:
            raise click.ClickException(problem)


def _send_otel(
    runs: list[list[tuple[Trace, Alignment, Stats]]], database: Any, models: list[Any]
) -> None:
    """Send finished runs, waiting at most ``RUN_BUDGET_S``: a collector that is down or
    slow costs one warning line, never the run's exit status."""
    from ..otlp import RUN_BUDGET_S, export_runs

    try:
        sent = export_runs(runs, database, metrics=True, budget_s=RUN_BUDGET_S, models=models)
    except KeyboardInterrupt:
        echo_line("Warning: --otel stopped by Ctrl-C; the traces stay in logs.db")
        sys.exit(130)
    warning = sent.warning(logged=database is not None)
    if warning:
        echo_line(f"Warning: {warning}")


@dataclass(frozen=True)
class Views:
    """How a run is shown: what ``view_options`` give a command, in one value."""

    view: str = "both"
    gap_ms: float | None = None
    json_: bool = False
    svg: pathlib.Path | None = None
    timeline: str | None = None
    """None, or how the timeline is drawn: ``position`` or ``time``."""
    html_path: pathlib.Path | None = None
    overwrite: bool = False


def view_options(command: Any) -> Any:
    """The options of how a run is shown, handed to the command as one ``views``."""
    names = [f.name for f in fields(Views)]

    @functools.wraps(command)
    def gathered(*args: Any, **kwargs: Any) -> Any:
        views = Views(**{name: kwargs.pop(name) for name in names})
        return command(*args, views=views, **kwargs)

    func = timeline_option(gathered)
    func = html_option("Also write one self-contained HTML report (opens offline) to this file")(
        func
    )
    func = click.option(
        "--svg",
        type=click.Path(dir_okay=False, writable=True, path_type=pathlib.Path),
        callback=replaceable,
        help="Also draw the views, in colour, into this SVG file",
    )(func)
    func = overwrite_option(func)
    func = click.option(
        "json_", "--json", is_flag=True, help="Output one JSON document instead of views"
    )(func)
    func = gap_ms_option(func)
    func = click.option(
        "--view",
        type=click.Choice(VIEW_CHOICES),
        default="both",
        show_default=True,
        help="Show token boundaries, chunk boundaries or both",
    )(func)
    return func


class _OneLineError(click.ClickException):
    """An error as one line, with the exit code of the error it stands for."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]


def _can_draw(stream: Any) -> bool:
    from ..views.live import can_draw

    return can_draw(stream)


def _log_path(database: str | pathlib.Path | None) -> pathlib.Path:
    from ..store.writer import logs_db_path

    return pathlib.Path(database) if database else logs_db_path()


def _prepared_log(database: str | pathlib.Path | None) -> pathlib.Path:
    """The log database, migrated and ready for traces, or a one-line error."""
    import sqlite3

    from ..analysis.trace import one_line
    from ..store import writer as store

    log_path = _log_path(database)
    try:
        store.prepare(log_path)
    except store.StoreError as ex:
        raise click.ClickException(str(ex)) from None
    except (sqlite3.Error, OSError) as ex:
        raise click.ClickException(f"{log_path}: {one_line(ex)}") from None
    return log_path


def _check_encoding(encoding_name: str | None) -> None:
    from ..analysis import encodings

    if encoding_name:
        try:
            encodings.check_encoding_name(encoding_name)
        except encodings.EncodingError as ex:
            raise click.ClickException(str(ex)) from None


def _expected_model(options: dict[str, Any]) -> Any:
    """The model llm will most likely use, found cheaply, to start its tokenizer early.

    None when only llm can tell (a query, a template, a conversation) or llm will
    refuse the model: llm then reports it in its own words.
    """
    import llm

    if options["queries"] or options["template"] or options["_continue"]:
        return None
    if options["conversation_id"]:
        return None
    try:
        model_id = options["model_id"] or llm.get_default_model()
        if options["async_"]:
            return llm.get_async_model(model_id)
        return llm.get_model(model_id)
    except llm.UnknownModelError:
        return None


def _exited_cleanly(failure: BaseException) -> bool:
    return isinstance(failure, click.exceptions.Exit) and failure.exit_code == 0


def _one_line_error(failure: BaseException) -> str:
    from ..analysis.trace import one_line

    if isinstance(failure, click.ClickException):
        return " ".join(str(failure.format_message()).split())
    return one_line(failure)


def _exit_code(trace: Trace) -> int:
    """A failed run's exit code: 130 after Ctrl-C, 143 after SIGTERM (128 + the signal,
    as a shell reports a process the signal killed), else 1."""
    from ..analysis.trace import STATUS_INTERRUPTED
    from ..capture.timing import TERMINATED

    if trace.status != STATUS_INTERRUPTED:
        return 1
    return 143 if trace.error == TERMINATED else 130


def present_run(
    run_id: str | None,
    responses: list[tuple[Trace, Alignment, Stats]],
    views: Views,
    *,
    wire: bool = False,
) -> None:
    """Print a run as `run` does at the end: the JSON document, or each response's views.

    A run of several responses (a tool chain) shows each with its own views, the
    time between them, and the run's totals; ``wire`` adds what the wire showed.
    ``views.svg``: the views are also drawn into that file, in colour, whatever
    stdout is; ``views.html_path``: the run's HTML report is written there.
    """
    from ..analysis.stats import run_totals
    from ..views.documents import run_document
    from ..views.jsonout import write_json

    view, timeline, svg, html_path = views.view, views.timeline, views.svg, views.html_path
    totals = run_totals(responses)
    if views.json_:
        document = run_document(run_id or responses[0][0].id, responses, totals)
        write_json(document, functools.partial(click.echo, nl=False))
    else:
        print_views(make_console(), responses, totals, view=view, wire=wire, timeline=timeline)
    if svg is not None:
        import io

        from rich.console import Console

        drawing = Console(
            file=io.StringIO(),
            record=True,
            width=100,
            force_terminal=True,
            color_system="truecolor",
            highlight=False,
            soft_wrap=False,
        )
        print_views(drawing, responses, totals, view=view, wire=wire, timeline=timeline)
        title = f"llm streamscope · {run_id or responses[0][0].id}"
        write_report(svg, marked_svg(drawing.export_svg(title=title)), views.overwrite)
    if html_path is not None:
        from ..views.report import report_html

        report = report_html(run_id or responses[0][0].id, responses)
        write_report(html_path, report, views.overwrite)


def print_views(
    console: Console,
    responses: list[tuple[Trace, Alignment, Stats]],
    totals: RunTotals,
    *,
    view: str,
    wire: bool,
    timeline: str | None = None,
) -> None:
    """Each response's views, the time between them, and a run's totals."""
    from rich.text import Text  # a rule's title as text, not markup (a tool's name)

    from ..views.render import between_line, response_label, run_table

    approximate = next((t for t, _, _ in responses if not t.encoding_exact), None)
    if approximate is not None:
        console.print(
            f"Encoding {approximate.encoding_name} is approximate: tiktoken does not know "
            f"{terminal_line(approximate.model_id)}'s tokenizer (set one with --encoding).",
            style="yellow",
            markup=False,
            soft_wrap=True,  # the terminal wraps it: rich would leave spaces at row ends
        )
    count = len(responses)
    for i, (trace, alignment, stats) in enumerate(responses):
        if count > 1:
            title = Text(f"response {i + 1} of {count}: {response_label(trace)}")
            console.rule(title, style="bold", align="left")
        present(console, trace, alignment, stats, view=view, wire=wire, timeline=timeline)
        if i + 1 < count and totals.between_ms[i] is not None:
            # None: no time between them (the choices of one stream, side by side)
            console.print(between_line(totals.between_ms[i]), style="dim", soft_wrap=True)
    if count > 1:
        console.rule("run", style="dim")
        console.print(run_table(totals))


def present(
    console: Console,
    trace: Trace,
    alignment: Alignment,
    stats: Stats,
    *,
    view: str,
    wire: bool = False,
    timeline: str | None = None,
) -> None:
    """One response's views: the alignment and the stats (and the timeline, the wire).

    A trace with no fragments (an HTTP error, Ctrl-C before the first token, an
    empty answer) still gets its stats table: its status, its error, and "-" for
    what cannot be measured.
    """
    from ..views.render import AlignmentPanel, stats_table

    console.rule("alignment", style="dim")
    if not alignment.streams:
        console.print("no fragments arrived", style="dim")
    AlignmentPanel(alignment, view, console.color_system is not None).print_to(console)
    console.rule("stats", style="dim")
    console.print(stats_table(trace, stats))
    if timeline:
        from ..views.timeline import Timeline

        console.rule("timeline", style="dim")
        console.print(Timeline(alignment, stats, by=timeline))
    if wire:
        from ..views.render import wire_table

        console.rule("wire", style="dim")
        console.print(wire_table(trace, stats))


def make_console() -> Console:
    """A console for stdout: styled on a terminal, plain text when piped or with NO_COLOR."""
    from rich.console import Console

    # NO_COLOR means plain text here (rich alone would drop colours but keep bold).
    plain = bool(os.environ.get("NO_COLOR"))
    # highlight=False: rich must not colour numbers or URLs inside model text.
    return Console(highlight=False, soft_wrap=False, color_system=None if plain else "auto")


# ====================
# Reading the log
# ====================


def trace_selector(func: Any) -> Any:
    func = click.option("--latest", is_flag=True, help="The most recent trace")(func)
    func = click.argument("trace_id", required=False)(func)
    return func


def _open_log(database: pathlib.Path | None, *, need_traces: bool = True) -> Any:
    from ..store.reading import open_for_reading
    from ..store.writer import StoreError, logs_db_path

    try:
        return open_for_reading(database or logs_db_path(), need_traces=need_traces)
    except StoreError as ex:
        raise click.ClickException(str(ex)) from None


def _load_run(
    database: pathlib.Path | None, ident: str | None, latest: bool, gap_ms: float | None = None
) -> Any:
    """The chosen run (or trace), read back and analysed again, or a one-line error.

    Warnings (a damaged JSON column, a stored alignment that differs) are printed
    and the trace stays readable.
    """
    import sqlite3

    from ..analysis import encodings
    from ..logged import load_run
    from ..store.writer import StoreError

    if latest and ident:
        raise click.ClickException(f"Give a trace id or --latest, not both (got {ident})")
    db = _open_log(database)
    try:
        result = load_run(db, ident, latest, gap_ms=gap_ms)
    except (StoreError, encodings.EncodingError) as ex:
        raise click.ClickException(str(ex)) from None
    except sqlite3.Error as ex:
        raise click.ClickException(f"Cannot read the trace: {ex}") from None
    for warning in result.warnings:
        echo_line(f"Warning: {warning}")
    return result


def _analysed(result: Any) -> list[tuple[Trace, Alignment, Stats]]:
    """The responses of a run that could be aligned (a failed encoding has none)."""
    return [
        (r.trace, r.alignment, r.stats)
        for r in result.responses
        if r.alignment is not None and r.stats is not None
    ]
