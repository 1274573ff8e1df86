"""One clock per document: which clock a trace's times count by, and every time on it.

A live run's fragments have llm's time (when llm handed each over) and, with
``--wire``, the wire's (when its bytes were read from the socket); an inspected
stream's have the arrival of their bytes, or the server's own times, or none.
``trace_clock`` chooses the clock (``Stats.clock``) and ``on_clock`` puts a
trace and its alignment on it, once, for every document made from them (views,
``--json``, export, HTML, SVG, timeline, whatif, compare); ``time_ns`` says what
a fragment's time is on it, None where the clock did not see it arrive.
"""

from __future__ import annotations

from dataclasses import replace

from .trace import Alignment, Fragment, Trace

ARRIVAL_SOURCES = ("stdin", "sidecar", "command")
"""Inspected sources (``Wire.source``) whose times are when their bytes arrived."""


def trace_clock(trace: Trace) -> str:
    """The clock a trace's times count by (``Stats.clock``): ``wire`` when every
    text chunk has a wire time, or for an inspected stream timed by its bytes'
    arrivals; ``server`` for one timed by the times its server wrote into it, else
    ``llm``. The one choice of clock: ``on_clock`` puts every time on it."""
    wire = trace.wire
    if trace.wire_timed or (trace.timed and wire is not None and wire.source in ARRIVAL_SOURCES):
        return "wire"
    if trace.timed and wire is not None and wire.source != "socket":
        return "server"
    return "llm"


def on_clock(trace: Trace, alignment: Alignment) -> tuple[Trace, Alignment]:
    """``trace`` and ``alignment`` with every fragment's ``t_ns`` on ``trace_clock``'s
    clock, so that every time shown from them is on the clock the stats name.

    Only a live run's trace on the wire's clock changes: its fragments take their
    wire times (llm's kept as ``llm_t_ns``). Any other's times are already on its
    clock. Doing it twice changes nothing.
    """
    if trace_clock(trace) != "wire" or (trace.wire is not None and trace.wire.source != "socket"):
        return trace, alignment
    if trace.fragments and trace.fragments[0].llm_t_ns is not None:
        return trace, alignment  # on it already: every fragment has llm's time put aside
    on_wire = trace.on_wire_clock()
    retimed = {f.index: f for f in on_wire.fragments}
    alignment = replace(
        alignment,
        streams=tuple(
            replace(s, fragments=tuple(retimed[f.index] for f in s.fragments))
            for s in alignment.streams
        ),
    )
    return on_wire, alignment


def document_clock(trace: Trace) -> str | None:
    """The clock of every time shown from ``trace`` (``trace_clock``), None when it
    carries no times (a plain captured file)."""
    return trace_clock(trace) if trace.timed else None


def time_ns(fragment: Fragment, clock: str | None) -> int | None:
    """``fragment``'s time on ``clock`` (its trace put on it by ``on_clock``), None when
    it has none there: no clock (an untimed trace), or on the wire's a fragment whose
    bytes were never seen arriving (an empty event, or bytes already waiting when
    inspect began reading).

    >>> time_ns(Fragment(0, "text", "Hi", 90, wire_t_ns=None), "wire") is None
    True
    >>> time_ns(Fragment(0, "text", "Hi", 90), "llm"), time_ns(Fragment(0, "text", "Hi", 0), None)
    (90, None)
    """
    if clock is None or (clock == "wire" and fragment.wire_t_ns is None):
        return None
    return fragment.t_ns
