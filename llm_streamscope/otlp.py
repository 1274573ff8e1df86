"""Sending planned runs (``otel.plan_run``) with the OpenTelemetry SDK's OTLP/HTTP exporters.

The SDK is imported inside the functions, so llm's start-up never pays for it;
``unusable`` tells, without importing it, whether it is installed. Everything is
configured by the standard ``OTEL_*`` variables, which the SDK reads itself.
"""

from __future__ import annotations

import datetime
import pathlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from .otel import LlmFacts, PlannedRun, Response, content_on, epoch_ns, plan_run, read_llm_facts

RUN_BUDGET_S = 1.0
"""The most a run waits for the collector after its stream: a slow one costs no more."""
SERVICE_NAME = "llm-streamscope"
"""``service.name`` when neither OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES names one."""
SCOPE = "llm_streamscope"
"""The instrumentation scope the spans and metrics are sent under."""

# The conventions' advisory bucket boundaries (seconds; tokens for usage).
DURATION_BUCKETS = tuple(round(0.01 * 2**i, 2) for i in range(14))
"""0.01, 0.02, 0.04, ... 81.92."""
FIRST_CHUNK_BUCKETS = (
    *(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1),
    *(0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
)
PER_CHUNK_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
TOKEN_BUCKETS = tuple(4**i for i in range(14))
"""1, 4, 16, ... 67108864."""

REQUIRED_MODULES = ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")
INSTALL_HINT = (
    "--otel needs the OpenTelemetry SDK and its OTLP/HTTP exporter: "
    "llm install 'llm-streamscope[otel]'"
)


def unusable() -> str | None:
    """Why ``--otel`` cannot work here, on one line (the SDK or the exporter is not
    installed, a protocol other than OTLP/HTTP is asked for), else None. Imports nothing."""
    import importlib.util
    import os

    for name in REQUIRED_MODULES:
        try:
            found = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            found = None
        if found is None:
            return INSTALL_HINT
    for variable in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
        protocol = os.environ.get(variable, "").strip()
        if protocol not in ("", "http/protobuf"):
            return f"--otel sends OTLP over HTTP (http/protobuf), not {variable}={protocol}"
    return None


@dataclass
class Sent:
    """What an export sent, and why it stopped short if it did."""

    traces: int = 0
    spans: int = 0
    metric_points: int = 0
    endpoint: str = ""
    error: str | None = None
    """Why the spans were not all sent."""
    metrics_endpoint: str = ""
    metrics_error: str | None = None
    """Why the metrics were not sent (the spans were)."""

    def summary(self) -> str:
        """What was sent, in words.

        >>> Sent(traces=2, spans=5, endpoint="http://c:4318/v1/traces").summary()
        'Sent 2 traces (5 spans) to http://c:4318/v1/traces'
        """
        traces = f"{self.traces} trace{'s' if self.traces != 1 else ''}"
        spans = f"{self.spans} span{'s' if self.spans != 1 else ''}"
        return f"Sent {traces} ({spans}) to {self.endpoint}"

    def warning(self, *, logged: bool) -> str | None:
        """What a run says when its traces were not all sent (None: they were).

        >>> Sent(endpoint="http://c/v1/traces", error="refused").warning(logged=False)
        '--otel could not send to http://c/v1/traces: refused'
        """
        if self.error is not None:
            later = (
                "; the traces stay in logs.db (`llm streamscope export --otel` sends them later)"
            )
            return f"--otel could not send to {self.endpoint}: {self.error}" + (
                later if logged else ""
            )
        if self.metrics_error is not None:
            return (
                f"--otel sent the traces, but not the metrics to {self.metrics_endpoint}: "
                f"{self.metrics_error} (OTEL_METRICS_EXPORTER=none: send no metrics)"
            )
        return None


def _ids(run_id: str) -> tuple[int, Callable[[str], int]]:
    """The trace id of a run, and a span id per planned key, derived from the run id:
    a run sent twice (live, then backfilled) has the same ids, and a streamscope
    run id (a ULID, 128 bits) is its trace id, so one finds the other."""
    import hashlib

    try:
        from ulid import ULID

        trace_id = int(ULID.from_str(run_id.upper()))
    except ValueError:
        trace_id = int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:16], "big")
    trace_id = trace_id or 1

    def span_id(key: str) -> int:
        digest = hashlib.sha256(f"{trace_id:032x}/{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") or 1

    return trace_id, span_id


def _resource() -> Any:
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    try:
        from importlib.metadata import version

        resource = resource.merge(Resource({"service.version": version("llm-streamscope")}))
    except Exception:  # not installed as a distribution (a source checkout)
        pass
    return resource


