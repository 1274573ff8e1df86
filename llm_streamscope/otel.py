"""OpenTelemetry export: runs as spans and metrics named by the GenAI semantic conventions.

A run is one trace. Each response is a ``chat {model}`` span (kind CLIENT) from
its request leaving to its stream's end, on the wall clock the trace recorded;
a run of several responses (a tool chain) puts them under one run span, with an
``execute_tool {name}`` span for each tool call in the time between two
responses. Beside the conventions' attributes each response span carries
streamscope's own figures (``streamscope.*``) and the whole arrival timeline as
numeric arrays, so a backend holds the trace, not a summary. The four GenAI
client metrics go with a live run.

Everything is sent after the stream has ended, with the official SDK and its
OTLP/HTTP exporter, configured only by the standard ``OTEL_*`` variables. The
SDK is imported inside functions: llm's start-up does not pay for it.

Planning (``plan_run``) needs no SDK; ``otlp.send`` turns the plans into the
SDK's spans and metrics and exports them::

    plans = [plan_run(responses, llm_facts={}, content=False)]
    sent = otlp.send(plans, metrics=True, budget_s=1.0)
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from .analysis.trace import STATUS_COMPLETE, Alignment, Trace

if TYPE_CHECKING:
    from .analysis.stats import Stats

Response = tuple[Trace, Alignment, "Stats"]

CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
NOT_ALIGNED = -1
"""In the timeline's integer arrays: the fragment is not model output, so has no
place among the tokens (the JSON document says null); in ``wire_t_ms``: no wire time."""

# The request options the conventions name, under llm's option names.
REQUEST_OPTIONS = {
    "temperature": "gen_ai.request.temperature",
    "max_tokens": "gen_ai.request.max_tokens",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
    "stop": "gen_ai.request.stop_sequences",
}

SECRET_OPTION = re.compile(r"key|secret|password|auth|credential|bearer", re.IGNORECASE)
"""Options never sent, whatever a plugin calls them."""

# llm plugins by the module their model classes live in, and the conventions'
# provider name for each (the simulator subclasses llm's OpenAI model: first).
PROVIDERS = (
    ("llm_streamscope.sim", "streamscope.sim"),
    ("llm.default_plugins.openai_models", "openai"),
    ("llm_anthropic", "anthropic"),
    ("llm_gemini", "gcp.gemini"),
    ("llm_ollama", "ollama"),
    ("llm_mistral", "mistral_ai"),
    ("llm_groq", "groq"),
    ("llm_bedrock", "aws.bedrock"),
    ("llm_deepseek", "deepseek"),
)


def content_on() -> bool:
    """Whether prompts and answers may leave the machine: the conventions' switch."""
    return os.environ.get(CONTENT_ENV, "").strip().lower() == "true"


# ---------------------------------------------------------------- planning (pure)


@dataclass(frozen=True)
class PlannedSpan:
    """One span to send: times in ns since the Unix epoch."""

    key: str
    """Unique in its run; the span id is derived from it (the same run sent twice
    gives the same ids)."""
    name: str
    kind: str
    """``client`` or ``internal``."""
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    parent: str | None = None
    error: str | None = None
    """Set for a failed or interrupted stream: the span's status is ERROR, with this text."""


@dataclass(frozen=True)
class PlannedMetric:
    """One data point of a GenAI client metric."""

    name: str
    value: float
    attributes: dict[str, Any]


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    spans: tuple[PlannedSpan, ...]
    metrics: tuple[PlannedMetric, ...] = ()


@dataclass(frozen=True)
class LlmFacts:
    """What llm's own record of a response says that the trace does not."""

    response_id: str | None = None
    response_model: str | None = None
    finish_reasons: tuple[str, ...] = ()


def epoch_ns(iso: str) -> int:
    """An ISO 8601 time as ns since the Unix epoch, exactly (microseconds kept).

    >>> epoch_ns("1970-01-01T00:00:01.000002+00:00")
    1000002000
    """
    moment = datetime.datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    since = moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return since // datetime.timedelta(microseconds=1) * 1000


