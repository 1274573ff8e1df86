"""The JSON documents and table rows of a trace: ``--json``, ``export``, the fragments' columns.

Plain data in, plain data out: every time is on the document's one clock
(``analysis.clock``), every text as it arrived.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..analysis.clock import document_clock, time_ns
from ..analysis.stats import RunTotals, Stats
from ..analysis.trace import Alignment, Fragment, Trace


def run_document(
    run_id: str,
    responses: list[tuple[Trace, Alignment, Stats]],
    totals: RunTotals,
) -> dict[str, Any]:
    """The ``--json`` document of a run: each response's ``trace_document``, and the totals."""
    return {
        "run_id": run_id,
        "responses": [trace_document(*response) for response in responses],
        "totals": totals.to_dict(),
    }


def _ms(ns: int) -> float:
    return ns / 1e6


FRAGMENT_COLUMNS = (
    "index",
    "kind",
    "tool_call_id",
    "text",
    "t_ms",
    "llm_t_ms",
    "wire_t_ms",
    "byte_start",
    "byte_end",
    "token_start",
    "token_end",
    "starts_mid_token",
    "ends_mid_token",
)
"""The keys of a ``fragment_rows`` row, in order (the CSV header, even with no rows):
the fragment, then its ``Placement`` under the same names, with ``byte_end`` beside
``byte_start``."""
_TOKEN_FIELDS = FRAGMENT_COLUMNS[7:]
"""The place among the tokens: null for a fragment that is not model output."""


def fragment_rows(trace: Trace, alignment: Alignment) -> Iterator[dict[str, Any]]:
    """One dict per fragment, in arrival order, with its place among the tokens.

    ``t_ms`` is on the clock the stats name (``stats.trace_clock``; null where the
    fragment has no time on it); ``llm_t_ms`` and ``wire_t_ms`` are the two clocks
    by name, each null where it did not time the fragment.
    """
    positions = alignment.fragment_positions()
    clock = document_clock(trace)
    for f in trace.fragments:
        t_ms = _time_ms(f, clock)
        llm_t_ms = t_ms if clock == "llm" else None  # else llm's, once it was put aside
        row = {
            "index": f.index,
            "kind": f.kind,
            "tool_call_id": f.tool_call_id,
            "text": f.text,
            "t_ms": t_ms,
            "llm_t_ms": llm_t_ms if f.llm_t_ns is None else _ms(f.llm_t_ns),
            "wire_t_ms": None if f.wire_t_ns is None else _ms(f.wire_t_ns),
        }
        if f.index not in positions:  # not model output: not aligned
            yield row | dict.fromkeys(_TOKEN_FIELDS)
            continue
        stream, j = positions[f.index]
        placement = stream.placement(j)
        yield row | {
            "byte_start": placement.byte_start,
            "byte_end": stream.fragment_byte_ends[j],
            "token_start": placement.token_start,
            "token_end": placement.token_end,
            "starts_mid_token": placement.starts_mid_token,
            "ends_mid_token": placement.ends_mid_token,
        }


EXPORT_COLUMNS = ("trace_id", *FRAGMENT_COLUMNS)
"""The keys of an ``export_rows`` row: a fragment row, and the trace it belongs to."""


def export_rows(responses: list[tuple[Trace, Alignment, Stats]]) -> Iterator[dict[str, Any]]:
    """Every fragment of a run's responses, in run order, each with its trace id."""
    for trace, alignment, _ in responses:
        for row in fragment_rows(trace, alignment):
            yield {"trace_id": trace.id} | row


def _time_ms(fragment: Fragment, clock: str | None) -> float | None:
    t = time_ns(fragment, clock)
    return None if t is None else _ms(t)


def trace_document(trace: Trace, alignment: Alignment, stats: Stats) -> dict[str, Any]:
    """The ``--json`` document: the trace, its alignment and its stats, every time on
    the clock ``stats.clock`` names (a token's is its last fragment's)."""
    clock = document_clock(trace)
    return {
        "trace_id": trace.id,
        "turn_id": trace.turn_id,
        "run_id": trace.run_id,
        "run_index": trace.run_index,
        "run_offset_ms": None if trace.run_offset_ns is None else _ms(trace.run_offset_ns),
        "model": trace.model_id,
        "encoding": trace.encoding_name,
        "encoding_exact": trace.encoding_exact,
        "status": trace.status,
        "error": trace.error,
        "started_utc": trace.started_utc,
        "prompt": trace.prompt,
        "system": trace.system,
        "options": trace.options,
        "fragments": list(fragment_rows(trace, alignment)),
        "streams": [
            {
                "kind": s.kind,
                "tool_call_id": s.tool_call_id,
                "fragment_indices": [f.index for f in s.fragments],
                "tokens": [
                    {
                        "index": t.index,
                        "id": t.id,
                        "byte_start": t.byte_start,
                        "byte_end": t.byte_end,
                        "first_fragment": s.fragments[t.first_fragment].index,
                        "last_fragment": s.fragments[t.last_fragment].index,
                        "t_ms": _time_ms(s.fragments[t.last_fragment], clock),
                    }
                    for t in s.tokens()
                ],
            }
            for s in alignment.streams
        ],
        "stats": stats.to_dict(),
        "wire": wire_document(trace),
    }


EVENT_COLUMNS = (
    "index",
    "t_ms",
    "label",
    "carried",
    "event",
    "byte_start",
    "byte_end",
    "first_read",
    "last_read",
    "data",
)
"""The keys of a ``wire_event_rows`` row, in order."""


def wire_event_rows(trace: Trace) -> Iterator[dict[str, Any]]:
    """One dict per event on the wire, in order: what it carried, its bytes and reads."""
    if trace.wire is None:
        return
    decoded = trace.wire.decoded
    for e, label in zip(decoded.events, decoded.labels):
        yield {
            "index": e.index,
            "t_ms": None if e.t_ns is None else _ms(e.t_ns),
            "label": label,
            "carried": " ".join(decoded.carried(e.index)),
            "event": "comment" if e.comment else e.event or None,
            "byte_start": e.byte_start,
            "byte_end": e.byte_end,
            "first_read": e.first_read,
            "last_read": e.last_read,
            "data": e.data,
        }


EXPORT_EVENT_COLUMNS = ("trace_id", *EVENT_COLUMNS)


def export_event_rows(responses: list[tuple[Trace, Alignment, Stats]]) -> Iterator[dict[str, Any]]:
    """Every wire event of a run's responses, in run order, each with its trace id."""
    for trace, _, _ in responses:
        for row in wire_event_rows(trace):
            yield {"trace_id": trace.id} | row


def wire_document(trace: Trace) -> dict[str, Any] | None:
    """The ``wire`` key of the ``--json`` document: the response, its reads and events."""
    wire = trace.wire
    if wire is None:
        return None
    return {
        "source": wire.source,
        "format": wire.decoded.format,
        "framing": wire.decoded.framing,
        "url": wire.url,
        "status": wire.status,
        "headers": wire.headers,
        "headers_ms": None if wire.headers_ns is None else _ms(wire.headers_ns),
        "error": None if wire.decoded.error is None else str(wire.decoded.error),
        "reads": [
            {"t_ms": None if r.t_ns is None else _ms(r.t_ns), "bytes": len(r.data)}
            for r in wire.reads
        ],
        "events": list(wire_event_rows(trace)),
    }
