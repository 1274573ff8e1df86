"""``llm streamscope run``: llm's prompt command, every response it streams captured."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import click

from ..analysis.numbers import TIMEOUT_S
from ..capture.signals import describe as describe_signal
from ..capture.signals import exit_code as exit_code_of_signal
from ..capture.signals import signal_of
from ..views.sanitize import echo_line
from .common import (
    Views,
    _analysed,
    _can_draw,
    _check_encoding,
    _check_otel,
    _exit_code,
    _exited_cleanly,
    _expected_model,
    _log_path,
    _one_line_error,
    _OneLineError,
    _prepared_log,
    _send_otel,
    otel_option,
    present_run,
    streamscope,
    view_options,
)


class PromptCommand(click.Command):
    """A command that takes every option of ``llm prompt``, with llm's own meaning, and its own.

    llm's options are read from llm's prompt command the first time they are
    needed (parsing, help): this module is imported while llm.cli is still loading,
    and ``llm --help`` should not pay for it. llm's ``--json`` (llm's log record)
    gives way to streamscope's own. A usage error shows click's ``Usage:`` and
    ``Try ... --help`` lines, as ``llm prompt`` shows them.
    """

    REPLACED = ("json_output",)

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not getattr(self, "_with_llm_options", False):
            from llm.cli import prompt

            self.params[:0] = [p for p in prompt.params if p.name not in self.REPLACED]
            self._with_llm_options = True
        return super().get_params(ctx)


@streamscope.command(name="run", cls=PromptCommand)
@click.option(
    "encoding_name",
    "--encoding",
    help="tiktoken encoding to align with (default: the model's, else o200k_base)",
)
@view_options
@click.option(
    "--timeout",
    type=TIMEOUT_S,
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
@otel_option
@click.pass_context
def run(
    ctx: click.Context,
    encoding_name: str | None,
    views: Views,
    timeout: float | None,
    wire: bool,
    no_live: bool,
    otel: bool,
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
    import llm.cli

    from ..analysis.trace import stream_ending
    from ..exiting import end_process
    from ..session import RunResult, RunSettings, llm_reads_log
    from ..session import run as run_session

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
    _check_otel(otel)
    # -x and --xl make llm wait for the whole answer: streamscope streams it, and
    # shows the code block at the end instead of the live text.
    extract = "last" if options["extract_last"] else "first" if options["extract"] else None
    if options["log"] and options["no_log"]:
        raise click.ClickException("--log and --no-log are mutually exclusive")  # llm's words
    logging = (llm.cli.logs_on() or options["log"]) and not options["no_log"]
    log_path = _log_path(options["database"])
    if logging:
        # A log that cannot be used fails its writer too: the run goes on, shows its
        # views and ends with "trace not saved" and why.
        with contextlib.suppress(click.ClickException):
            _prepared_log(log_path)
    # llm's prompt command writes nothing to its database (llm's record goes in with
    # the trace): unless llm reads from it, it gets one in memory (see llm_reads_log).
    options["database"] = str(_prepared_log(log_path)) if llm_reads_log(options) else ":memory:"
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
        from ..views.live import LlmOutputToStderr

        redirect = (
            contextlib.redirect_stdout(LlmOutputToStderr())
            if views.json_
            else contextlib.nullcontext()
        )
        with redirect, _unmigrated(options["database"] == ":memory:"):
            ctx.invoke(llm.cli.prompt, **options)

    found: list[Any] = []  # the model the run expects, once the live view says it is starting

    def streaming_model() -> Any:
        expected_model = _expected_model(options)
        if expected_model is not None and not expected_model.can_stream:
            raise click.ClickException(
                f"Model {expected_model.model_id} cannot stream, so there is nothing to time: "
                "streamscope needs a streaming model"
            )
        found.append(expected_model)
        return expected_model

    shown = []

    def show(result: RunResult) -> None:
        analysed = _analysed(result)
        if analysed:
            present_run(result.run_id, analysed, views, wire=wire)
        shown.append(result)

    result = run_session(
        invoke,
        settings,
        notify=lambda message: echo_line(f"Note: {message}"),
        find_model=streaming_model,
        on_busy=show,  # the views while a busy logs.db is waited for
    )
    failure = result.failure
    if not result.responses:
        stopped_by = signal_of(failure)
        if stopped_by is not None:
            sys.exit(exit_code_of_signal(stopped_by))
        if isinstance(failure, click.UsageError):
            raise failure  # click shows its Usage: and Try lines, as for llm prompt
        if isinstance(failure, click.ClickException):
            # llm's own words, on one line (llm spreads option errors over several)
            raise _OneLineError(_one_line_error(failure), failure.exit_code) from None
        if failure is not None:
            raise failure
        raise click.ClickException(
            "No response was streamed, so there is nothing to time (does the model stream?)"
        )
    if not shown:
        show(result)
    if otel:
        analysed = _analysed(result)
        if analysed:
            _send_otel([analysed], log_path if logging else None, found)
    for warning in result.warnings:
        echo_line(f"Warning: {warning}")
    problems = list(result.problems)
    last = result.responses[-1].trace
    code = _exit_code(last)
    # A signal once the last stream was over (in llm's code, or while saving) is said
    # as such; one during it, by the stream's status.
    stopped_by = result.signal if result.signal is not None else signal_of(failure)
    if last.status != "complete":
        problems.insert(0, stream_ending(last))
    elif stopped_by is not None:
        problems.insert(0, f"{describe_signal(stopped_by)} once the stream was over")
    elif failure is not None and not _exited_cleanly(failure):
        problems.insert(0, _one_line_error(failure))
    if stopped_by is not None:
        code = exit_code_of_signal(stopped_by)
    if not problems:
        code = 0
    else:
        echo_line("Error: " + "; ".join(problems))
    end_process(code)  # the command's process ends here, without Python's teardown
    if code:
        sys.exit(code)


@contextlib.contextmanager
def _unmigrated(memory: bool) -> Iterator[None]:
    """While llm's prompt command runs on the in-memory database it is given when it
    neither reads nor writes its log, it does not build llm's schema in it: that is
    every llm migration on each run (about 40 ms), all before the request leaves."""
    import llm.cli

    if not memory:
        yield
        return
    migrate = llm.cli.migrate
    llm.cli.migrate = lambda db: None
    try:
        yield
    finally:
        llm.cli.migrate = migrate