def provider_name(model_id: str, module: str | None = None) -> str:
    """The conventions' ``gen_ai.provider.name`` for an llm model: by the plugin
    that serves it (``module``: its class's module, when the caller has the model),
    else guessed from the id.

    >>> provider_name("claude-3.5-haiku-made-up"), provider_name("no-such-model")
    ('anthropic', 'no-such-model')
    >>> provider_name("x", "llm_gemini")
    'gcp.gemini'
    """
    if module is None:
        module = _model_module(model_id)
    for prefix, name in PROVIDERS:
        if module == prefix or module.startswith(prefix + "."):
            return name
    lowered = model_id.lower()
    for part, name in (("claude", "anthropic"), ("gemini", "gcp.gemini"), ("gpt", "openai")):
        if part in lowered:
            return name
    return module.split(".")[0] or model_id


@functools.cache
def _model_module(model_id: str) -> str:
    """The module of the class llm serves ``model_id`` with ("" when llm does not
    know it). Once per model: llm builds every plugin's models to find one."""
    import llm

    try:
        return type(llm.get_model(model_id)).__module__
    except llm.UnknownModelError:
        return ""


def _end_ns(trace: Trace) -> int:
    """The stream's end from the request leaving: as recorded, else its last fragment."""
    if trace.end_ns is not None:
        return trace.end_ns
    return max((f.t_ns for f in trace.fragments), default=0)


def _origins(responses: Sequence[Response]) -> list[int]:
    """Each response's request leaving, in ns since the epoch, on one clock.

    The first is its ``started_utc`` plus its setup; the others are placed after
    it by their ``run_offset_ns`` (the run's monotonic clock), so the time between
    them is what the run measured. A trace without an offset stands on its own
    ``started_utc``.
    """
    first = responses[0][0]
    anchor = epoch_ns(first.started_utc) + (first.setup_ns or 0) - (first.run_offset_ns or 0)
    origins = []
    for trace, _, _ in responses:
        if trace.run_offset_ns is not None and first.run_offset_ns is not None:
            origins.append(anchor + trace.run_offset_ns)
        else:
            origins.append(epoch_ns(trace.started_utc) + (trace.setup_ns or 0))
    return origins


def flatten(prefix: str, value: Any, into: dict[str, Any]) -> None:
    """Attributes of a JSON-shaped value: nested keys joined with dots, None left
    out, lists of scalars as arrays, anything else (lists of objects) as JSON text.

    >>> into = {}
    >>> flatten("s", {"a": 1, "b": {"c": None, "d": [1.5]}, "e": [{"k": 1}]}, into)
    >>> into
    {'s.a': 1, 's.b.d': [1.5], 's.e': '[{"k": 1}]'}
    """
    if value is None:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            flatten(f"{prefix}.{key}", item, into)
    elif isinstance(value, (list, tuple)):
        if all(isinstance(v, (str, bool, int, float)) for v in value) and (
            len({type(v) for v in value}) <= 1
        ):
            into[prefix] = list(value)
        else:
            into[prefix] = json.dumps(value, ensure_ascii=False, default=str)
    elif isinstance(value, (str, bool, int, float)):
        into[prefix] = value
    else:
        into[prefix] = str(value)