def _sdk_spans(plans: Sequence[PlannedRun], resource: Any) -> list[Any]:
    """The planned spans as the SDK's finished spans (ReadableSpan), ready to export."""
    from opentelemetry import trace as api
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.id_generator import IdGenerator
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    class Planned(IdGenerator):
        trace_id = 0
        span_id = 0

        def generate_trace_id(self) -> int:
            return self.trace_id

        def generate_span_id(self) -> int:
            return self.span_id

    ids = Planned()
    collected = InMemorySpanExporter()
    provider = TracerProvider(
        resource=resource,
        # Every span of a run is sent: the SDK's own sampling by environment
        # (OTEL_TRACES_SAMPLER) would drop parts of runs the user asked to send.
        sampler=ALWAYS_ON,
        # Unlimited, whatever OTEL_*_LIMIT says: the SDK would otherwise keep 128
        # attributes and cut long values without a word, and the timeline arrays
        # and the content are the trace itself.
        span_limits=SpanLimits(
            max_attributes=SpanLimits.UNSET,
            max_span_attributes=SpanLimits.UNSET,
            max_attribute_length=SpanLimits.UNSET,
            max_span_attribute_length=SpanLimits.UNSET,
        ),
        id_generator=ids,
    )
    provider.add_span_processor(SimpleSpanProcessor(collected))
    tracer = provider.get_tracer(SCOPE)
    kinds = {"client": api.SpanKind.CLIENT, "internal": api.SpanKind.INTERNAL}
    for plan in plans:
        ids.trace_id, span_id = _ids(plan.run_id)
        opened: dict[str, Any] = {}
        for planned in plan.spans:
            ids.span_id = span_id(planned.key)
            context = None
            if planned.parent is not None:
                context = api.set_span_in_context(opened[planned.parent])
            span = tracer.start_span(
                planned.name,
                context=context,
                kind=kinds[planned.kind],
                attributes=planned.attributes,
                start_time=planned.start_ns,
            )
            if planned.error is not None:
                span.set_status(api.Status(api.StatusCode.ERROR, planned.error))
            opened[planned.key] = span
        # Children first, so a span is never read before the spans under it ended.
        for planned in reversed(plan.spans):
            opened[planned.key].end(end_time=planned.end_ns)
    provider.shutdown()
    return list(collected.get_finished_spans())


def _sdk_metrics(plans: Sequence[PlannedRun], resource: Any) -> Any:
    """The planned points recorded into the conventions' histograms, collected once."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = provider.get_meter(SCOPE)
    histograms = {
        name: meter.create_histogram(
            name,
            unit=unit,
            description=description,
            explicit_bucket_boundaries_advisory=list(buckets),
        )
        for name, unit, buckets, description in (
            (
                "gen_ai.client.operation.duration",
                "s",
                DURATION_BUCKETS,
                "GenAI operation duration.",
            ),
            (
                "gen_ai.client.token.usage",
                "{token}",
                TOKEN_BUCKETS,
                "Number of input and output tokens used.",
            ),
            (
                "gen_ai.client.operation.time_to_first_chunk",
                "s",
                FIRST_CHUNK_BUCKETS,
                "Time to receive the first chunk.",
            ),
            (
                "gen_ai.client.operation.time_per_output_chunk",
                "s",
                PER_CHUNK_BUCKETS,
                "Time per output chunk, recorded for each chunk after the first.",
            ),
        )
    }
    for plan in plans:
        for point in plan.metrics:
            histograms[point.name].record(point.value, point.attributes)
    data = reader.get_metrics_data()
    provider.shutdown()
    return data


class _Collected:
    """The SDK's log records during an export: kept for the one warning line, never printed."""

    def __init__(self) -> None:
        import logging

        self.messages: list[str] = []
        outer = self

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                outer.messages.append(record.getMessage())

        self.handler = Handler(level=logging.WARNING)
        self.logger = logging.getLogger("opentelemetry")

    def open(self) -> _Collected:
        self.logger.addHandler(self.handler)
        self.propagate, self.logger.propagate = self.logger.propagate, False
        return self

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.propagate = self.propagate


