"""``llm streamscope inspect FILE|-`` (and ``-- CMD``): a captured stream analysed as a run is."""

from __future__ import annotations

import pathlib
import sys
from typing import TYPE_CHECKING

import click

from ..analysis.numbers import COUNT_MAX, Bounded
from ..capture.signals import describe as describe_signal
from ..capture.signals import exit_code as exit_code_of_signal
from ..views.sanitize import echo_line
from .types import FormatChoice

if TYPE_CHECKING:
    from ..inspection import Inspection, InspectSettings
    from ..wire.command import CommandRun
    from ..wire.sources import Source
from .common import (
    Views,
    _analysed,
    _check_encoding,
    _OneLineError,
    _prepared_log,
    database_option,
    make_console,
    present_run,
    streamscope,
    view_options,
)


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
    type=FormatChoice(),
    help="The provider format of the stream (default: detected from it)",
)
@click.option(
    "encoding_name",
    "--encoding",
    help="tiktoken encoding to align with (default: the model the stream names, else o200k_base)",
)
@click.option(
    "--interaction",
    type=Bounded(1, COUNT_MAX, integer=True),
    help="Which interaction of a cassette, from 1 (default: the first that streamed)",
)
@click.option(
    "--max-event-mb",
    type=Bounded(1, 4096, integer=True),
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
    from ..capture.signals import RunSignals, Terminated, interruption_code

    command = ctx.meta.get("streamscope.command")
    if (file is None) == (command is None):
        raise click.UsageError("Give FILE, - (standard input) or -- CMD [ARGS]..., one of them")
    # Ctrl-C or SIGTERM while the stream is read end the reading, as they end a
    # run's stream; then what came is analysed and logged before any signal counts.
    with RunSignals(terminate=Terminated) as signals:
        # The stream first: every read is timed as it arrives, so nothing else runs
        # before it (bytes that arrive while llm starts can only be timed when read).
        ran = None
        if command is not None:
            ran = _run_command(command, interaction, max_event_mb * 2**20, stream_format)
            source = ran.source
        else:
            source = _read_source(file or "-", interaction, max_event_mb * 2**20, stream_format)
        signals.hold()
        if source.interrupted is not None and not source.reads:
            sys.exit(interruption_code(source.interrupted))
        from ..inspection import InspectSettings
        from ..views.render import inspect_line

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
    problems, stopped_by = list(result.problems), result.signal
    if signals.received is not None:  # while it was analysed and logged
        stopped_by = signals.received
        problems.insert(0, describe_signal(stopped_by))
    if problems:
        echo_line(f"Error: {source.name}: " + "; ".join(problems))
        sys.exit(1 if stopped_by is None else exit_code_of_signal(stopped_by))
    if ran is not None and ran.ending():
        sys.exit(1)


def _run_command(
    command: list[str], interaction: int | None, max_event_bytes: int, stream_format: str | None
) -> CommandRun:
    """``inspect -- CMD``: the command run and its output read, or a one-line error."""
    from ..wire.command import run_command
    from ..wire.sources import SourceError

    try:
        ran = run_command(
            command,
            interaction=interaction,
            max_event_bytes=max_event_bytes,
            format=stream_format,
        )
    except SourceError as ex:
        raise click.ClickException(str(ex)) from None
    if not ran.source.reads and ran.status and not ran.interrupted:
        _report_command(ran)  # it failed before writing anything: say how, and stop
        sys.exit(1)
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
    from ..wire.intake import MAX_EVENT_BYTES
    from ..wire.sources import SourceError, read_file, read_stdin

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
    from ..analysis import encodings
    from ..capture.signals import interruption_code
    from ..inspection import inspect_source
    from ..wire.events import WireError

    code = 1 if source.interrupted is None else interruption_code(source.interrupted)
    try:
        return inspect_source(source, settings)
    except WireError as ex:
        raise _OneLineError(f"{source.name}: {ex}", code) from None
    except encodings.EncodingError as ex:
        raise _OneLineError(str(ex), code) from None
