"""A captured stream analysed as a run is: ``llm streamscope inspect FILE|-``.

A ``Source`` (``wire.sources``: a file, standard input, a cassette) is decoded
and mapped (``wire.formats.decode``) into the fragments llm would have yielded;
each choice of the stream (OpenAI's ``n>1``) becomes one trace, aligned and
measured by the same functions as a live run's responses, so the views and the
``--json`` document are a run's. Only the times differ in where they come from:

- from standard input, a command's output (``inspect -- CMD``), or a file with a
  sidecar ``FILE.times``, a fragment's time is the arrival of the last byte of the
  event that carried it (none for bytes already waiting when reading began);
- from Ollama's stream, the server's own ``created_at`` of that event, counted from
  the first event's;
- from anything else there are none: the trace is untimed (``Trace.timed`` False,
  every time 0) and its stats measure no time, while the token and chunk analysis
  is complete.

A stream that stops decoding part way (invalid JSON in one event, an error event,
a body cut inside an event) is analysed up to there, and its traces end as an error.
"""

from __future__ import annotations

import dataclasses
import pathlib
from dataclasses import dataclass
from types import SimpleNamespace

from .analysis.summary import Analysed
from .analysis.trace import (
    STATUS_COMPLETE,
    STATUS_ERROR,
    STATUS_INTERRUPTED,
    Fragment,
    Trace,
    clean_text,
    is_clean,
)
from .capture.timing import new_trace, new_trace_id
from .session import RunResult
from .wire.events import Decoded, Wire
from .wire.sources import Source

UNKNOWN_MODEL = "unknown"
"""The model of a stream that names none, and whose source does not either."""


@dataclass(frozen=True)
class InspectSettings:
    format: str | None = None
    """One of ``wire.formats.FORMATS``; None: detected from the stream."""
    encoding_name: str | None = None
    """The tiktoken encoding to align with; None: the model's, else the default."""
    gap_ms: float | None = None
    database: pathlib.Path | None = None
    """Where the traces are logged; None: not logged."""


@dataclass(frozen=True)
class Inspection:
    """A source, what its body decoded to, and its traces analysed as a run."""

    source: Source
    decoded: Decoded
    result: RunResult
    timing: str | None
    """Where the times come from, in words; None when the stream carries none."""


def inspect_source(source: Source, settings: InspectSettings) -> Inspection:
    """Decode ``source``, build one trace per choice, align, measure and (optionally) log them.

    Raises ``WireError`` when there is nothing to analyse (an empty body, bytes
    that are no event stream, a format that cannot be told) and ``EncodingError``
    when the encoding cannot load. Problems after that are the result's.
    """
    from .analysis import encodings
    from .analysis.align import align
    from .analysis.stats import gap_threshold, measure
    from .capture.tokenizer import LocalTokenizer
    from .wire.formats import decode

    decoded = decode(source.reads, settings.format)
    times, timing = event_times(source, decoded)
    end_ns = None  # the last byte's arrival, else the last event's server time
    if source.timed and source.reads:
        end_ns = source.reads[-1].t_ns
    elif times:
        end_ns = max((t for t in times if t is not None), default=None)
    model_id = decoded.model or source.model or UNKNOWN_MODEL
    if settings.encoding_name:
        encoding_name, exact = settings.encoding_name, True
    else:
        encoding_name, exact = encodings.encoding_for_model(SimpleNamespace(model_id=model_id))
    tokenizer = LocalTokenizer(encodings.get_encoding(encoding_name))
    wire = Wire(
        source=source.kind,
        decoded=decoded,
        reads=source.reads,
        url=source.url,
        status=source.status,
        headers={} if source.content_type is None else {"content-type": source.content_type},
    )
    traces = stream_traces(
        decoded,
        times,
        end_ns,
        model_id=model_id,
        encoding_name=encoding_name,
        encoding_exact=exact,
        options={"inspected": source.name, "format": decoded.format},
        wire=wire,
        wire_timed=source.timed,
    )
    problems: list[str] = []
    stopped_by = None
    if source.interrupted is not None:  # cut short, as a run's stream by Ctrl-C
        from .capture.signals import interruption_words, signal_of

        error = interruption_words(source.interrupted)
        traces = [dataclasses.replace(t, status=STATUS_INTERRUPTED, error=error) for t in traces]
        problems.append(f"stream interrupted after {len(source.body):,} bytes: {error}")
        stopped_by = signal_of(source.interrupted)
    warnings = [*source.notes, *decoded.warnings]
    if len(traces) > 1 and decoded.usage_output is not None:
        warnings.append(
            f"the usage ({decoded.usage_output:,} output tokens) counts all "
            f"{len(traces)} choices together: it is not compared with each"
        )
    if decoded.error is not None:
        problems.append(str(decoded.error))
    elif source.status is not None and not 200 <= source.status < 300:
        problems.append(f"the recorded response is HTTP {source.status}")
    threshold = gap_threshold(settings.gap_ms)
    responses = []
    for trace in traces:
        responses.append(Analysed(*measure(trace, align(trace, tokenizer), gap_ms=threshold)))
    if settings.database is not None:
        problems += log_traces(settings.database, responses)
    result = RunResult(
        run_id=traces[0].run_id or traces[0].id,
        responses=tuple(responses),
        problems=tuple(problems),
        warnings=tuple(warnings),
        signal=stopped_by,
    )
    return Inspection(source, decoded, result, timing)


