"""The ``llm streamscope`` command group.

The only module that prints, owns a rich ``Console`` and raises
``click.ClickException``. Heavy imports (rich, tiktoken, the simulator) happen
inside the commands so that ``llm --help`` does not pay for them.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import click
from click_default_group import DefaultGroup

if TYPE_CHECKING:
    from rich.console import Console

    from .stats import Stats
    from .trace import Alignment, Trace

VIEW_CHOICES = ("both", "tokens", "chunks")


@click.group(cls=DefaultGroup, default="run", default_if_no_args=False)
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


def view_options(func: Any) -> Any:
    func = click.option(
        "json_", "--json", is_flag=True, help="Output one JSON document instead of views"
    )(func)
    func = click.option(
        "--gap-ms",
        type=click.FloatRange(min=0),
        default=None,
        help="Gaps between chunks longer than this count as stalls  [default: 50]",
    )(func)
    func = click.option(
        "--view",
        type=click.Choice(VIEW_CHOICES),
        default="both",
        show_default=True,
        help="Show token boundaries, chunk boundaries or both",
    )(func)
    return func


@streamscope.command(name="run")
@click.argument("prompt", required=False)
@click.option("model_id", "-m", "--model", help="Model to use", envvar="LLM_MODEL")
@click.option("-s", "--system", help="System prompt to use")
@click.option(
    "options",
    "-o",
    "--option",
    type=(str, str),
    multiple=True,
    help="key/value options for the model",
)
@click.option("--key", help="API key to use")
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
@click.option("-n", "--no-log", is_flag=True, help="Don't log this trace (or the response)")
@click.option("--log", is_flag=True, help="Log even if logging is turned off (llm logs off)")
@database_option
def run(
    prompt: str | None,
    model_id: str | None,
    system: str | None,
    options: tuple[tuple[str, str], ...],
    key: str | None,
    encoding_name: str | None,
    view: str,
    gap_ms: float | None,
    json_: bool,
    timeout: float | None,
    no_log: bool,
    log: bool,
    database: pathlib.Path | None,
) -> None:
    """Stream PROMPT and show how it arrived: live text, alignment view, rate stats.

    The prompt comes from the argument and/or standard input, as with `llm prompt`.
    The aligned trace is logged to llm's logs.db beside llm's own record of the
    response, unless logging is off; see `llm streamscope logs`.
    """
    import dataclasses

    import llm
    from llm.cli import logs_on

    from . import encodings
    from .align import align
    from .capture import Arrivals, capture, new_trace
    from .render import LIVE_TABLE
    from .stats import compute_stats
    from .store import StoreError, TraceWriter, logs_db_path
    from .tokenizer import start_tokenizer
    from .trace import STATUS_COMPLETE

    model = _resolve_model(llm, model_id)
    prompt_kwargs = _validated_options(llm, model, options)
    if isinstance(model, llm.KeyModel):
        if model.needs_key:
            try:
                model.get_key(key)
            except llm.NeedsKeyException as ex:
                raise click.ClickException(str(ex)) from None
        prompt_kwargs["key"] = key

    exact = bool(encoding_name)
    if not encoding_name:
        encoding_name, exact = encodings.encoding_for_model(model)
    prepare = getattr(model, "prepare", None)
    if callable(prepare):
        prepare()  # e.g. the simulator starts its server before the clock starts
    try:
        # It loads in its own process while this one gets the request ready, and
        # must be ready before the request leaves: loading anywhere on the machine
        # while the request is in flight shows in its timings. An encoding that
        # cannot load fails here, before the request.
        tokenizer = start_tokenizer(encoding_name)
        try:
            prompt = _read_prompt(prompt)
            tokenizer.wait_ready()
        except BaseException:
            tokenizer.close()
            raise
    except encodings.EncodingError as ex:
        raise click.ClickException(str(ex)) from None

    header = new_trace(
        model_id=model.model_id,
        encoding_name=encoding_name,
        encoding_exact=exact,
        prompt=prompt,
        system=system,
        options={k: v for k, v in prompt_kwargs.items() if k != "key"},
    )
    arrivals = Arrivals()
    writer = None
    if (logs_on() or log) and not no_log:
        writer = TraceWriter(database or logs_db_path(), arrivals)
        writer.open(header)
        if writer.busy:
            click.echo(
                f"Note: {writer.path} is busy (another process is writing to it); streaming "
                "anyway, the trace is written when it frees",
                err=True,
            )
    live = None if json_ else LiveText(LIVE_TABLE, flowing=arrivals.flowing)

    llm_response = model.prompt(prompt, system=system, stream=True, **prompt_kwargs)
    trace = capture(
        llm_response,
        header,
        arrivals=arrivals,
        on_event=live.write if live else None,
        timeout_s=timeout,
    )
    if live:
        live.close()

    problems = []
    alignment = stats = None
    try:
        alignment = align(trace, tokenizer)
    except encodings.EncodingError as ex:
        problems.append(str(ex))
    else:
        stats = compute_stats(trace, alignment, gap_ms=_gap_ms(gap_ms))
    finally:
        tokenizer.close()
    if writer is not None:
        if trace.status == STATUS_COMPLETE and writer.error is None:
            trace = dataclasses.replace(trace, turn_id=_log_llm_record(writer.path, llm_response))
        try:
            writer.finish(trace, alignment, stats)
        except StoreError as ex:
            problems.append(f"trace not saved: {ex}")
        if writer.warning:
            click.echo(f"Warning: {writer.warning}", err=True)
    if alignment is not None and stats is not None:
        present(trace, alignment, stats, view=view, json_=json_)

    if trace.status != STATUS_COMPLETE:
        received = len(trace.fragments)
        where = f" after {received} fragment{'s' if received != 1 else ''}" if received else ""
        problems.insert(0, f"stream {trace.status}{where}: {trace.error}")
    if problems:
        click.echo("Error: " + "; ".join(problems), err=True)
        sys.exit(_exit_code(trace))


def _log_llm_record(path: pathlib.Path, response: Any) -> str | None:
    """llm's own record of the response, as llm writes it; None (and a warning) if
    llm fails (it cannot hash text holding a lone surrogate, for one).

    Interim: once the run goes through llm's own prompt command, llm logs it.
    """
    from .store import connect, write_transaction
    from .trace import one_line

    db = None
    try:
        db = connect(path)
        with write_transaction(db):
            response.log_to_db(db)
    except Exception as ex:
        click.echo(f"Warning: llm could not log the response itself: {one_line(ex)}", err=True)
        return None
    finally:
        if db is not None:
            db.close()
    return str(response.id)


def _exit_code(trace: Trace) -> int:
    """A failed run's exit code: 130 after Ctrl-C, 143 after SIGTERM (128 + the signal,
    as a shell reports a process the signal killed), else 1."""
    from .capture import TERMINATED
    from .trace import STATUS_INTERRUPTED

    if trace.status != STATUS_INTERRUPTED:
        return 1
    return 143 if trace.error == TERMINATED else 130


def _gap_ms(gap_ms: float | None, stored: float | None = None) -> float:
    from .stats import DEFAULT_GAP_MS

    if gap_ms is not None:
        return gap_ms
    return stored if stored is not None else DEFAULT_GAP_MS


def present(trace: Trace, alignment: Alignment, stats: Stats, *, view: str, json_: bool) -> None:
    """Print a trace as `run` does at the end: the JSON document, or the two views.

    A trace with no fragments (an HTTP error, Ctrl-C before the first token, an
    empty answer) still gets its stats table: its status, its error, and "-" for
    what cannot be measured.
    """
    from .render import AlignmentPanel, stats_table, trace_document

    if json_:
        document = trace_document(trace, alignment, stats)
        click.echo(json.dumps(document, ensure_ascii=False, indent=2, default=str))
        return
    console = make_console()
    if not trace.encoding_exact:
        console.print(
            f"Encoding {trace.encoding_name} is approximate: tiktoken does not know "
            f"{trace.model_id}'s tokenizer (set one with --encoding).",
            style="yellow",
            markup=False,
        )
    console.rule("alignment", style="dim")
    if not alignment.streams:
        console.print("no fragments arrived", style="dim")
    # Line by line: one print of a long stream would make rich hold all of it at once.
    for line in AlignmentPanel(alignment, view, console.color_system is not None).lines():
        console.print(line)
    console.rule("stats", style="dim")
    console.print(stats_table(trace, stats))


class LiveText:
    """Writes text fragments to stdout as they arrive, as ``llm`` does.

    Reasoning goes to stderr as ``llm prompt`` sends it: dimmed only when stderr is
    a terminal (llm's click.echo strips styles otherwise) and, as for the views,
    not with ``NO_COLOR`` set. Control characters are made visible before anything
    reaches the terminal.

    Output is gathered here and written at most 60 times a second rather than once
    per fragment (no screen shows more frames than that), by the capture thread
    itself. Each write is a system call that wakes the terminal or the reading
    process, and Python's own buffering cannot be relied on (PYTHONUNBUFFERED is
    common): one write per fragment cut llm's throughput by 20% when piped. A
    helper thread only catches text left over when the stream pauses; it wakes
    rarely, because every wake-up of another thread costs the capture thread a GIL
    hand-off (a 60 Hz helper cost 10%).
    """

    FLUSH_INTERVAL_NS = 1_000_000_000 // 60
    STALL_FLUSH_S = 0.1

    def __init__(
        self,
        table: dict[int, str],
        out: Any = None,
        err: Any = None,
        flowing: threading.Event | None = None,
    ):
        self.table = table
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.dim_reasoning = _is_terminal(self.err) and not os.environ.get("NO_COLOR")
        self.last = "\n"
        self._stream = self.out
        self.closed_by_reader = False
        self._pending: list[str] = []
        self._flushed_ns = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flowing = flowing
        self._flusher = threading.Thread(
            target=self._flush_loop, name="streamscope-live", daemon=True
        )
        self._flusher.start()

    def write(self, event: Any, t_ns: int = 0) -> None:
        """Show one llm StreamEvent (a capture callback: ``t_ns`` is unused)."""
        text = event.chunk
        if not text:
            return
        if event.type == "text":
            piece = text.translate(self.table)
            self.last = text[-1]
            if self._stream is not self.out:  # after reasoning: a fresh line, in order
                self._pending.append("\n")
                self._switch(self.out)
        elif event.type == "reasoning":
            piece = text.translate(self.table)
            if self.dim_reasoning:
                piece = click.style(piece, dim=True)
            if self._stream is not self.err:
                self._switch(self.err)
        else:
            return
        self._pending.append(piece)
        now = time.perf_counter_ns()
        if now - self._flushed_ns >= self.FLUSH_INTERVAL_NS:
            self._flush(now)

    def _switch(self, stream: Any) -> None:
        self._flush(time.perf_counter_ns())
        self._stream = stream

    def _flush(self, now: int) -> None:
        with self._lock:  # the helper thread flushes too; keep the pieces in order
            pending, self._pending = self._pending, []
            self._flushed_ns = now
            if pending and not self.closed_by_reader:
                try:
                    self._stream.write("".join(pending))
                    self._stream.flush()
                except OSError:
                    # e.g. piped into `head`, which has exited: the live text has no
                    # reader any more, but the stream and its trace go on.
                    self.closed_by_reader = True

    def _flush_loop(self) -> None:
        if self._flowing is not None:
            self._flowing.wait()  # nothing to show, and nothing to run, before the first event
        while not self._stop.wait(self.STALL_FLUSH_S):
            if self._pending:
                self._flush(time.perf_counter_ns())

    def close(self) -> None:
        self._stop.set()
        self._flusher.join()
        if self._stream is not self.out or self.last != "\n":
            self._pending.append("\n")
        self._flush(time.perf_counter_ns())


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed
        return False


def make_console() -> Console:
    """A console for stdout: styled on a terminal, plain text when piped or with NO_COLOR."""
    from rich.console import Console

    # NO_COLOR means plain text here (rich alone would drop colours but keep bold).
    plain = bool(os.environ.get("NO_COLOR"))
    # highlight=False: rich must not colour numbers or URLs inside model text.
    return Console(highlight=False, soft_wrap=False, color_system=None if plain else "auto")


def _resolve_model(llm: Any, model_id: str | None) -> Any:
    try:
        model = llm.get_model(model_id or llm.get_default_model())
    except llm.UnknownModelError as ex:
        raise click.ClickException(str(ex)) from None
    if not model.can_stream:
        raise click.ClickException(
            f"Model {model.model_id} cannot stream, so there is nothing to time: "
            "streamscope needs a streaming model"
        )
    return model


def _validated_options(llm: Any, model: Any, options: tuple[tuple[str, str], ...]) -> dict:
    """Validate -o options with the model's own pydantic class, as `llm prompt` does.

    Returns the options given with -o (as validated and converted: "0" becomes 0.0
    for a float) and llm's saved defaults for the model (`llm models options`), which
    llm applies too; not the model's own defaults, which it applies by itself.
    """
    import pydantic
    from llm.cli import get_model_options, render_errors

    validated: dict[str, Any] = {}
    if options:
        try:
            parsed = model.Options(**dict(options))
        except pydantic.ValidationError as ex:
            raise click.ClickException(" ".join(render_errors(ex.errors()).split())) from None
        validated = {k: v for k, v in parsed if k in parsed.model_fields_set and v is not None}
    for k, v in get_model_options(model.model_id).items():
        validated.setdefault(k, v)
    return validated


def _read_prompt(prompt: str | None) -> str:
    """The prompt argument, with anything piped on stdin before it (as `llm prompt`)."""
    stdin = sys.stdin
    if stdin is not None and not stdin.isatty():
        piped = stdin.read()
        if piped:
            prompt = f"{piped} {prompt}" if prompt else piped
    elif prompt is None and stdin is not None:
        prompt = stdin.read()
    if not prompt or not prompt.strip():
        raise click.ClickException("No prompt: give one as an argument or on standard input")
    return prompt


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


def _load(database: pathlib.Path | None, trace_id: str | None, latest: bool) -> Any:
    """(db, trace, row) for the chosen trace, or a one-line error.

    A damaged JSON column gets a warning line and reads as empty: the trace itself
    stays readable.
    """
    import sqlite3

    from .store import StoreError, decode_json_columns, find_trace_id, load_trace

    if latest and trace_id:
        raise click.ClickException(f"Give a trace id or --latest, not both (got {trace_id})")
    db = _open_log(database)
    try:
        found = find_trace_id(db, trace_id, latest)
        trace, row = load_trace(db, found)
    except StoreError as ex:
        raise click.ClickException(str(ex)) from None
    except sqlite3.Error as ex:
        raise click.ClickException(f"Cannot read the trace: {ex}") from None
    for problem in decode_json_columns(row)[1]:
        click.echo(f"Warning: {problem}", err=True)
    return db, trace, row


def _analyse(db: Any, trace: Trace, row: dict, gap_ms: float | None) -> tuple[Alignment, Stats]:
    """Recompute alignment and stats from a stored trace, checking the stored alignment."""
    from . import encodings
    from .align import align
    from .stats import compute_stats
    from .store import alignment_matches, stored_placements
    from .tokenizer import LocalTokenizer

    try:
        alignment = align(trace, LocalTokenizer(encodings.get_encoding(trace.encoding_name)))
    except encodings.EncodingError as ex:
        raise click.ClickException(str(ex)) from None
    stored = stored_placements(db, trace.id)
    if stored is not None and not alignment_matches(stored, alignment):
        click.echo(
            f"Warning: the stored alignment differs from the one recomputed now (stored with "
            f"tiktoken {row.get('tiktoken_version')}); showing the recomputed one",
            err=True,
        )
    return alignment, compute_stats(
        trace, alignment, gap_ms=_gap_ms(gap_ms, row["stall_threshold_ms"])
    )


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
    from .render import visible
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
                click.echo(f"Warning: {problem}", err=True)
            decoded.append(row)
        click.echo(json.dumps(decoded, ensure_ascii=False, indent=2))
        return
    for row in rows:
        ttft = "-" if row["ttft_ms"] is None else f"{row['ttft_ms']:.0f} ms"
        rate = "-" if row["tokens_per_s"] is None else f"{row['tokens_per_s']:.1f}"
        tokens = "-" if row["tokens"] is None else row["tokens"]  # unknown until the run ends
        prompt = visible(" ".join((row["prompt"] or "").split()))
        if len(prompt) > 40:
            prompt = prompt[:39] + "…"
        click.echo(
            f"{row['id']}  {row['started_utc'][:19].replace('T', ' ')}  {row['model']}  "
            f"{row['status']}  TTFT {ttft}  {row['chunks']} chunks  "
            f"{tokens} tokens  {rate} tok/s  {prompt!r}"
        )


@streamscope.command(name="show")
@trace_selector
@view_options
@database_option
def show_command(
    trace_id: str | None,
    latest: bool,
    view: str,
    gap_ms: float | None,
    json_: bool,
    database: pathlib.Path | None,
) -> None:
    """Show a logged trace: the same views (or --json) as a live run.

    TRACE_ID is a trace id or llm's id for the same response.
    """
    db, trace, row = _load(database, trace_id, latest)
    alignment, stats = _analyse(db, trace, row, gap_ms)
    present(trace, alignment, stats, view=view, json_=json_)


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
@database_option
def replay_command(
    trace_id: str | None, latest: bool, speed: float, view: str, database: pathlib.Path | None
) -> None:
    """Replay a logged trace live, at the timing it arrived with, then show its views."""

    from llm.parts import StreamEvent

    from .render import LIVE_TABLE

    db, trace, row = _load(database, trace_id, latest)
    alignment, stats = _analyse(db, trace, row, None)
    live = LiveText(LIVE_TABLE)
    start = time.perf_counter_ns()
    for fragment in trace.fragments:
        if speed:
            wait = start + fragment.t_ns / speed - time.perf_counter_ns()
            if wait > 0:
                time.sleep(wait / 1e9)
        live.write(StreamEvent(type=fragment.kind, chunk=fragment.text))
    live.close()
    present(trace, alignment, stats, view=view, json_=False)


@streamscope.command(name="export")
@trace_selector
@click.option(
    "export_format",
    "-f",
    "--format",
    type=click.Choice(("json", "jsonl", "csv")),
    default="json",
    show_default=True,
    help="json: the --json document; jsonl: one fragment per line; csv: fragment table",
)
@database_option
def export_command(
    trace_id: str | None, latest: bool, export_format: str, database: pathlib.Path | None
) -> None:
    """Export a logged trace to standard output."""
    from .render import FRAGMENT_COLUMNS, fragment_rows, trace_document

    db, trace, row = _load(database, trace_id, latest)
    alignment, stats = _analyse(db, trace, row, None)
    if export_format == "json":
        document = trace_document(trace, alignment, stats)
        click.echo(json.dumps(document, ensure_ascii=False, indent=2, default=str))
    elif export_format == "jsonl":
        for fragment in fragment_rows(trace, alignment):
            click.echo(json.dumps(fragment, ensure_ascii=False))
    else:
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=FRAGMENT_COLUMNS)
        writer.writeheader()
        writer.writerows(fragment_rows(trace, alignment))
