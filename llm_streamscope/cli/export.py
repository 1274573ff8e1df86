"""``llm streamscope export``: logged traces as JSON, JSONL or OpenTelemetry."""

from __future__ import annotations

import pathlib
import sys
from typing import Any

import click

from ..views.sanitize import echo_line, json_text, rows_for
from .common import (
    Views,
    _analysed,
    _check_otel,
    _load_run,
    _log_path,
    _open_log,
    database_option,
    present_run,
    streamscope,
    trace_selector,
)


@streamscope.command(name="export")
@trace_selector
@click.option(
    "export_format",
    "-F",
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
@click.option(
    "--otel",
    is_flag=True,
    help="Send the runs to an OpenTelemetry collector (set by the OTEL_* environment "
    "variables) instead of writing them out",
)
@click.option("all_", "--all", is_flag=True, help="--otel: every logged run")
@click.option(
    "--since",
    type=click.DateTime(formats=("%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S")),
    metavar="DATE",
    help="--otel --all: only runs started at this UTC date (or time) or later",
)
@database_option
def export_command(
    trace_id: str | None,
    latest: bool,
    export_format: str,
    wire: bool,
    otel: bool,
    all_: bool,
    since: Any,
    database: pathlib.Path | None,
) -> None:
    """Export a logged run or trace to standard output, or to a collector.

    The json document always holds the wire (for runs with --wire); with --wire,
    jsonl and csv give the wire's events, each with its trace_id. --otel sends
    the run (or --latest, or --all runs) as OpenTelemetry spans, and says how
    many it sent.
    """
    from ..views.documents import (
        EXPORT_COLUMNS,
        EXPORT_EVENT_COLUMNS,
        export_event_rows,
        export_rows,
    )

    if otel:
        source = click.get_current_context().get_parameter_source("export_format")
        if wire or source is not click.core.ParameterSource.DEFAULT:
            raise click.ClickException("--otel sends the runs: it takes no --format or --wire")
        _export_otel(database, trace_id, latest, all_, since)
        return
    if all_ or since is not None:
        raise click.ClickException("--all and --since select the runs --otel sends")
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


def _export_otel(
    database: pathlib.Path | None, trace_id: str | None, latest: bool, all_: bool, since: Any
) -> None:
    """``export --otel``: the chosen logged runs, sent; how many, said."""
    from ..otlp import export_runs, stored_run_ids

    _check_otel(True)
    if sum((trace_id is not None, latest, all_)) != 1:
        raise click.ClickException("--otel sends a TRACE_ID, the --latest run or --all runs")
    if since is not None and not all_:
        raise click.ClickException("--since goes with --all")
    if all_:
        run_ids, running = stored_run_ids(_open_log(database), since)
        if running:
            echo_line(f"Note: {running} run(s) still streaming are left out")
    else:
        run_ids = [trace_id] if trace_id is not None else [None]  # type: ignore[list-item]
    runs = []
    for run_id in run_ids:
        result = _load_run(database, run_id, latest)
        if run_id not in (None, result.run_id):  # a trace of a run: the run is one trace
            result = _load_run(database, result.run_id, False)
        runs.append(_analysed(result))
    sent = export_runs(runs, _log_path(database), metrics=False, budget_s=None)
    if sent.error is not None:
        done = f" (sent {sent.spans} spans before that)" if sent.spans else ""
        raise click.ClickException(f"Could not send to {sent.endpoint}: {sent.error}{done}")
    click.echo(sent.summary())