def event_times(source: Source, decoded: Decoded) -> tuple[list[int | None] | None, str | None]:
    """Each event's time in ns, and where the times come from; (None, None) when untimed.

    An event's time is the arrival of its last byte when the source was timed;
    otherwise the time the server wrote into it (Ollama), an event without one
    taking the time of the one before.
    """
    if source.timed:
        # None: the event's last byte was already waiting when reading began.
        return [e.t_ns for e in decoded.events], source.origin
    if decoded.server_times_ns is not None:
        times: list[int | None] = []
        last = 0
        for t in decoded.server_times_ns:
            last = last if t is None else t
            times.append(last)
        return times, "the server's created_at: t=0 is the first event's"
    return None, None


def stream_traces(
    decoded: Decoded,
    times: list[int | None] | None,
    end_ns: int | None = None,
    *,
    model_id: str,
    encoding_name: str,
    encoding_exact: bool,
    options: dict,
    wire: Wire | None = None,
    wire_timed: bool = False,
) -> list[Trace]:
    """One trace per choice of the decoded stream, its pieces as fragments.

    Every trace belongs to one run; a choice's usage is known only when the stream
    has one choice (the provider counts every choice's tokens together). ``times``
    are the events' (``event_times``: None for one that arrived before reading
    began), None for an untimed trace; ``end_ns`` when
    the stream ended. ``wire_timed``: the times are the arrivals of the events'
    bytes, so each fragment's ``wire_t_ns`` is its time too (the stats then say
    they count by the wire); the server's own times are not arrivals.
    """
    header = new_trace(
        model_id=model_id,
        encoding_name=encoding_name,
        encoding_exact=encoding_exact,
        options=options,
    )
    run_id = new_trace_id()
    single = len(decoded.choices) == 1
    traces = []
    for index, choice in enumerate(decoded.choices):
        pieces = [p for p in decoded.pieces if p.choice == choice]
        at = [None if times is None else times[p.event_index] for p in pieces]
        # An untimed piece (its bytes were waiting when reading began) has no wire
        # time, so no time on the wire's clock (``stats.time_ns``).
        fragments = tuple(
            Fragment(i, p.kind, p.text, t or 0, p.tool_call_id, t if wire_timed else None)
            for i, (p, t) in enumerate(zip(pieces, at))
        )
        if not is_clean("".join(f.text for f in fragments)):
            fragments = tuple(dataclasses.replace(f, text=clean_text(f.text)) for f in fragments)
        traces.append(
            dataclasses.replace(
                header,
                id=header.id if index == 0 else new_trace_id(),
                fragments=fragments,
                status=STATUS_COMPLETE if decoded.error is None else STATUS_ERROR,
                error=None if decoded.error is None else str(decoded.error),
                end_ns=end_ns,
                usage_input=decoded.usage_input if single else None,
                usage_output=decoded.usage_output if single else None,
                usage_details=decoded.usage_details if single else None,
                run_id=run_id,
                run_index=index,
                # Choices stream side by side, not one after another: there is no
                # time between them to measure.
                run_offset_ns=0 if single else None,
                timed=times is not None,
                wire=wire,
            )
        )
    return traces


def log_traces(database: pathlib.Path, responses: list[Analysed]) -> list[str]:
    """Write each analysed trace to the log as a run writes its own; the problems met."""
    from .analysis.trace import Arrivals
    from .store.writer import StoreError, TraceWriter

    problems = []
    for response in responses:
        writer = TraceWriter(database, Arrivals())
        writer.open(response.trace)
        writer.stop()  # nothing streams: everything is written by finish
        try:
            writer.finish(response.trace, response.alignment, response.stats)
        except StoreError as ex:
            problems.append(f"trace not saved: {ex}")
    return problems