def timeline(trace: Trace, alignment: Alignment, content: bool) -> dict[str, Any]:
    """The whole arrival timeline as arrays, one element per fragment in arrival
    order: the ``fragments`` of the ``--json`` document, column by column.

    Null in the document is ``NOT_ALIGNED`` (-1) here: arrays hold one type.
    """
    from .views.documents import fragment_rows

    rows = list(fragment_rows(trace, alignment))
    columns: dict[str, Any] = {
        "streamscope.fragments.kind": [r["kind"] for r in rows],
    }
    if any(r["tool_call_id"] is not None for r in rows):
        columns["streamscope.fragments.tool_call_id"] = [r["tool_call_id"] or "" for r in rows]
    if trace.timed:
        columns["streamscope.fragments.t_ms"] = [float(r["t_ms"]) for r in rows]
    if any(r["wire_t_ms"] is not None for r in rows):
        columns["streamscope.fragments.wire_t_ms"] = [
            float(NOT_ALIGNED if r["wire_t_ms"] is None else r["wire_t_ms"]) for r in rows
        ]
    for key in ("byte_start", "byte_end", "token_start", "token_end"):
        columns[f"streamscope.fragments.{key}"] = [
            NOT_ALIGNED if r[key] is None else r[key] for r in rows
        ]
    for key in ("starts_mid_token", "ends_mid_token"):
        columns[f"streamscope.fragments.{key}"] = [bool(r[key]) for r in rows]
    if content:
        columns["streamscope.fragments.text"] = [r["text"] for r in rows]
    return columns


def _output_chunk_times(trace: Trace, stats: Stats) -> list[int]:
    """Arrival of every model-output chunk, on the clock the stats use."""
    timed = trace.on_wire_clock() if stats.clock == "wire" else trace
    return [f.t_ns for f in timed.fragments if f.is_chunk and f.is_model_output]


def _content_attributes(trace: Trace, facts: LlmFacts) -> dict[str, Any]:
    """The conventions' message attributes: only with the content switch on."""
    parts: list[dict[str, Any]] = []
    for stream in trace.streams().values():
        kind = stream[0].kind
        text = "".join(f.text for f in stream)
        if kind == "text":
            parts.append({"type": "text", "content": text})
        elif kind == "reasoning":
            parts.append({"type": "reasoning", "content": text})
    for call_id, (name, arguments) in _tool_calls(trace).items():
        parts.append({"type": "tool_call", "id": call_id, "name": name, "arguments": arguments})
    output: dict[str, Any] = {"role": "assistant", "parts": parts}
    if facts.finish_reasons:
        output["finish_reason"] = facts.finish_reasons[0]
    attributes = {"gen_ai.output.messages": json.dumps([output], ensure_ascii=False)}
    if trace.prompt is not None:
        message = {"role": "user", "parts": [{"type": "text", "content": trace.prompt}]}
        attributes["gen_ai.input.messages"] = json.dumps([message], ensure_ascii=False)
    if trace.system is not None:
        instructions = [{"type": "text", "content": trace.system}]
        attributes["gen_ai.system_instructions"] = json.dumps(instructions, ensure_ascii=False)
    return attributes


def _tool_calls(trace: Trace) -> dict[str, tuple[str, str]]:
    """Each tool call the response streamed: its id, name and arguments, in order."""
    calls: dict[str, list[str]] = {}
    for f in trace.fragments:
        if f.kind in ("tool_call_name", "tool_call_args"):
            call = calls.setdefault(f.tool_call_id or "", ["", ""])
            call[f.kind == "tool_call_args"] += f.text
    return {call_id: (name, arguments) for call_id, (name, arguments) in calls.items()}


