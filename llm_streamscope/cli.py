"""The ``llm streamscope`` command group.

Click commands and printing only: the run itself is ``session``, the live text
``live``. The only module that owns a rich ``Console`` and raises
``click.ClickException``. Heavy imports (rich, tiktoken, the simulator) happen
inside the commands so that ``llm --help`` does not pay for them.
"""

from __future__ import annotations

import functools
import os
import pathlib
import sys
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import click
from click_default_group import DefaultGroup

from .reportfile import html_option, marked_svg, overwrite_option, replaceable, write_report
from .sanitize import echo_line, json_text, rows_for, terminal_line, visible, with_safe_errors
from .serving import DEFAULT_FORMAT, LOOPBACK, SERVE_FORMATS
from .wire import FORMATS

if TYPE_CHECKING:
    from rich.console import Console

    from .inspection import Inspection, InspectSettings
    from .stats import RunTotals, Stats
    from .trace import Alignment, Trace
    from .wire.command import CommandRun
    from .wire.sources import Source

VIEW_CHOICES = ("both", "tokens", "chunks")


@click.group(cls=with_safe_errors(DefaultGroup), default="run", default_if_no_args=False)
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
        type=click.FloatRange(min=0),
        default=None,
        help="Gaps between chunks longer than this count as stalls  [default: 50]",
    )(func)


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


class PromptCommand(click.Command):
    """A command that takes every option of ``llm prompt``, with llm's own meaning, and its own.

    llm's options are read from llm's prompt command the first time they are
    needed (parsing, help): this module is imported while llm.cli is still loading,
    and ``llm --help`` should not pay for it. llm's ``--json`` (llm's log record)
    gives way to streamscope's own.
    """

    REPLACED = ("json_output",)

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not getattr(self, "_with_llm_options", False):
            from llm.cli import prompt

            self.params[:0] = [p for p in prompt.params if p.name not in self.REPLACED]
            self._with_llm_options = True
        return super().get_params(ctx)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as ex:  # one line, not click's usage block
            raise _OneLineError(" ".join(ex.format_message().split()), ex.exit_code) from None