def send(
    plans: Sequence[PlannedRun],
    *,
    metrics: bool,
    budget_s: float | None,
    batch_spans: int = 512,
) -> Sent:
    """Export the planned runs' spans (and metric points) with the SDK's OTLP/HTTP
    exporters, configured by the OTEL_* variables (OTEL_TRACES_EXPORTER or
    OTEL_METRICS_EXPORTER ``none``: that signal is not sent).

    ``budget_s``: the most this waits in all; the export runs in a thread that is
    left behind (a daemon) when the collector has not answered by then. None: the
    exporters' own timeout (OTEL_EXPORTER_OTLP_TIMEOUT, 10 s by default).
    """
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # The SDK's own log lines (a malformed variable, a failed request) are kept for
    # the one warning line, never printed.
    collected = _Collected().open()
    resource = _resource()
    spans = _sdk_spans(plans, resource) if _wanted("OTEL_TRACES_EXPORTER") else []
    metrics = metrics and _wanted("OTEL_METRICS_EXPORTER")
    data = _sdk_metrics(plans, resource) if metrics else None
    timeout = None if budget_s is None else max(budget_s, 0.01)
    span_exporter = OTLPSpanExporter(timeout=timeout)
    sent = Sent(endpoint=span_exporter._endpoint)
    metric_exporter = None
    if data is not None:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        metric_exporter = OTLPMetricExporter(timeout=timeout)
        sent.metrics_endpoint = metric_exporter._endpoint

    def export() -> None:
        from opentelemetry.sdk.trace.export import SpanExportResult

        for start in range(0, len(spans), batch_spans):
            batch = spans[start : start + batch_spans]
            if span_exporter.export(batch) is not SpanExportResult.SUCCESS:
                sent.error = _reason(collected.messages) or "the collector refused the spans"
                return
            sent.spans += len(batch)
        sent.traces = len({s.context.trace_id for s in spans})
        if metric_exporter is not None and data is not None:
            from opentelemetry.sdk.metrics.export import MetricExportResult

            if metric_exporter.export(data) is not MetricExportResult.SUCCESS:
                sent.metrics_error = (
                    _reason(collected.messages) or "the collector refused the metrics"
                )
                return
            sent.metric_points = sum(len(p.metrics) for p in plans)

    worker = threading.Thread(target=export, name="streamscope-otel", daemon=True)
    worker.start()
    worker.join(budget_s)
    if worker.is_alive():
        # Left behind: its later complaints stay collected, never printed.
        late = f"the collector did not answer within {budget_s:g} s"
        if sent.traces or not spans:
            sent.metrics_error = late
        else:
            sent.error, sent.spans = late, 0  # only what was sent completely counts
    else:
        collected.close()
    return sent


def _wanted(variable: str) -> bool:
    """Whether a signal is to be sent: the SDK's exporter variables, where ``none`` says not."""
    import os

    return os.environ.get(variable, "").strip().lower() != "none"


def _reason(messages: list[str]) -> str | None:
    """The SDK's last word on a failed export, on one line, in plain words where
    it has none of its own.

    >>> _reason(["Failed to export spans batch due to timeout, max retries or shutdown."])
    'the collector could not be reached, or did not answer in time'
    >>> _reason(["Failed to export metrics batch code: 405, reason: Method Not Allowed"])
    'Failed to export metrics batch code: 405, reason: Method Not Allowed'
    """
    for message in reversed(messages):
        if "due to timeout, max retries" in message:
            # All the SDK says when a connection is refused, or no answer comes.
            return "the collector could not be reached, or did not answer in time"
        if message.strip():
            return " ".join(message.split())
    return None


def export_runs(
    runs: Sequence[Sequence[Response]],
    database: pathlib.Path | None,
    *,
    metrics: bool,
    budget_s: float | None,
    models: Sequence[Any] = (),
) -> Sent:
    """Plan and send ``runs`` (each its responses in run order): what ``--otel`` does.

    ``database``: the logs.db the runs are logged in, for llm's record of each
    response (the provider's response id, finish reasons); None: not logged.
    ``models``: llm models the caller holds, which tell their provider without
    asking llm to build every plugin's models.
    """
    modules = {m.model_id: type(m).__module__ for m in models if m is not None}
    facts: dict[str, LlmFacts] = {}
    if database is not None and pathlib.Path(database).is_file():
        import sqlite_utils

        with suppress(sqlite3.Error):
            db = sqlite_utils.Database(database)
            facts = read_llm_facts(db, (t for run in runs for t, _, _ in run))
            db.close()
    content = content_on()
    plans = [plan_run(run, facts, content, modules) for run in runs if run]
    return send(plans, metrics=metrics, budget_s=budget_s)


def stored_run_ids(db: Any, since: datetime.datetime | None = None) -> tuple[list[str], int]:
    """Every logged run (started at ``since``, UTC when it says no zone, or later),
    oldest first, and how many were left out because they are still running."""
    from .analysis.trace import STATUS_RUNNING
    from .store.reading import recent_traces

    since_ns = None
    if since is not None:
        zoned = since if since.tzinfo is not None else since.replace(tzinfo=datetime.timezone.utc)
        since_ns = epoch_ns(zoned.isoformat())

    runs: dict[str, bool] = {}
    rows, _ = recent_traces(db, None)  # a damaged row is warned of as its run is loaded
    for row in reversed(rows):
        if since_ns is not None and epoch_ns(row["started_utc"]) < since_ns:
            continue
        run_id = row["run_id"] or row["id"]
        runs[run_id] = runs.get(run_id, True) and row["status"] != STATUS_RUNNING
    finished = [run_id for run_id, done in runs.items() if done]
    return finished, len(runs) - len(finished)
