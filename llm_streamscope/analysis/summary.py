"""What a run's responses come to: each analysed, and a model's figures across its runs.

``summarize`` turns one model's responses into one row of ``compare``'s table;
how runs are aggregated follows AIPerf, which computes its metrics per request
and then takes statistics across requests (``AGGREGATION``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .stats import Distribution, Stats
from .trace import STATUS_COMPLETE, Alignment, Trace

AGGREGATION = {
    "runs": "runs measured (every response complete) of runs that streamed; a run of a "
    "tool chain streams several responses",
    "ttft_ms": "each run's TTFT (its first response's), percentiles across runs "
    "(AIPerf's time_to_first_token)",
    "itl_ms": "each run's ITL, (last chunk - first chunk) / (tokens - 1), percentiles "
    "across runs (AIPerf's inter_token_latency, a per-request value)",
    "tokens_per_s": "each run's 1 / ITL, statistics across runs "
    "(AIPerf's output_token_throughput_per_user)",
    "tokens_per_chunk": "tokens completed per text chunk, over the chunks of every run",
    "whole_token_chunks_pct": "chunks that are exactly one whole token, over the chunks "
    "of every run",
    "stalls": "gaps longer than the stall threshold, in every run",
    "usage": "the provider's output tokens (less reasoning, when given) against the "
    "streamed tokens counted with tiktoken, summed over the responses with text that "
    "report usage",
}
"""What each figure of a summary is, across runs: the JSON document carries it."""


@dataclass(frozen=True)
class Analysed:
    """One response of a run: its trace, and its alignment and stats when its encoding loaded."""

    trace: Trace
    alignment: Alignment | None
    stats: Stats | None


@dataclass(frozen=True)
class ModelSpec:
    """A model to compare, with its own options (``-o`` given after its ``-m``)."""

    model_id: str
    options: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        """How the table names it: ``streamscope-sim profile=claude-haiku``."""
        return " ".join([self.model_id, *(f"{k}={v}" for k, v in self.options)])


@dataclass(frozen=True)
class ModelRuns:
    """What one model streamed: each response analysed, the runs, what failed."""

    spec: ModelSpec
    responses: tuple[Analysed, ...] = ()
    run_ids: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()
    """A line for each run that failed, with why."""


def runs_of(results: Sequence[ModelRuns]) -> list[list[tuple[Trace, Alignment, Stats]]]:
    """Every run's analysed responses, in run order, run by run (what ``--otel`` sends)."""
    runs: dict[str, list[tuple[Trace, Alignment, Stats]]] = {}
    for result in results:
        for r in result.responses:
            if r.alignment is not None and r.stats is not None:
                runs.setdefault(r.trace.run_id or r.trace.id, []).append(
                    (r.trace, r.alignment, r.stats)
                )
    return list(runs.values())


@dataclass(frozen=True)
class ModelSummary:
    """One model's figures across its runs (see ``AGGREGATION``)."""

    label: str
    model: str
    options: dict[str, str]
    """The model's own options (``-o`` after its ``-m``), as given."""
    run_ids: tuple[str, ...]
    trace_ids: tuple[str, ...]
    runs: int
    """Runs that streamed (a logged tool chain is one run of several responses)."""
    complete: int
    """Of those, the runs whose every response is complete: every figure below is
    theirs, TTFT a run's first response's, the others its responses with text."""
    encoding: str | None
    encoding_exact: bool
    ttft_ms: Distribution
    itl_ms: Distribution
    tokens_per_s: Distribution
    chunks: int
    tokens: int
    tokens_per_chunk: float | None
    whole_token_chunks_pct: float | None
    stalls: int
    stall_threshold_ms: float | None
    usage_output_tokens: int | None
    tiktoken_tokens: int | None
    """Streamed tokens counted with tiktoken, of the runs that report usage."""
    tokens_minus_usage: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(runs: ModelRuns) -> ModelSummary:
    """The figures of one model's runs: each run's own stats, aggregated as
    ``AGGREGATION`` says. Only complete runs are measured: TTFT is each run's
    first response's; the other figures are those of its responses with text (a
    tool call's response has its own figures, but they are not the answer's)."""
    by_run: dict[str, list[Analysed]] = {}
    for r in runs.responses:
        by_run.setdefault(r.trace.run_id or r.trace.id, []).append(r)
    complete = [
        run for run in by_run.values() if all(r.trace.status == STATUS_COMPLETE for r in run)
    ]
    first_ttfts = [run[0].stats.ttft_ms for run in complete if run[0].stats is not None]
    measured = [
        r.stats
        for run in complete
        for r in run
        if r.stats is not None and r.stats.measured == "text" and r.stats.chunks
    ]
    chunks = sum(s.chunks for s in measured)
    # tokens each chunk completed, summed over every chunk of every run
    completed = sum((s.tokens_per_chunk.mean or 0.0) * s.tokens_per_chunk.count for s in measured)
    whole = sum(
        round(s.one_token_chunks_pct * s.chunks / 100)
        for s in measured
        if s.one_token_chunks_pct is not None
    )
    reported = [s for s in measured if s.usage_compared_tokens is not None]
    traces = [r.trace for r in runs.responses]
    exact = all(t.encoding_exact for t in traces)
    return ModelSummary(
        label=runs.spec.label,
        model=traces[0].model_id if traces else runs.spec.model_id,
        options=dict(runs.spec.options),
        run_ids=runs.run_ids,
        trace_ids=tuple(t.id for t in traces),
        runs=len(by_run),
        complete=len(complete),
        encoding=traces[0].encoding_name if traces else None,
        encoding_exact=exact,
        ttft_ms=Distribution.of([t for t in first_ttfts if t is not None]),
        itl_ms=Distribution.of([s.itl_ms.mean for s in measured if s.itl_ms.mean is not None]),
        tokens_per_s=Distribution.of(
            [s.tokens_per_s for s in measured if s.tokens_per_s is not None]
        ),
        chunks=chunks,
        tokens=sum(s.tokens for s in measured),
        tokens_per_chunk=completed / chunks if chunks else None,
        whole_token_chunks_pct=100.0 * whole / chunks if chunks else None,
        stalls=sum(s.stalls for s in measured),
        stall_threshold_ms=measured[0].stall_threshold_ms if measured else None,
        usage_output_tokens=sum(s.usage_compared_tokens or 0 for s in reported)
        if reported
        else None,
        tiktoken_tokens=sum(s.streamed_compared_tokens or 0 for s in reported)
        if reported
        else None,
        tokens_minus_usage=sum(s.tokens_minus_usage or 0 for s in reported) if reported else None,
    )


def comparison_document(
    summaries: Sequence[ModelSummary],
    *,
    source: str,
    prompt: str | None = None,
    system: str | None = None,
    parallel: bool = False,
) -> dict[str, Any]:
    """The ``--json`` document: each model's figures and run ids, and what they mean."""
    return {
        "source": source,
        "prompt": prompt,
        "system": system,
        "parallel": parallel,
        "aggregation": AGGREGATION,
        "models": [s.to_dict() for s in summaries],
    }