class _OneLineError(click.ClickException):
    """An error as one line, with the exit code of the error it stands for."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]


@streamscope.command(name="run", cls=PromptCommand)
@click.option(
    "encoding_name",
    "--encoding",
    help="tiktoken encoding to align with (default: the model's, else o200k_base)",
)
@view_options
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="End the run as an error if nothing arrives for this many seconds",
)
@click.option(
    "--wire",
    is_flag=True,
    help="Also record the socket reads of each request: the provider's events, "
    "and times from the wire",
)
@click.option(
    "--no-live",
    is_flag=True,
    help="Stream plain text, as llm shows it, instead of the live view (plain text "
    "is what a pipe, --json and NO_COLOR get)",
)
@click.pass_context
def run(
    ctx: click.Context,
    encoding_name: str | None,
    views: Views,
    timeout: float | None,
    wire: bool,
    no_live: bool,
    **options: Any,
) -> None:
    """Run a prompt as `llm prompt` does, and show how every response arrived.

    Every option of `llm prompt` works, with llm's meaning: templates, fragments,
    attachments, conversations (-c), tools and chains (-T), schemas, --async. The
    text streams live; then, for each response llm streamed, the
    alignment of its fragments with the model's tokens and its rate stats (a tool
    chain streams several responses, with the time between them). In a terminal the
    live view shows the text with its tokens and chunks as it arrives, a status
    line and a strip of the gaps between chunks. The traces are
    logged to llm's logs.db beside llm's own record, unless logging is off; see
    `llm streamscope logs`.
    """
    import contextlib

    import llm.cli

    from .exiting import end_process
    from .session import RunSettings
    from .session import run as run_session

    if options["no_stream"]:
        raise click.ClickException(
            "--no-stream cannot apply: streamscope times how a streamed answer arrives"
        )
    if options["save"]:
        raise click.ClickException(
            "--save saves a template and runs no prompt, so there is nothing to time: "
            "use llm prompt --save"
        )
    if options["show_model_options"]:
        ctx.invoke(llm.cli.prompt, **options)
        return
    _check_encoding(encoding_name)
    log_path = _prepared_log(options["database"])
    # -x and --xl make llm wait for the whole answer: streamscope streams it, and
    # shows the code block at the end instead of the live text.
    extract = "last" if options["extract_last"] else "first" if options["extract"] else None
    if options["log"] and options["no_log"]:
        raise click.ClickException("--log and --no-log are mutually exclusive")  # llm's words
    logging = (llm.cli.logs_on() or options["log"]) and not options["no_log"]
    # llm's own record of each response is written with its trace, in one transaction.
    options |= {"extract": False, "extract_last": False, "json_output": False}
    options |= {"log": False, "no_log": True}
    settings = RunSettings(
        encoding_name=encoding_name,
        gap_ms=views.gap_ms,
        timeout_s=timeout,
        database=log_path if logging else None,
        live=not views.json_,
        live_view=not (no_live or views.json_ or extract) and _can_draw(sys.stdout),
        extract=extract,
        wire=wire,
    )

    def invoke() -> None:
        # With --json, standard output carries the document alone: what llm prints
        # there (the newline after the stream) goes to standard error.
        redirect = (
            contextlib.redirect_stdout(sys.stderr) if views.json_ else contextlib.nullcontext()
        )
        with redirect:
            ctx.invoke(llm.cli.prompt, **options)

    def streaming_model() -> Any:
        expected_model = _expected_model(options)
        if expected_model is not None and not expected_model.can_stream:
            raise click.ClickException(
                f"Model {expected_model.model_id} cannot stream, so there is nothing to time: "
                "streamscope needs a streaming model"
            )
        return expected_model

    result = run_session(
        invoke,
        settings,
        notify=lambda message: echo_line(f"Note: {message}"),
        find_model=streaming_model,
    )
    failure = result.failure
    if not result.responses:
        if isinstance(failure, KeyboardInterrupt):
            sys.exit(130)
        if isinstance(failure, click.ClickException):
            # llm's own words, on one line (llm spreads option errors over several)
            raise _OneLineError(_one_line_error(failure), failure.exit_code) from None
        if failure is not None:
            raise failure
        raise click.ClickException(
            "No response was streamed, so there is nothing to time (does the model stream?)"
        )
    analysed = [
        (r.trace, r.alignment, r.stats)
        for r in result.responses
        if r.alignment is not None and r.stats is not None
    ]
    if analysed:
        present_run(result.run_id, analysed, views, wire=wire)
    for warning in result.warnings:
        echo_line(f"Warning: {warning}")
    problems = list(result.problems)
    last = result.responses[-1].trace
    if last.status != "complete":
        received = len(last.fragments)
        where = f" after {received} fragment{'s' if received != 1 else ''}" if received else ""
        problems.insert(0, f"stream {last.status}{where}: {last.error}")
    elif failure is not None and not _exited_cleanly(failure):
        problems.insert(0, _one_line_error(failure))
    code = _exit_code(last) if problems else 0
    if problems:
        echo_line("Error: " + "; ".join(problems))
    end_process(code)  # the command's process ends here, without Python's teardown
    if code:
        sys.exit(code)


def _can_draw(stream: Any) -> bool:
    from .live import can_draw

    return can_draw(stream)


def _log_path(database: str | pathlib.Path | None) -> pathlib.Path:
    from .store import logs_db_path

    return pathlib.Path(database) if database else logs_db_path()


def _prepared_log(database: str | pathlib.Path | None) -> pathlib.Path:
    """The log database, migrated and ready for traces, or a one-line error."""
    import sqlite3

    from . import store
    from .trace import one_line

    log_path = _log_path(database)
    try:
        store.prepare(log_path)
    except store.StoreError as ex:
        raise click.ClickException(str(ex)) from None
    except (sqlite3.Error, OSError) as ex:
        raise click.ClickException(f"{log_path}: {one_line(ex)}") from None
    return log_path


def _check_encoding(encoding_name: str | None) -> None:
    from . import encodings

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
    from .trace import one_line

    if isinstance(failure, click.ClickException):
        return " ".join(str(failure.format_message()).split())
    return one_line(failure)


def _exit_code(trace: Trace) -> int:
    """A failed run's exit code: 130 after Ctrl-C, 143 after SIGTERM (128 + the signal,
    as a shell reports a process the signal killed), else 1."""
    from .capture import TERMINATED
    from .trace import STATUS_INTERRUPTED

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
    from .render import run_document
    from .stats import run_totals

    view, timeline, svg, html_path = views.view, views.timeline, views.svg, views.html_path
    totals = run_totals(responses)
    if views.json_:
        document = run_document(run_id or responses[0][0].id, responses, totals)
        click.echo(json_text(document, indent=2, default=str))
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
        from .report import report_html

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

    from .render import between_line, response_label, run_table

    approximate = next((t for t, _, _ in responses if not t.encoding_exact), None)
    if approximate is not None:
        console.print(
            f"Encoding {approximate.encoding_name} is approximate: tiktoken does not know "
            f"{terminal_line(approximate.model_id)}'s tokenizer (set one with --encoding).",
            style="yellow",
            markup=False,
        )
    count = len(responses)
    for i, (trace, alignment, stats) in enumerate(responses):
        if count > 1:
            title = Text(f"response {i + 1} of {count}: {response_label(trace)}")
            console.rule(title, style="bold", align="left")
        present(console, trace, alignment, stats, view=view, wire=wire, timeline=timeline)
        if i + 1 < count and totals.between_ms[i] is not None:
            # None: no time between them (the choices of one stream, side by side)
            console.print(between_line(totals.between_ms[i]), style="dim", markup=False)
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
    from .render import AlignmentPanel, stats_table

    console.rule("alignment", style="dim")
    if not alignment.streams:
        console.print("no fragments arrived", style="dim")
    # Line by line: one print of a long stream would make rich hold all of it at once.
    for line in AlignmentPanel(alignment, view, console.color_system is not None).lines():
        console.print(line)
    console.rule("stats", style="dim")
    console.print(stats_table(trace, stats))
    if timeline:
        from .render import Timeline

        console.rule("timeline", style="dim")
        console.print(Timeline(alignment, stats, by=timeline))
    if wire:
        from .render import wire_table

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
# A captured stream
# ====================


class _InspectCommand(click.Command):
    """``inspect``: everything after ``--`` is a command to run and time (``CMD``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            args, ctx.meta["streamscope.command"] = args[:at], args[at + 1 :]
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [self.options_metavar or "", "FILE|-", "|", "-- CMD [ARGS]..."]


@streamscope.command(name="inspect", cls=_InspectCommand)
@click.argument("file", metavar="FILE|-", required=False)
@click.option(
    "stream_format",
    "--format",
    type=click.Choice(FORMATS),
    help="The provider format of the stream (default: detected from it)",
)
@click.option(
    "encoding_name",
    "--encoding",
    help="tiktoken encoding to align with (default: the model the stream names, else o200k_base)",
)
@click.option(
    "--interaction",
    type=click.IntRange(min=1),
    help="Which interaction of a cassette, from 1 (default: the first that streamed)",
)
@click.option(
    "--max-event-mb",
    type=click.IntRange(1, 4096),
    default=64,
    show_default=True,
    help="Refuse a stream with one event (or run of bytes between events) over this many MiB",
)
@view_options
@click.option("log", "--log", is_flag=True, help="Log the traces (not logged unless given)")
@database_option
@click.pass_context
def inspect_command(
    ctx: click.Context,
    file: str | None,
    stream_format: str | None,
    encoding_name: str | None,
    interaction: int | None,
    max_event_mb: int,
    views: Views,
    log: bool,
    database: pathlib.Path | None,
) -> None:
    """Show a captured stream as a run shows its responses: the same views (or --json).

    FILE is a response body as the provider sent it (SSE, NDJSON or a JSON-array
    stream of OpenAI chat or Responses, Anthropic, Gemini or Ollama: detected),
    a vcrpy / pytest-recording cassette (or a Go httprr trace), or - for standard
    input, timed read by read as it arrives. After --, a command to run: it starts
    once inspect is ready and its standard output is timed as it arrives (its exit
    status and standard error are reported; Ctrl-C stops it and keeps what arrived):

    \b
        llm streamscope inspect -- curl -sN https://api.openai.com/v1/chat/completions ...

    Bytes already waiting on standard input when inspect began reading (it takes a
    second or more to start) have no arrival time, and no figure counts them.

    A file carries no times unless a sidecar FILE.times says when its bytes
    arrived (lines of t_seconds<TAB>byte_offset) or the stream holds them
    (Ollama's created_at); otherwise only the token and chunk analysis is shown.
    Each choice of an n>1 stream is a response of its own.
    """
    command = ctx.meta.get("streamscope.command")
    if (file is None) == (command is None):
        raise click.UsageError("Give FILE, - (standard input) or -- CMD [ARGS]..., one of them")
    # Standard input first: every read is timed as it arrives, so nothing else runs
    # before it (bytes that arrive while llm starts can only be timed when read).
    ran = None
    if command is not None:
        ran = _run_command(command, interaction)
        source = ran.source
    else:
        source = _read_source(file or "-", interaction, max_event_mb * 2**20, stream_format)
    from .inspection import InspectSettings
    from .render import inspect_line

    _check_encoding(encoding_name)
    settings = InspectSettings(
        format=stream_format,
        encoding_name=encoding_name,
        gap_ms=views.gap_ms,
        database=_prepared_log(database) if log else None,
    )
    inspection = _inspect(source, settings)
    result = inspection.result
    if not views.json_:
        line = inspect_line(source.name, inspection.timing)
        make_console().print(line, style="dim", markup=False, soft_wrap=True)
    present_run(result.run_id, _analysed(result), views, wire=True)
    for warning in result.warnings:
        echo_line(f"Warning: {warning}")
    if ran is not None:
        _report_command(ran)
    if result.problems:
        echo_line(f"Error: {source.name}: " + "; ".join(result.problems))
    if ran is not None and ran.interrupted:
        sys.exit(130)
    if result.problems or (ran is not None and ran.ending()):
        sys.exit(1)


def _run_command(command: list[str], interaction: int | None) -> CommandRun:
    """``inspect -- CMD``: the command run and its output read, or a one-line error."""
    from .wire.command import run_command
    from .wire.sources import SourceError

    try:
        ran = run_command(command, interaction=interaction)
    except SourceError as ex:
        raise click.ClickException(str(ex)) from None
    if not ran.source.reads and (ran.status or ran.interrupted):
        _report_command(ran)  # it failed before writing anything: say how, and stop
        sys.exit(130 if ran.interrupted else 1)
    return ran


def _report_command(ran: CommandRun) -> None:
    for line in ran.report():
        echo_line(line)


def _read_source(
    file: str,
    interaction: int | None = None,
    max_event_bytes: int | None = None,
    stream_format: str | None = None,
) -> Source:
    """A captured stream from FILE, or standard input for ``-``, or a one-line error.

    What is no event stream is refused from its first bytes; one event over
    ``max_event_bytes`` (default: ``wire.intake.MAX_EVENT_BYTES``) stops the reading."""
    from .wire.intake import MAX_EVENT_BYTES
    from .wire.sources import SourceError, read_file, read_stdin

    cap = max_event_bytes or MAX_EVENT_BYTES
    try:
        if file == "-":
            return read_stdin(
                sys.stdin.buffer, interaction=interaction, max_event_bytes=cap, format=stream_format
            )
        return read_file(file, interaction=interaction, max_event_bytes=cap, format=stream_format)
    except SourceError as ex:
        raise click.ClickException(str(ex)) from None


def _inspect(source: Source, settings: InspectSettings) -> Inspection:
    """``source`` decoded and analysed as a run, or a one-line error."""
    from . import encodings
    from .inspection import inspect_source
    from .wire.events import WireError

    try:
        return inspect_source(source, settings)
    except WireError as ex:
        raise click.ClickException(f"{source.name}: {ex}") from None
    except encodings.EncodingError as ex:
        raise click.ClickException(str(ex)) from None


# ====================
# The simulator as a server
# ====================


class ServeCommand(click.Command):
    """A command with one option per simulator option (``--stall-after``), added the
    first time they are needed (parsing, help): reading them imports the simulator."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not getattr(self, "_with_sim_options", False):
            from .sim.options import flags

            self.params += [
                click.Option([flag, name], metavar=name.upper(), help=help)
                for flag, name, help in flags()
            ]
            self._with_sim_options = True
        return super().get_params(ctx)


@streamscope.command(name="serve", cls=ServeCommand)
@click.option(
    "serve_format",
    "--format",
    type=click.Choice(tuple(SERVE_FORMATS)),
    default=DEFAULT_FORMAT,
    show_default=True,
    help="The format the printed URL and instructions are for (every format is served)",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on (0: a free one)",
)
@click.option(
    "--host",
    default=LOOPBACK,
    show_default=True,
    help="Address to listen on; anything but loopback lets other machines in",
)
@click.option(
    "--replay",
    type=click.Path(dir_okay=False, path_type=pathlib.Path),
    help="Serve this captured stream (anything inspect reads) on its format's route",
)
@click.option(
    "--timing",
    type=click.Path(dir_okay=False, path_type=pathlib.Path),
    help="When the --replay file's bytes arrived (t_seconds<TAB>byte_offset lines;"
    " default: FILE.times beside it, else the profile's timing)",
)
@click.option("--verbose", is_flag=True, help="Log every request to standard error")
def serve_command(
    serve_format: str,
    port: int,
    host: str,
    replay: pathlib.Path | None,
    timing: pathlib.Path | None,
    verbose: bool,
    **sim_options: str | None,
) -> None:
    """Serve the simulator over HTTP, for any client, until Ctrl-C.

    One server speaks every format at once (OpenAI chat, Anthropic Messages,
    Gemini; see --format). The first line on standard output is the base URL;
    how to point clients at it follows on standard error. The simulator options
    below are the server's defaults for requests that do not set them (in a
    "streamscope" body object); the network conditions (--latency-ms, --ttft-ms,
    --jitter-ms, --bandwidth, --keepalive-ms, --stall-after, --drop-after,
    --error) apply to every response. --seed makes chunking and timing the same
    on every request.

    \b
        llm streamscope serve --profile gpt-4o-mini --port 8000
        llm streamscope serve --format anthropic --ttft-ms 400 --stall-after 5 --stall-s 2
        llm streamscope serve --replay capture.sse --timing capture.sse.times
    """
    from .serving import ServeError, ServeSettings, Serving, exposed, instructions, serve

    def announce(serving: Serving) -> None:
        click.echo(serving.base_url)
        if exposed(host):
            echo_line(
                f"Warning: listening on {host}: other machines can reach the simulator "
                "(no key, no TLS)"
            )
        for line in instructions(serving):  # with newlines: the lines of a YAML file
            click.echo(visible(line), err=True)

    settings = ServeSettings(
        format=serve_format,
        port=port,
        host=host,
        defaults=sim_options,
        replay=replay,
        timing=timing,
        verbose=verbose,
    )
    from .sim.options import InvalidOption

    try:
        serve(settings, announce)
    except InvalidOption as ex:
        raise _OneLineError(ex.message, 2) from None  # a usage error, as click's own are
    except ServeError as ex:
        raise click.ClickException(str(ex)) from None


# ====================
# Reading the log
# ====================


def trace_selector(func: Any) -> Any:
    func = click.option("--latest", is_flag=True, help="The most recent trace")(func)
    func = click.argument("trace_id", required=False)(func)
    return func


def _open_log(database: pathlib.Path | None, *, need_traces: bool = True) -> Any:
    from .store import StoreError, logs_db_path, open_for_reading

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

    from . import encodings
    from .session import load_run
    from .store import StoreError

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
    return [(r.trace, r.alignment, r.stats) for r in result.responses]


@streamscope.command(name="logs")
@click.option(
    "-n",
    "--count",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Number of traces to show (0 for all)",
)
@click.option("model_id", "-m", "--model", help="Only traces of this model")
@click.option("json_", "--json", is_flag=True, help="Output as JSON")
@database_option
def logs_command(
    count: int, model_id: str | None, json_: bool, database: pathlib.Path | None
) -> None:
    """List logged traces, newest first, one line each."""
    from .store import decode_json_columns, recent_traces

    db = _open_log(database, need_traces=False)
    if model_id:
        from contextlib import suppress

        import llm

        with suppress(llm.UnknownModelError):
            model_id = llm.get_model(model_id).model_id  # resolve aliases, as llm logs does
    rows = recent_traces(db, count or None, model_id)
    if json_:
        decoded = []
        for row in rows:
            row, problems = decode_json_columns(row)
            for problem in problems:
                echo_line(f"Warning: {problem}")
            decoded.append(row)
        click.echo(json_text(decoded, indent=2))
        return
    for row in rows:
        ttft = "-" if row["ttft_ms"] is None else f"{row['ttft_ms']:.0f} ms"
        rate = "-" if row["tokens_per_s"] is None else f"{row['tokens_per_s']:.1f}"
        tokens = "-" if row["tokens"] is None else row["tokens"]  # unknown until the run ends
        prompt = visible(" ".join((row["prompt"] or "").split()))
        if len(prompt) > 40:
            prompt = prompt[:39] + "…"
        # A response of a tool chain says which, and of which run (show takes the run id).
        run = ""
        if (row.get("run_size") or 1) > 1:
            run = f"response {row['run_index'] + 1}/{row['run_size']} of run {row['run_id']}  "
        echo_line(
            f"{row['id']}  {row['started_utc'][:19].replace('T', ' ')}  {row['model']}  "
            f"{run}{row['status']}  TTFT {ttft}  {row['chunks']} chunks  "
            f"{tokens} tokens  {rate} tok/s  {prompt!r}",
            err=False,
        )


@streamscope.command(name="show")
@trace_selector
@view_options
@click.option("--wire", is_flag=True, help="Also show what the wire showed (runs with --wire)")
@database_option
def show_command(
    trace_id: str | None,
    latest: bool,
    views: Views,
    wire: bool,
    database: pathlib.Path | None,
) -> None:
    """Show a logged run or trace: the same views (or --json) as a live run.

    TRACE_ID is a trace id, llm's id for the same response, or a run id (every
    response of a tool chain); --latest shows the latest run.
    """
    result = _load_run(database, trace_id, latest, views.gap_ms)
    present_run(result.run_id, _analysed(result), views, wire=wire)


@streamscope.command(name="whatif")
@trace_selector
@click.option(
    "file",
    "--file",
    metavar="FILE|-",
    help="A captured stream, as `inspect` reads it, instead of a logged trace",
)
@click.option(
    "policy_specs",
    "--policy",
    multiple=True,
    metavar="POLICY",
    help="token, tokens:N, ms:T, word or sentence; repeatable  "
    "[default: token, tokens:2/4/8, ms:20/50/100, word, sentence]",
)
@click.option(
    "stream_format",
    "--format",
    type=click.Choice(FORMATS),
    help="The provider format: of the --file stream (default: detected), and whose "
    "framing to count when the trace has no wire record (default: by the model)",
)
@click.option("json_", "--json", is_flag=True, help="Output one JSON document instead of tables")
@html_option("Also write the tables and a chart per figure into this HTML file")
@overwrite_option
@database_option
def whatif_command(
    trace_id: str | None,
    latest: bool,
    file: str | None,
    policy_specs: tuple[str, ...],
    stream_format: str | None,
    json_: bool,
    html_path: pathlib.Path | None,
    overwrite: bool,
    database: pathlib.Path | None,
) -> None:
    """Re-chunk a logged (or captured) answer under other streaming policies, and compare.

    Each token is available when the chunk that completed it arrived; a policy
    sends what has arrived when its rule fires. Per policy: the events, the bytes
    on the wire (with the framing measured on the trace's wire when it was
    recorded, else the provider's), TTFT, the p99 gap between events, and how long
    the reader waits for text that had already arrived (per byte). The trace as
    sent is the first row.

    \b
        llm streamscope whatif --latest
        llm streamscope whatif 01k... --policy tokens:16 --policy ms:250 --json
        llm streamscope whatif --file capture.sse   # with its capture.sse.times
    """
    from .whatif import AS_SENT, DEFAULT_POLICIES, WhatIfError, parse_policy, whatif_responses

    try:
        chosen = [AS_SENT, *map(parse_policy, policy_specs)] if policy_specs else DEFAULT_POLICIES
        policies = list(dict.fromkeys(chosen))  # as sent is the first row, once
    except WhatIfError as ex:
        raise click.BadParameter(str(ex), param_hint="'--policy'") from None
    problems: tuple[str, ...] = ()
    if file is not None:
        if trace_id or latest:
            raise click.ClickException("Give a trace id, --latest or --file, not two of them")
        from .inspection import InspectSettings

        result = _inspect(_read_source(file), InspectSettings(format=stream_format)).result
        for warning in result.warnings:
            echo_line(f"Warning: {warning}")
        problems = tuple(f"{file}: {problem}" for problem in result.problems)
    else:
        result = _load_run(database, trace_id, latest)
    responses = [(r.trace, r.alignment) for r in result.responses if r.alignment is not None]
    results, skipped = whatif_responses(responses, policies, stream_format)
    if not results:
        raise click.ClickException("; ".join([*skipped, *problems]))
    run_id = result.run_id or results[0].trace_id
    if json_:
        document = {"run_id": run_id, "responses": [r.to_dict() for r in results]}
        click.echo(json_text(document, indent=2))
    else:
        from rich.text import Text

        from .render import whatif_notes, whatif_table

        console = make_console()
        for i, outcome in enumerate(results):
            title = f"whatif · trace {outcome.trace_id}"
            if len(results) > 1:
                title = f"response {i + 1} of {len(results)} · " + title
            console.rule(Text(terminal_line(title)), style="dim")
            console.print(whatif_table(outcome))
            for note in whatif_notes(outcome):
                console.print(terminal_line(note), style="dim", markup=False)
    for skip in skipped:
        echo_line(f"Note: skipped {skip}")
    if html_path is not None:
        from .report import whatif_html

        write_report(html_path, whatif_html(run_id, results), overwrite)
    if problems:  # a captured stream that stopped decoding part way, as inspect says
        echo_line("Error: " + "; ".join(problems))
        sys.exit(1)


@streamscope.command(name="replay")
@trace_selector
@click.option(
    "--speed",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Time scale: 2 plays twice as fast, 0 at once",
)
@click.option(
    "--view",
    type=click.Choice(VIEW_CHOICES),
    default="both",
    show_default=True,
    help="Show token boundaries, chunk boundaries or both",
)
@timeline_option
@click.option("--no-live", is_flag=True, help="Plain text instead of the live view")
@database_option
def replay_command(
    trace_id: str | None,
    latest: bool,
    speed: float,
    view: str,
    timeline: str | None,
    no_live: bool,
    database: pathlib.Path | None,
) -> None:
    """Replay a logged run or trace live, at the timing it arrived with, then its views.

    In a terminal it replays in the live view, as a run shows it."""
    from .replaying import replay

    result = _load_run(database, trace_id, latest)
    replay(result.responses, speed=speed, live_view=not no_live and _can_draw(sys.stdout))
    present_run(result.run_id, _analysed(result), Views(view=view, timeline=timeline))


@streamscope.command(name="export")
@trace_selector
@click.option(
    "export_format",
    "-f",
    "--format",
    type=click.Choice(("json", "jsonl", "csv")),
    default="json",
    show_default=True,
    help="json: the --json document; jsonl: one fragment per line; csv: fragment table"
    " (both with each fragment's trace_id)",
)
@click.option(
    "--wire",
    is_flag=True,
    help="jsonl and csv: one row per event on the wire instead of per fragment",
)
@database_option
def export_command(
    trace_id: str | None,
    latest: bool,
    export_format: str,
    wire: bool,
    database: pathlib.Path | None,
) -> None:
    """Export a logged run or trace to standard output.

    The json document always holds the wire (for runs with --wire); with --wire,
    jsonl and csv give the wire's events, each with its trace_id.
    """
    from .render import EXPORT_COLUMNS, EXPORT_EVENT_COLUMNS, export_event_rows, export_rows

    result = _load_run(database, trace_id, latest)
    if export_format == "json":
        present_run(result.run_id, _analysed(result), Views(json_=True))
        return
    rows = export_event_rows(_analysed(result)) if wire else export_rows(_analysed(result))
    if export_format == "jsonl":
        for row in rows:
            click.echo(json_text(row))
    else:
        import csv

        writer = csv.DictWriter(
            sys.stdout, fieldnames=EXPORT_EVENT_COLUMNS if wire else EXPORT_COLUMNS
        )
        writer.writeheader()
        writer.writerows(rows_for(sys.stdout, rows))


# ====================
# Models side by side
# ====================


class _CompareCommand(click.Command):
    """``compare``: an ``-o`` belongs to the ``-m`` before it, so the order of the two
    flags matters; click's own parser says it (``flag_order``)."""

    ORDERED = ("model_ids", "options")

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from contextlib import suppress

        order: list[str] = []
        with suppress(click.UsageError):  # click says what is wrong, below
            _, _, params = self.make_parser(ctx).parse_args(args=list(args))
            order = [p.name for p in params if p.name in self.ORDERED]
        rest = super().parse_args(ctx, args)
        ctx.params["flag_order"] = tuple(order)
        return rest


@streamscope.command(name="compare", cls=_CompareCommand)
@click.argument("prompt", required=False)
@click.option(
    "model_ids",
    "-m",
    "--model",
    multiple=True,
    help="A model to compare; repeat for each (the -o options after it are its own)",
)
@click.option(
    "options",
    "-o",
    "--option",
    type=(str, str),
    multiple=True,
    help="key/value option: after an -m, for that model only; before the first -m, for every model",
)
@click.option("-s", "--system", help="System prompt for every model")
@click.option(
    "runs",
    "-n",
    "--runs",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Runs of each model",
)
@click.option(
    "--parallel",
    is_flag=True,
    help="Run the models at the same time, each in its own process: faster, but they "
    "disturb each other's timings",
)
@click.option(
    "--from-logs",
    is_flag=True,
    help="Compare the models' logged traces (with the options given) instead of running them",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="--from-logs: the latest this many traces of each model (default: all)",
)
@click.option(
    "encoding_name",
    "--encoding",
    help="tiktoken encoding to align with (default: each model's, else o200k_base)",
)
@gap_ms_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="End a run as an error if nothing arrives for this many seconds",
)
@click.option("json_", "--json", is_flag=True, help="Output one JSON document instead of the table")
@html_option("Also write a self-contained HTML report (the runs overlaid in a chart) to this file")
@overwrite_option
@database_option
def compare_command(
    prompt: str | None,
    model_ids: tuple[str, ...],
    options: tuple[tuple[str, str], ...],
    flag_order: tuple[str, ...],
    system: str | None,
    runs: int,
    parallel: bool,
    from_logs: bool,
    limit: int | None,
    encoding_name: str | None,
    gap_ms: float | None,
    timeout: float | None,
    json_: bool,
    html_path: pathlib.Path | None,
    overwrite: bool,
    database: pathlib.Path | None,
) -> None:
    """Run models side by side on one prompt, and compare how their answers arrive.

    Each model runs N times (-n), in rounds, one run at a time; every run is
    logged like `llm streamscope run`'s. Then one table, a column per model:
    TTFT p50/p90 and ITL p50/p99 across runs (each run's own TTFT and ITL, as
    AIPerf aggregates per-request metrics), tokens/s, tokens per chunk, chunks of
    one whole token, stalls, and usage against the tiktoken count. Progress goes
    to standard error.

    \b
        llm streamscope compare -m gpt-4o-mini -m claude-3.5-haiku -n 5 "Explain SSE"
        llm streamscope compare -o speed 0 -m streamscope-sim -o profile gpt-4o-mini \\
            -m streamscope-sim -o profile claude-haiku "hi"
        llm streamscope compare --from-logs -m gpt-4o-mini -m claude-3.5-haiku

    An -o after an -m is that model's own, so one model can be compared with
    itself under other options; an -o before the first -m goes to every model.
    --from-logs reads the latest logged traces of each model that have the
    options given, and makes no request.

    --parallel runs the models at the same time: they share the machine's CPU
    and network, so their timings disturb each other. Use it for a quick look,
    not for timings to trust.
    """
    from . import comparison
    from .render import compare_table
    from .session import RunSettings

    try:
        shared, specs = comparison.model_specs(model_ids, options, flag_order)
    except comparison.CompareError as ex:
        raise click.ClickException(str(ex)) from None
    if not specs:
        raise click.ClickException("Give at least one model to compare with -m")
    _check_encoding(encoding_name)
    note = None
    if from_logs:
        ctx = click.get_current_context()
        given = [
            flag
            for flag, name in (("-n", "runs"), ("--parallel", "parallel"), ("--timeout", "timeout"))
            if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
        ]
        if prompt is not None or given:
            what = " or ".join(given + (["prompt"] if prompt is not None else []))
            raise click.ClickException(f"--from-logs makes no request: it takes no {what}")
        db = _open_log(database)
        try:
            results, warnings = comparison.from_logs(db, specs, shared, limit, gap_ms)
        except comparison.CompareError as ex:
            raise click.ClickException(str(ex)) from None
        for warning in warnings:
            echo_line(f"Warning: {warning}")
        missing = [r.spec.label for r in results if not r.responses]
        if missing:
            raise click.ClickException(f"No logged traces of {', '.join(missing)}")
    else:
        import llm.cli

        if limit is not None:
            raise click.ClickException("--limit applies to --from-logs")
        if prompt is None and not sys.stdin.isatty():
            prompt = sys.stdin.read()
        if not prompt:
            raise click.ClickException("Give a prompt to compare the models on")
        logging = llm.cli.logs_on()
        settings = comparison.CompareSettings(
            prompt=prompt,
            system=system,
            runs=runs,
            shared_options=shared,
            run=RunSettings(
                encoding_name=encoding_name,
                gap_ms=gap_ms,
                timeout_s=timeout,
                database=_prepared_log(database) if logging else None,
                live=False,
            ),
            parallel=parallel,
        )
        if parallel:
            note = comparison.PARALLEL_NOTE
            echo_line(f"Note: {note}")
        ctx = click.get_current_context()
        try:
            results = comparison.run_models(
                specs,
                settings,
                lambda params: ctx.invoke(llm.cli.prompt, **params),
                progress=echo_line,
            )
        except comparison.CompareError as ex:
            raise click.ClickException(str(ex)) from None
    summaries = [comparison.summarize(r) for r in results]
    if json_:
        document = comparison.comparison_document(
            summaries,
            source="logs" if from_logs else "runs",
            prompt=prompt,
            system=system,
            parallel=parallel,
        )
        click.echo(json_text(document, indent=2))
    else:
        make_console().print(compare_table(summaries))
    if html_path is not None:
        from .report import compare_html

        report = compare_html(results, summaries, prompt=prompt, note=note)
        write_report(html_path, report, overwrite)
    failures = [line for r in results for line in r.failures]
    if failures:
        echo_line("Error: " + "; ".join(failures))
        sys.exit(1)
