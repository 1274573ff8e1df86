"""The streamscope tables in llm's logs.db: their names, and the migrations that make them.

``sqlite_utils.Migrations("llm_streamscope")`` runs after llm's own migrations
(``writer.migrate``): ``streamscope_traces`` (one row per streamed response,
headline stats as plain columns so SQL and Datasette can sort and chart them),
``streamscope_fragments`` (one row per streamed fragment, with its arrival time
and its place among the tokens), and the wire's tables (``--wire``).
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils import Migrations

TRACES = "streamscope_traces"
FRAGMENTS = "streamscope_fragments"
WIRE = "streamscope_wire"
WIRE_READS = "streamscope_wire_reads"
WIRE_EVENTS = "streamscope_wire_events"

migrations = Migrations("llm_streamscope")


@migrations()
def m001_traces_and_fragments(db: sqlite_utils.Database) -> None:
    db[TRACES].create(  # type: ignore[union-attr]
        {
            "id": str,
            "turn_id": str,
            "model": str,
            "encoding": str,
            "encoding_exact": int,
            "tiktoken_version": str,
            "prompt": str,
            "system": str,
            "options_json": str,
            "started_utc": str,
            "status": str,
            "error": str,
            "setup_ns": int,
            "end_ns": int,
            "usage_input": int,
            "usage_output": int,
            "ttft_ms": float,
            "total_ms": float,
            "chunks": int,
            "tokens": int,
            "tokens_per_s": float,
            "gap_p99_ms": float,
            "stalls": int,
            "stall_threshold_ms": float,
            "stats_json": str,
        },
        pk="id",
        not_null={"model", "encoding", "started_utc", "status"},
    )
    db[TRACES].create_index(["started_utc"])  # type: ignore[union-attr]
    db[TRACES].create_index(["turn_id"])  # type: ignore[union-attr]
    db[FRAGMENTS].create(  # type: ignore[union-attr]
        {
            "trace_id": str,
            "idx": int,
            "kind": str,
            "tool_call_id": str,
            "t_ns": int,
            "text": str,
            "byte_start": int,
            "token_start": int,
            "token_end": int,
            "starts_mid_token": int,
            "ends_mid_token": int,
        },
        pk=("trace_id", "idx"),
        foreign_keys=[("trace_id", TRACES, "id")],
        not_null={"kind", "t_ns", "text"},
    )


@migrations()
def m002_liveness_usage_and_aiperf_rate(db: sqlite_utils.Database) -> None:
    """``pid``/``host``: which process writes a trace, so an unfinished one whose
    process is alive shows as running. ``usage_json``: the provider's usage details
    (reasoning tokens, ...) as llm exposes them. ``tokens_per_s`` becomes AIPerf's
    output token throughput per user, (tokens - 1) / (last - first text chunk):
    recomputed here for the rows stored before, from their own fragments."""
    traces = db[TRACES]
    traces.add_column("pid", int)  # type: ignore[union-attr]
    traces.add_column("host", str)  # type: ignore[union-attr]
    traces.add_column("usage_json", str)  # type: ignore[union-attr]
    db.execute(
        f"""update {TRACES} set tokens_per_s = (
            select case when {TRACES}.tokens >= 2 and max(f.t_ns) > min(f.t_ns)
                then ({TRACES}.tokens - 1) * 1e9 / (max(f.t_ns) - min(f.t_ns)) end
            from {FRAGMENTS} f
            where f.trace_id = {TRACES}.id and f.kind = 'text' and f.text != ''
        )"""
    )


@migrations()
def m003_runs(db: sqlite_utils.Database) -> None:
    """A run can stream several responses (a tool chain), each its own trace:
    ``run_id`` groups them, ``run_index`` orders them (from 0) and ``run_offset_ns``
    is a trace's time origin minus the run's first trace's, on the same clock.
    Every trace stored before is a run of its own."""
    traces = db[TRACES]
    traces.add_column("run_id", str)  # type: ignore[union-attr]
    traces.add_column("run_index", int)  # type: ignore[union-attr]
    traces.add_column("run_offset_ns", int)  # type: ignore[union-attr]
    db.execute(f"update {TRACES} set run_id = id, run_index = 0, run_offset_ns = 0")
    traces.create_index(["run_id"])  # type: ignore[union-attr]


@migrations()
def m004_wire(db: sqlite_utils.Database) -> None:
    """What the wire showed (``--wire``, ``inspect --log``): per trace, the response
    (``streamscope_wire``: URL without its query string, status, allow-listed
    headers), every body read with its bytes (``streamscope_wire_reads``) and every
    provider event (``streamscope_wire_events``, what it carried in ``label``); per
    fragment, ``wire_t_ns``, when the bytes that delivered it arrived."""
    db[FRAGMENTS].add_column("wire_t_ns", int)  # type: ignore[union-attr]
    db[WIRE].create(  # type: ignore[union-attr]
        {
            "trace_id": str,
            "source": str,
            "format": str,
            "framing": str,
            "url": str,
            "status": int,
            "headers_json": str,
            "headers_ns": int,
            "body_bytes": int,
            "wire_bytes": int,
            "error": str,
        },
        pk="trace_id",
        foreign_keys=[("trace_id", TRACES, "id")],
    )
    db[WIRE_READS].create(  # type: ignore[union-attr]
        {"trace_id": str, "idx": int, "t_ns": int, "data": bytes},
        pk=("trace_id", "idx"),
        foreign_keys=[("trace_id", TRACES, "id")],
    )
    db[WIRE_EVENTS].create(  # type: ignore[union-attr]
        {
            "trace_id": str,
            "idx": int,
            "t_ns": int,
            "byte_start": int,
            "byte_end": int,
            "first_read": int,
            "last_read": int,
            "event": str,
            "label": str,
        },
        pk=("trace_id", "idx"),
        foreign_keys=[("trace_id", TRACES, "id")],
    )


@migrations()
def m005_untimed_traces(db: sqlite_utils.Database) -> None:
    """``timed``: 0 for a trace read from a file that carries no times (``inspect``),
    whose fragment times are all 0. Every trace stored before was timed."""
    db[TRACES].add_column("timed", int, not_null_default=1)  # type: ignore[union-attr]