def response_attributes(
    trace: Trace,
    alignment: Alignment,
    stats: Stats,
    facts: LlmFacts,
    content: bool,
    module: str | None = None,
) -> dict[str, Any]:
    """A response span's attributes: the conventions' ``gen_ai.*``, then streamscope's.

    ``module``: the module of the model's class, when known (see ``provider_name``)."""
    from .views.documents import trace_document

    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider_name(trace.model_id, module),
        "gen_ai.request.model": trace.model_id,
        # The model that answered: as the provider named it (llm's record, else the
        # wire), else the one asked for.
        "gen_ai.response.model": facts.response_model
        or (trace.wire is not None and trace.wire.decoded.model)
        or trace.model_id,
    }
    if facts.response_id:
        attributes["gen_ai.response.id"] = facts.response_id
    if facts.finish_reasons:
        attributes["gen_ai.response.finish_reasons"] = list(facts.finish_reasons)
    for option, name in REQUEST_OPTIONS.items():
        value = trace.options.get(option)
        if isinstance(value, str) and name == "gen_ai.request.stop_sequences":
            value = [value]
        if isinstance(value, (int, float, list)) and not isinstance(value, bool):
            attributes[name] = value
    if trace.usage_input is not None:
        attributes["gen_ai.usage.input_tokens"] = trace.usage_input
    if trace.usage_output is not None:
        attributes["gen_ai.usage.output_tokens"] = trace.usage_output
    chunk_times = _output_chunk_times(trace, stats) if trace.timed else []
    if chunk_times:
        attributes["gen_ai.response.time_to_first_chunk"] = chunk_times[0] / 1e9
    if trace.wire is not None and trace.wire.url:
        from urllib.parse import urlsplit

        url = urlsplit(trace.wire.url)  # host and port only: never the path or query
        if url.hostname:
            attributes["server.address"] = url.hostname
            if url.port:
                attributes["server.port"] = url.port
    if trace.status != STATUS_COMPLETE:
        attributes["error.type"] = trace.status
    if content:
        attributes |= _content_attributes(trace, facts)
    document = trace_document(trace, alignment, stats)
    for key in (
        "trace_id",
        "turn_id",
        "run_id",
        "run_index",
        "run_offset_ms",
        "status",
        "error",
        "started_utc",
        "encoding",
        "encoding_exact",
    ):
        flatten(f"streamscope.{key}", document[key], attributes)
    attributes["streamscope.timed"] = trace.timed
    if trace.options:
        options = {k: v for k, v in trace.options.items() if not SECRET_OPTION.search(k)}
        attributes["streamscope.options"] = json.dumps(options, default=str)
    flatten("streamscope", document["stats"], attributes)
    attributes |= timeline(trace, alignment, content)
    return attributes


def plan_run(
    responses: Sequence[Response],
    llm_facts: dict[str, LlmFacts],
    content: bool,
    modules: Mapping[str, str] | None = None,
) -> PlannedRun:
    """The spans and metric points of one run, its responses in run order.

    ``llm_facts``: llm's record of each response by trace id (``read_llm_facts``);
    ``modules``: the module of each model's class by model id, where the caller
    has the model (else llm is asked, see ``provider_name``).
    """
    first = responses[0][0]
    run_id = first.run_id or first.id
    origins = _origins(responses)
    spans: list[PlannedSpan] = []
    metrics: list[PlannedMetric] = []
    parent = None
    if len(responses) > 1:
        parent = "run"
    for i, ((trace, alignment, stats), origin) in enumerate(zip(responses, origins)):
        facts = llm_facts.get(trace.id, LlmFacts())
        module = (modules or {}).get(trace.model_id)
        attributes = response_attributes(trace, alignment, stats, facts, content, module)
        error = None if trace.status == STATUS_COMPLETE else (trace.error or trace.status)
        spans.append(
            PlannedSpan(
                key=f"response-{trace.id}",
                name=f"chat {trace.model_id}",
                kind="client",
                start_ns=origin,
                end_ns=origin + _end_ns(trace),
                attributes=attributes,
                parent=parent,
                error=error,
            )
        )
        metrics += _metric_points(trace, stats, attributes)
        if i + 1 < len(responses):
            spans += _tool_spans(trace, responses[i + 1][0], spans[-1], origins[i + 1], content)
    if parent is not None:
        spans.insert(
            0,
            PlannedSpan(
                key="run",
                name=f"run {first.model_id}",
                kind="internal",
                start_ns=origins[0] - (first.setup_ns or 0),
                end_ns=max(s.end_ns for s in spans),
                attributes={"streamscope.run_id": run_id, "streamscope.responses": len(responses)},
                error=next((s.error for s in reversed(spans) if s.error), None),
            ),
        )
    return PlannedRun(run_id, tuple(spans), tuple(metrics))


