"""Models side by side: ``llm streamscope compare``.

Each model named with ``-m`` (each with its own ``-o`` options, so one model can be
compared with itself under other options) is run ``n`` times through the single
run pipeline (``session.run`` around llm's own prompt command, as ``run`` does),
every run logged like a normal run; or its latest logged traces are read back
(``from_logs``). ``summarize`` turns a model's responses into one row of figures::

    shared, specs = model_specs(["gpt-4o-mini", "claude-3.5-haiku"], [], ["model_ids"] * 2)
    settings = CompareSettings(prompt="Explain SSE", runs=5, run=RunSettings(database=path))
    runs = run_models(specs, settings, lambda params: ctx.invoke(llm.cli.prompt, **params))
    rows = [summarize(r) for r in runs]

How runs are aggregated follows AIPerf, which computes its metrics per request
and then takes statistics across requests (``AGGREGATION``).

Runs are sequential by default, in rounds (each model once, then each again), so
that a drift over time (a provider's load, a warming cache) falls on every model
alike. ``parallel`` runs the models at once, each in its own process: their
timings then disturb each other (one machine's CPU and network for all).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import pathlib
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .analysis.summary import (  # noqa: F401 (compare's names, where they have always been)
    AGGREGATION,
    Analysed,
    ModelRuns,
    ModelSpec,
    ModelSummary,
    comparison_document,
    runs_of,
    summarize,
)
from .analysis.trace import STATUS_COMPLETE
from .session import RunResult, RunSettings

PARALLEL_NOTE = (
    "--parallel runs the models at the same time: they share this machine's CPU and "
    "network, so each one's timings are disturbed by the others'. Compare timings "
    "from sequential runs."
)


class CompareError(Exception):
    """Input compare cannot run with (an unknown model, an invalid option)."""


def model_specs(
    model_ids: Sequence[str],
    options: Sequence[tuple[str, str]],
    flag_order: Sequence[str],
) -> tuple[tuple[tuple[str, str], ...], tuple[ModelSpec, ...]]:
    """The options shared by every model, and each model with its own.

    ``flag_order`` names each ``-m`` (``"model_ids"``) and ``-o`` (``"options"``)
    flag in command-line order: an option belongs to the model before it, and
    options before the first model are shared.

    >>> shared, specs = model_specs(
    ...     ["sim", "sim"],
    ...     [("speed", "0"), ("profile", "a"), ("profile", "b")],
    ...     ["options", "model_ids", "options", "model_ids", "options"],
    ... )
    >>> shared, [s.label for s in specs]
    ((('speed', '0'),), ['sim profile=a', 'sim profile=b'])
    """
    models, values = iter(model_ids), iter(options)
    shared: list[tuple[str, str]] = []
    owned: list[tuple[str, list[tuple[str, str]]]] = []
    for flag in flag_order:
        if flag == "model_ids":
            owned.append((next(models), []))
        else:
            (owned[-1][1] if owned else shared).append(next(values))
    specs = tuple(ModelSpec(model_id, tuple(opts)) for model_id, opts in owned)
    labels = [s.label for s in specs]
    repeated = next((label for label in labels if labels.count(label) > 1), None)
    if repeated is not None:
        raise CompareError(
            f"{repeated} is named twice: give each -m different options (-o after it)"
        )
    return tuple(shared), specs


def resolve(spec: ModelSpec, shared: Sequence[tuple[str, str]]) -> tuple[Any, dict[str, Any]]:
    """The llm model of ``spec`` and its options as llm validates them (its own words
    when it refuses); raises CompareError."""
    import llm
    import pydantic
    from llm.cli import render_errors

    try:
        model = llm.get_model(spec.model_id)
    except llm.UnknownModelError as ex:
        raise CompareError(str(ex)) from None
    if not model.can_stream:
        raise CompareError(
            f"Model {model.model_id} cannot stream, so there is nothing to time: "
            "compare needs streaming models"
        )
    try:
        validated = model.Options(**dict([*shared, *spec.options]))
    except pydantic.ValidationError as ex:
        message = " ".join(render_errors(ex.errors()).split())
        raise CompareError(f"{spec.label}: {message}") from None
    return model, {k: v for k, v in validated if v is not None}


# ====================
# Running the models
# ====================


@dataclass(frozen=True)
class CompareSettings:
    prompt: str
    system: str | None = None
    runs: int = 1
    """Runs of each model."""
    shared_options: tuple[tuple[str, str], ...] = ()
    """Options for every model (``-o`` before the first ``-m``)."""
    run: RunSettings = field(default_factory=lambda: RunSettings(live=False))
    """How each run is measured and where it is logged (``live`` is ignored: compare
    shows no live text)."""
    parallel: bool = False


def run_models(
    specs: Sequence[ModelSpec],
    settings: CompareSettings,
    invoke_prompt: Callable[[dict[str, Any]], Any],
    progress: Callable[[str], None] = lambda line: None,
) -> list[ModelRuns]:
    """Run every model ``settings.runs`` times; ``invoke_prompt(params)`` runs llm's
    prompt command with those parameters. ``progress`` gets a line after each run.

    Raises CompareError before any request for a model or option llm refuses, and
    when llm refuses a run before it streams (its own words).
    """
    models = [resolve(spec, settings.shared_options) for spec in specs]
    if settings.parallel:
        return _run_in_processes(specs, settings, progress)
    done: list[list[tuple[RunResult, str | None]]] = [[] for _ in specs]
    rounds = ((number, i) for number in range(1, settings.runs + 1) for i in range(len(specs)))
    for number, i in rounds:
        spec = specs[i]
        result = _run_once(spec, models[i][0], settings, invoke_prompt)
        if isinstance(result.failure, KeyboardInterrupt):
            # Ctrl-C: no more runs; what was received is kept and shown
            done[i].append((result, "interrupted (Ctrl-C)"))
            progress(f"{spec.label}: run {number}/{settings.runs} interrupted")
            break
        failure = _failure(result)
        if failure is not None and not result.responses:
            raise CompareError(f"{spec.label}: {failure}")
        done[i].append((result, failure))
        progress(_progress_line(spec, number, settings.runs, result, failure))
    return [_model_runs(spec, results) for spec, results in zip(specs, done)]


def _prompt_params(spec: ModelSpec, settings: CompareSettings) -> dict[str, Any]:
    return {
        "prompt": settings.prompt,
        "model_id": spec.model_id,
        "options": (*settings.shared_options, *spec.options),
        "system": settings.system,
        # llm's record of each response is written with its trace (as run does)
        "log": False,
        "no_log": True,
    }


def _run_once(
    spec: ModelSpec,
    model: Any,
    settings: CompareSettings,
    invoke_prompt: Callable[[dict[str, Any]], Any],
) -> RunResult:
    from .session import run as run_session

    run_settings = dataclasses.replace(settings.run, live=False)
    params = _prompt_params(spec, settings)

    def invoke() -> None:
        # What llm prints (the newline after a stream) is not compare's output.
        with contextlib.redirect_stdout(io.StringIO()):
            invoke_prompt(params)

    return run_session(invoke, run_settings, expected_model=model)


def _failure(result: RunResult) -> str | None:
    """Why a run failed, in one line, or None."""
    import click

    from .analysis.trace import one_line, stream_ending

    problems = list(result.problems)
    last = result.responses[-1].trace if result.responses else None
    if last is not None and last.status != STATUS_COMPLETE:
        problems.insert(0, stream_ending(last))
    failure = result.failure
    clean_exit = isinstance(failure, click.exceptions.Exit) and failure.exit_code == 0
    if failure is not None and not clean_exit and last is None:
        if isinstance(failure, click.ClickException):
            problems.insert(0, " ".join(str(failure.format_message()).split()))
        else:
            problems.insert(0, one_line(failure))
    if last is None and not problems:
        problems.append("no response was streamed")
    return "; ".join(problems) or None


def _progress_line(
    spec: ModelSpec, number: int, runs: int, result: RunResult, failure: str | None
) -> str:
    head = f"{spec.label}: run {number}/{runs}"
    if not result.responses:
        return f"{head} failed: {failure}"
    response = result.responses[-1]
    trace, stats = response.trace, response.stats
    parts = [trace.status]
    if stats is not None:
        ttft = "-" if stats.ttft_ms is None else f"{stats.ttft_ms:.1f} ms"
        parts += [f"TTFT {ttft}", f"{stats.tokens} tokens in {stats.chunks} chunks"]
    parts.append(f"run {result.run_id}")
    line = f"{head}: " + " · ".join(parts)
    return line + (f" · {failure}" if failure else "")


def _model_runs(spec: ModelSpec, results: Iterable[tuple[RunResult, str | None]]) -> ModelRuns:
    responses: list[Analysed] = []
    run_ids: list[str] = []
    failures: list[str] = []
    for number, (result, failure) in enumerate(results, 1):
        responses += result.responses
        if result.responses:
            run_ids.append(result.run_id)
        if failure is not None:
            failures.append(f"{spec.label} run {number}: {failure}")
    return ModelRuns(spec, tuple(responses), tuple(run_ids), tuple(failures))


def run_command(spec: ModelSpec, settings: CompareSettings, database: pathlib.Path) -> list[str]:
    """The ``llm streamscope run`` command line of one run of ``spec`` in its own
    process, logging into ``database``, its document on standard output."""
    command = [sys.executable, "-m", "llm", "streamscope", "run", "-m", spec.model_id]
    for key, value in (*settings.shared_options, *spec.options):
        command += ["-o", key, value]
    if settings.system is not None:
        command += ["-s", settings.system]
    run = settings.run
    if run.encoding_name:
        command += ["--encoding", run.encoding_name]
    if run.gap_ms is not None:
        command += ["--gap-ms", str(run.gap_ms)]
    if run.timeout_s is not None:
        command += ["--timeout", str(run.timeout_s)]
    return [*command, "--json", "--log", "-d", str(database), "--", settings.prompt]


def _run_in_processes(
    specs: Sequence[ModelSpec],
    settings: CompareSettings,
    progress: Callable[[str], None],
) -> list[ModelRuns]:
    """Each model in its own thread, each run of it in its own process (a run's
    capture wraps llm's classes for its whole process, and handles its signals).
    Runs are read back from the database they logged to: a temporary one when
    logging is off."""
    with tempfile.TemporaryDirectory(prefix="streamscope-compare-") as scratch:
        database = settings.run.database or pathlib.Path(scratch) / "logs.db"
        results: list[list[tuple[RunResult, str | None]]] = [[] for _ in specs]
        lock = threading.Lock()
        stop = threading.Event()
        # Not Thread.join: a join that Ctrl-C interrupts can leave the thread seen
        # as ended while it still runs.
        finished = [threading.Event() for _ in specs]

        def runs_of(i: int) -> None:
            try:
                for number in range(1, settings.runs + 1):
                    if stop.is_set():
                        return
                    result, failure = _run_process(specs[i], settings, database)
                    with lock:
                        results[i].append((result, failure))
                        progress(_progress_line(specs[i], number, settings.runs, result, failure))
            finally:
                finished[i].set()

        for i in range(len(specs)):
            threading.Thread(target=runs_of, args=(i,), daemon=True).start()
        try:
            for event in finished:
                event.wait()
        except KeyboardInterrupt:
            # Ctrl-C reached the runs' processes too (one process group): each saves
            # what it received and ends; start no more.
            stop.set()
            for event in finished:
                event.wait()
            for done in results:
                if len(done) < settings.runs:
                    done.append((RunResult(run_id="", responses=()), "interrupted (Ctrl-C)"))
        return [_model_runs(spec, done) for spec, done in zip(specs, results)]


def _run_process(
    spec: ModelSpec, settings: CompareSettings, database: pathlib.Path
) -> tuple[RunResult, str | None]:
    """One run in its own process, read back from ``database``."""
    from .logged import load_run
    from .store.reading import open_for_reading

    done = subprocess.run(
        run_command(spec, settings, database),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    errors = [
        line[len("Error: ") :] for line in done.stderr.splitlines() if line.startswith("Error: ")
    ]
    failure = "; ".join(errors) or (f"exit status {done.returncode}" if done.returncode else None)
    try:
        run_id = json.loads(done.stdout)["run_id"]
    except (ValueError, KeyError, TypeError):
        return RunResult(run_id="", responses=()), failure or "no response was streamed"
    result = load_run(open_for_reading(database), run_id, gap_ms=settings.run.gap_ms)
    return result, failure


# ====================
# Reading the log
# ====================


def _matches(stored: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(key in stored and stored[key] == value for key, value in wanted.items())


def from_logs(
    db: Any,
    specs: Sequence[ModelSpec],
    shared: Sequence[tuple[str, str]] = (),
    limit: int | None = None,
    gap_ms: float | None = None,
) -> tuple[list[ModelRuns], list[str]]:
    """Each model's latest ``limit`` logged runs (all when None) with the options
    given (and maybe others), oldest first, analysed again; and the warnings of
    reading them. No request is made. A run of a tool chain is one run, read whole.

    A model llm no longer knows is matched by its id, its options as given.
    """
    import llm

    from .logged import load_run
    from .store.reading import decode_json_columns, recent_traces

    found: list[ModelRuns] = []
    warnings: list[str] = []
    for spec in specs:
        try:
            llm.get_model(spec.model_id)
        except llm.UnknownModelError:
            model_id, wanted = spec.model_id, dict([*shared, *spec.options])
        else:
            model, wanted = resolve(spec, shared)
            model_id = model.model_id
        stored, damaged = recent_traces(db, None, model_id)
        warnings += damaged
        run_ids = list(
            dict.fromkeys(
                row["run_id"] or row["id"]
                for row in stored
                if _matches(decode_json_columns(row)["options"], wanted)
            )
        )[:limit]
        responses: list[Analysed] = []
        for run_id in reversed(run_ids):
            result = load_run(db, run_id, gap_ms=gap_ms)
            warnings += result.warnings
            responses += result.responses
        found.append(ModelRuns(spec, tuple(responses), tuple(reversed(run_ids))))
    return found, list(dict.fromkeys(warnings))
