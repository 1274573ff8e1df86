"""``llm streamscope compare``: models side by side."""

from __future__ import annotations

import pathlib
import sys

import click

from ..analysis.numbers import COUNT_MAX, TIMEOUT_S, Bounded
from ..views.reportfile import html_option, overwrite_option, write_report
from ..views.sanitize import echo_line, json_text
from .common import (
    _check_encoding,
    _check_otel,
    _open_log,
    _prepared_log,
    _send_otel,
    database_option,
    gap_ms_option,
    make_console,
    otel_option,
    streamscope,
)


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
    "-N",
    "--runs",
    type=Bounded(1, 1000, integer=True),
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
    type=Bounded(1, COUNT_MAX, integer=True),
    help="--from-logs: the latest this many runs of each model (default: all)",
)
@click.option(
    "encoding_name",
    "--encoding",
    help="tiktoken encoding to align with (default: each model's, else o200k_base)",
)
@gap_ms_option
@click.option(
    "--timeout",
    type=TIMEOUT_S,
    help="End a run as an error if nothing arrives for this many seconds",
)
@click.option("json_", "--json", is_flag=True, help="Output one JSON document instead of the table")
@html_option("Also write a self-contained HTML report (the runs overlaid in a chart) to this file")
@overwrite_option
@otel_option
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
    otel: bool,
    database: pathlib.Path | None,
) -> None:
    """Run models side by side on one prompt, and compare how their answers arrive.

    Each model runs N times (-N), in rounds, one run at a time; every run is
    logged like `llm streamscope run`'s. Then one table, a column per model:
    TTFT p50/p90 and ITL p50/p99 across runs (each run's own TTFT and ITL, as
    AIPerf aggregates per-request metrics), tokens/s, tokens per chunk, chunks of
    one whole token, stalls, and usage against the tiktoken count. Progress goes
    to standard error.

    \b
        llm streamscope compare -m gpt-4o-mini -m claude-3.5-haiku -N 5 "Explain SSE"
        llm streamscope compare -o speed 0 -m streamscope-sim -o profile gpt-4o-mini \\
            -m streamscope-sim -o profile claude-haiku "hi"
        llm streamscope compare --from-logs -m gpt-4o-mini -m claude-3.5-haiku

    An -o after an -m is that model's own, so one model can be compared with
    itself under other options; an -o before the first -m goes to every model.
    --from-logs reads the latest logged runs of each model that have the
    options given, and makes no request.

    --parallel runs the models at the same time: they share the machine's CPU
    and network, so their timings disturb each other. Use it for a quick look,
    not for timings to trust.
    """
    from .. import comparison
    from ..session import RunSettings
    from ..views.render import compare_table

    try:
        shared, specs = comparison.model_specs(model_ids, options, flag_order)
    except comparison.CompareError as ex:
        raise click.ClickException(str(ex)) from None
    if not specs:
        raise click.ClickException("Give at least one model to compare with -m")
    _check_encoding(encoding_name)
    _check_otel(otel)
    note = None
    if from_logs:
        ctx = click.get_current_context()
        given = [
            flag
            for flag, name in (("-N", "runs"), ("--parallel", "parallel"), ("--timeout", "timeout"))
            if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
        ]
        if otel:
            given.append("--otel (`llm streamscope export --otel` sends logged runs)")
        if prompt is not None or given:
            what = " or ".join(given + (["prompt"] if prompt is not None else []))
            raise click.ClickException(f"--from-logs makes no request: it takes no {what}")
        from ..store.writer import StoreError

        db = _open_log(database)
        try:
            results, warnings = comparison.from_logs(db, specs, shared, limit, gap_ms)
        except (comparison.CompareError, StoreError) as ex:
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
        if otel:
            _send_otel(comparison.runs_of(results), settings.run.database, [])
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
        from ..views.report import compare_html

        report = compare_html(results, summaries, prompt=prompt, note=note)
        write_report(html_path, report, overwrite)
    failures = [line for r in results for line in r.failures]
    if failures:
        echo_line("Error: " + "; ".join(failures))
        sys.exit(1)
