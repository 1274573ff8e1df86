"""``llm streamscope logs`` and ``show``: the traces in logs.db, listed and shown again."""

from __future__ import annotations

import pathlib

import click

from ..analysis.numbers import COUNT_MAX, Bounded
from ..views.sanitize import echo_line, json_text, visible
from .common import (
    Views,
    _analysed,
    _load_run,
    _open_log,
    database_option,
    present_run,
    streamscope,
    trace_selector,
    view_options,
)


@streamscope.command(name="logs")
@click.option(
    "-n",
    "--count",
    type=Bounded(0, COUNT_MAX, integer=True),
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
    from ..store.reading import decode_json_columns, recent_traces
    from ..store.writer import StoreError

    db = _open_log(database, need_traces=False)
    if model_id:
        from contextlib import suppress

        import llm

        with suppress(llm.UnknownModelError):
            model_id = llm.get_model(model_id).model_id  # resolve aliases, as llm logs does
    try:
        rows, damaged = recent_traces(db, count or None, model_id)
    except StoreError as ex:
        raise click.ClickException(str(ex)) from None
    for warning in damaged:
        echo_line(f"Warning: {warning}")
    if json_:
        decoded = [decode_json_columns(row) for row in rows]
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
