"""``llm streamscope whatif``: a logged answer, chunked otherwise."""

from __future__ import annotations

import pathlib
import sys

import click

from ..views.reportfile import html_option, overwrite_option, write_report
from ..views.sanitize import echo_line, json_text, terminal_line
from .common import _load_run, database_option, make_console, streamscope, trace_selector
from .inspect import _inspect, _read_source
from .types import FormatChoice


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
    type=FormatChoice(),
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
    from ..analysis.whatif import (
        AS_SENT,
        DEFAULT_POLICIES,
        WhatIfError,
        parse_policy,
        whatif_responses,
    )

    try:
        chosen = [AS_SENT, *map(parse_policy, policy_specs)] if policy_specs else DEFAULT_POLICIES
        policies = list(dict.fromkeys(chosen))  # as sent is the first row, once
    except WhatIfError as ex:
        raise click.BadParameter(str(ex), param_hint="'--policy'") from None
    problems: tuple[str, ...] = ()
    source_name = None
    if file is not None:
        if trace_id or latest:
            raise click.ClickException("Give a trace id, --latest or --file, not two of them")
        from ..inspection import InspectSettings

        source = _read_source(file)
        source_name = source.name
        result = _inspect(source, InspectSettings(format=stream_format)).result
        for warning in result.warnings:
            echo_line(f"Warning: {warning}")
        problems = tuple(f"{file}: {problem}" for problem in result.problems)
    elif not (trace_id or latest):
        raise click.ClickException(
            "Give a trace id (or llm's response id), --latest, or --file FILE (a captured stream)"
        )
    else:
        result = _load_run(database, trace_id, latest)
    responses = [(r.trace, r.alignment) for r in result.responses if r.alignment is not None]
    results, skipped = whatif_responses(responses, policies, stream_format, source=source_name)
    if not results:
        raise click.ClickException("; ".join([*skipped, *problems]))
    run_id = result.run_id or results[0].trace_id
    if json_:
        document = {"run_id": run_id, "responses": [r.to_dict() for r in results]}
        click.echo(json_text(document, indent=2))
    else:
        from rich.text import Text

        from ..views.render import whatif_notes, whatif_table

        console = make_console()
        for i, outcome in enumerate(results):
            title = f"whatif · trace {outcome.trace_id}"
            if len(results) > 1:
                title = f"response {i + 1} of {len(results)} · " + title
            console.rule(Text(terminal_line(title)), style="dim")
            console.print(whatif_table(outcome))
            for note in whatif_notes(outcome):
                console.print(terminal_line(note), style="dim", markup=False, soft_wrap=True)
    for skip in skipped:
        echo_line(f"Note: skipped {skip}")
    if html_path is not None:
        from ..views.report import whatif_html

        write_report(html_path, whatif_html(run_id, results), overwrite)
    if problems:  # a captured stream that stopped decoding part way, as inspect says
        echo_line("Error: " + "; ".join(problems))
        sys.exit(1)