def _tool_spans(
    trace: Trace, following: Trace, span: PlannedSpan, next_origin: int, content: bool
) -> list[PlannedSpan]:
    """The tools run between ``trace`` and the ``following`` response: llm runs them one after
    another in that time, which the trace records only as a whole, so each call's
    span covers all of it (``streamscope.tool.calls_in_window`` says how many share it)."""
    calls = _tool_calls(trace)
    start = span.end_ns
    end = max(start, next_origin - (following.setup_ns or 0))
    planned = []
    for j, (call_id, (name, arguments)) in enumerate(calls.items()):
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.type": "function",
            "streamscope.tool.calls_in_window": len(calls),
        }
        if call_id:
            attributes["gen_ai.tool.call.id"] = call_id
        if content:
            attributes["gen_ai.tool.call.arguments"] = arguments
        planned.append(
            PlannedSpan(
                key=f"tool-{trace.id}-{j}",
                name=f"execute_tool {name}",
                kind="internal",
                start_ns=start,
                end_ns=end,
                attributes=attributes,
                parent=span.parent,
            )
        )
    return planned


METRIC_ATTRIBUTES = (
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "server.address",
    "server.port",
    "error.type",
)


def _metric_points(
    trace: Trace, stats: Stats, span_attributes: dict[str, Any]
) -> list[PlannedMetric]:
    """The four GenAI client metrics of one response, in seconds (and tokens)."""
    attributes = {k: span_attributes[k] for k in METRIC_ATTRIBUTES if k in span_attributes}
    points = []
    if trace.timed:
        points.append(
            PlannedMetric("gen_ai.client.operation.duration", _end_ns(trace) / 1e9, attributes)
        )
        times = _output_chunk_times(trace, stats)
        if times:
            points.append(
                PlannedMetric(
                    "gen_ai.client.operation.time_to_first_chunk", times[0] / 1e9, attributes
                )
            )
        points += [
            PlannedMetric(
                "gen_ai.client.operation.time_per_output_chunk", (b - a) / 1e9, attributes
            )
            for a, b in pairwise(times)
        ]
    for token_type, count in (("input", trace.usage_input), ("output", trace.usage_output)):
        if count is not None:
            points.append(
                PlannedMetric(
                    "gen_ai.client.token.usage",
                    count,
                    attributes | {"gen_ai.token.type": token_type},
                )
            )
    return points


def read_llm_facts(db: Any, traces: Iterable[Trace]) -> dict[str, LlmFacts]:
    """llm's record of each response (``turns.response_json``): the provider's
    response id, the model that answered and why it stopped. Read-only; a trace
    without a record, or a record that does not say, gets empty facts."""
    facts = {}
    table = db["turns"] if db is not None else None
    if table is None or not table.exists() or "response_json" not in table.columns_dict:
        return {}
    for trace in traces:
        if trace.turn_id is None:
            continue
        rows = list(db.query("select response_json from turns where id = ?", [trace.turn_id]))
        try:
            payload = json.loads(rows[0]["response_json"]) if rows else None
        except (TypeError, ValueError):
            payload = None
        if isinstance(payload, dict):
            facts[trace.id] = llm_facts(payload)
    return facts


def llm_facts(payload: dict[str, Any]) -> LlmFacts:
    """The id, model and finish reasons in a provider's payload as llm keeps it
    (OpenAI's, Anthropic's and Gemini's shapes).

    >>> llm_facts({"id": "msg_1", "model": "claude-x", "stop_reason": "end_turn"})
    LlmFacts(response_id='msg_1', response_model='claude-x', finish_reasons=('end_turn',))
    """

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) and value else None

    reasons = [text(payload.get("finish_reason")) or text(payload.get("stop_reason"))]
    candidates = payload.get("candidates")
    if isinstance(candidates, list):
        reasons += [text(c.get("finishReason")) for c in candidates if isinstance(c, dict)]
    return LlmFacts(
        response_id=text(payload.get("id")) or text(payload.get("responseId")),
        response_model=text(payload.get("model")) or text(payload.get("modelVersion")),
        finish_reasons=tuple(r for r in reasons if r),
    )
