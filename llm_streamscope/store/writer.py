"""Aligned traces in llm's own logs.db, beside llm's record of the same response.

Two tables, created by ``sqlite_utils.Migrations("llm_streamscope")`` after llm's
own migrations: ``streamscope_traces`` (one row per streamed response, headline
stats as plain columns so SQL and Datasette can sort and chart them) and
``streamscope_fragments`` (one row per streamed fragment, with its arrival time
and its place among the tokens, a ``Placement``). ``streamscope_traces.turn_id``
is llm's ``turns.id`` for the same response; ``run_id`` groups the traces of one
run (a tool chain streams several responses), ``run_index`` orders them.

A ``TraceWriter`` keeps a trace durable while it streams: the trace row goes in
before the request, marked ``interrupted`` until the run says otherwise, and the
fragments follow in batches from a background thread with its own connection, at
most ``FLUSH_INTERVAL_S`` apart. The capture loop only appends to a list.

Write transactions use ``BEGIN IMMEDIATE`` and a generous busy timeout, so many
runs can share one logs.db in its default (rollback journal) mode without
"database is locked" errors; the journal mode is llm's to choose and is left alone.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import count, islice
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import sqlite_utils

from ..analysis.numbers import finite_json
from ..analysis.trace import (
    PLACEMENT_FIELDS,
    STATUS_INTERRUPTED,
    Alignment,
    Fragment,
    Placement,
    Trace,
    clean_text,
    is_clean,
    one_line,
)
from .redaction import redact
from .schema import FRAGMENTS, TRACES, WIRE, WIRE_EVENTS, WIRE_READS, migrations

if TYPE_CHECKING:
    from ..analysis.stats import Stats
    from ..analysis.trace import Arrivals

FLUSH_INTERVAL_S = 0.5
BUSY_TIMEOUT_S = 60.0
UNFINISHED = "process ended before the stream finished"

class StoreError(Exception):
    """A database problem, with a one-line message fit for the user."""


class DatabaseBusy(StoreError):
    """Another connection held the database's lock for longer than the writer would wait."""


def logs_db_path() -> pathlib.Path:
    from llm.cli import logs_db_path as llm_logs_db_path

    return pathlib.Path(llm_logs_db_path())


def connect(path: pathlib.Path | str, timeout: float = BUSY_TIMEOUT_S) -> sqlite_utils.Database:
    """Open a database, checking that it is SQLite at all.

    A database that stays locked longer than ``timeout`` seconds raises sqlite3's
    own OperationalError (see ``is_busy``); any other failure, StoreError.
    """
    try:
        conn = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False)
        conn.execute("select count(*) from sqlite_master").fetchone()
    except sqlite3.DatabaseError as ex:
        if is_busy(ex):
            raise
        raise StoreError(f"Cannot use {path}: {one_line(ex)}") from None
    return sqlite_utils.Database(conn)


def is_busy(ex: BaseException) -> bool:
    """Whether a sqlite3 error means another connection holds a lock (SQLITE_BUSY)."""
    return isinstance(ex, sqlite3.OperationalError) and "locked" in str(ex)


@contextmanager
def write_transaction(db: sqlite_utils.Database) -> Iterator[None]:
    """BEGIN IMMEDIATE: take the write lock up front, so no two writers deadlock."""
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.conn.execute("COMMIT")  # a COMMIT that fails (busy) must not leave it open
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise


def migrate(db: sqlite_utils.Database) -> None:
    """llm's migrations, then ours: idempotent, and safe when runs start at once."""
    from llm.migrations import migrate as llm_migrate

    if not _needs_migrating(db):
        return  # take no write lock: read-only databases stay readable
    with write_transaction(db):
        llm_migrate(db)
        migrations.apply(db)


def prepare(path: pathlib.Path | str) -> None:
    """Create and migrate a log database before ``llm prompt`` opens it.

    llm migrates it too, but outside a transaction: runs that start together on a
    new database would each try to create llm's tables, and all but one fail.
    """
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = connect(path)
    try:
        migrate(db)
    finally:
        db.close()


def _needs_migrating(db: sqlite_utils.Database) -> bool:
    from llm.migrations import MIGRATIONS

    if migrations.pending(db) or not db["_llm_migrations"].exists():
        return True
    applied = {row["name"] for row in db["_llm_migrations"].rows}
    return any(fn.__name__ not in applied for fn in MIGRATIONS)


def _trace_row(trace: Trace) -> dict[str, Any]:
    import tiktoken

    return {
        "id": trace.id,
        "turn_id": trace.turn_id,
        "model": trace.model_id,
        "encoding": trace.encoding_name,
        "encoding_exact": int(trace.encoding_exact),
        "tiktoken_version": getattr(tiktoken, "__version__", None),
        "prompt": trace.prompt,
        "system": trace.system,
        "options_json": finite_json(trace.options, default=str),
        "started_utc": trace.started_utc,
        "status": trace.status,
        "error": redact(trace.error),  # a provider's error can echo the key it was sent
        "setup_ns": trace.setup_ns,
        "end_ns": trace.end_ns,
        "usage_input": trace.usage_input,
        "usage_output": trace.usage_output,
        "usage_json": None if trace.usage_details is None else finite_json(trace.usage_details),
        # A trace without a run is a run of its own.
        "run_id": trace.run_id or trace.id,
        "run_index": trace.run_index,
        "run_offset_ns": 0 if trace.run_id is None else trace.run_offset_ns,
        "timed": int(trace.timed),
        # Which process writes the trace: while it lives, an unfinished trace is running.
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }


def _stats_columns(stats: Stats) -> dict[str, Any]:
    return {
        "ttft_ms": stats.ttft_ms,
        "total_ms": stats.total_ms,
        "chunks": stats.chunks,
        "tokens": stats.tokens,
        "tokens_per_s": stats.tokens_per_s,
        "gap_p99_ms": stats.gap_ms.p99,
        "stalls": stats.stalls,
        "stall_threshold_ms": stats.stall_threshold_ms,
        "stats_json": finite_json(stats.to_dict()),
    }


_COLUMNS = ("idx", "kind", "tool_call_id", "t_ns", "text", *PLACEMENT_FIELDS, "wire_t_ns")
# One statement per batch: SQLite unpacks the rows from one JSON array. With
# executemany the sqlite3 module hands the GIL back and forth once per row, and
# each hand-off can stall the thread that is timestamping the stream.
_INSERT_FRAGMENTS = (
    f"insert or replace into {FRAGMENTS} (trace_id, {', '.join(_COLUMNS)}) select :trace_id, "
    + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(_COLUMNS)))
    + " from json_each(:rows)"
)
_placement_values = attrgetter(*PLACEMENT_FIELDS)


_SET_TEXT = f"update {FRAGMENTS} set text = ? where trace_id = ? and idx = ?"


def _insert_fragments(db: sqlite_utils.Database, trace_id: str, rows: Iterable[list]) -> None:
    # In batches, so that a long stream's rows are never all in memory as JSON at once.
    for batch in batched(rows, 10_000):
        _insert_json_rows(db, trace_id, _json(batch), ((row[0], row[4]) for row in batch))


def _insert_json_rows(
    db: sqlite_utils.Database,
    trace_id: str,
    rows: str,
    texts: Iterable[tuple[int, str]],
) -> None:
    """Insert fragment rows given as JSON text; ``texts`` (lazy) gives each row's index
    and text.

    SQLite's JSON functions end a string at a NUL (``"ab\\u0000cd"`` reads as
    ``"ab"``): a text that holds one is written again, as a bound parameter, which
    keeps every character. The search costs one pass over the JSON text, in C.
    """
    db.conn.execute(_INSERT_FRAGMENTS, {"trace_id": trace_id, "rows": rows})
    if "\\u0000" in rows:
        db.conn.executemany(
            _SET_TEXT, [(text, trace_id, idx) for idx, text in texts if "\0" in text]
        )


def _json(rows: list[list]) -> str:
    """Rows as one JSON array, characters unescaped (shorter, and faster to write and
    for SQLite to read than ``\\u`` escapes)."""
    return json.dumps(rows, ensure_ascii=False)


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _json_rows(start: int, events: list[Any], times: list[int]) -> str:
    """Rows for fragments as they stream (llm's events and their times), as JSON text.

    A lone surrogate (half an emoji, sent as a JSON escape) has no UTF-8 form:
    SQLite would store bytes no one can read, so such text is stored as
    ``clean_text`` gives it, as the finished trace has it.
    """
    rows = _json(
        [[i, e.type, e.tool_call_id, t, e.chunk] for i, e, t in zip(count(start), events, times)]
    )
    if is_clean(rows):
        return rows
    return _json(
        [
            [i, e.type, e.tool_call_id, t, clean_text(e.chunk)]
            for i, e, t in zip(count(start), events, times)
        ]
    )


def _fragment_rows(fragments: list[Fragment] | tuple[Fragment, ...]) -> list[list]:
    """Rows for fragments whose place among the tokens is not known yet."""
    unplaced = [None] * len(PLACEMENT_FIELDS)
    return [
        [f.index, f.kind, f.tool_call_id, f.t_ns, f.text, *unplaced, f.wire_t_ns] for f in fragments
    ]


def _placed(alignment: Alignment) -> Iterator[tuple[Fragment, Placement]]:
    """Every aligned fragment with its placement, stream by stream."""
    for s in alignment.streams:
        yield from zip(s.fragments, s.placements())


def _aligned_rows(alignment: Alignment) -> Iterator[list]:
    """Complete rows: every fragment with its place among its stream's tokens."""
    for f, placement in _placed(alignment):
        yield [
            f.index,
            f.kind,
            f.tool_call_id,
            f.t_ns,
            f.text,
            *_placement_values(placement),
            f.wire_t_ns,
        ]


def _insert_wire(db: sqlite_utils.Database, trace: Trace) -> None:
    """The trace's wire record: the response, its reads and its events."""
    wire = trace.wire
    if wire is None:
        return
    decoded = wire.decoded
    db[WIRE].insert(  # type: ignore[union-attr]
        {
            "trace_id": trace.id,
            "source": wire.source,
            "format": decoded.format,
            "framing": decoded.framing,
            "url": wire.url,
            "status": wire.status,
            "headers_json": finite_json(wire.headers),
            "headers_ns": wire.headers_ns,
            "body_bytes": decoded.body_bytes,
            "wire_bytes": wire.wire_bytes,
            "error": None if decoded.error is None else redact(str(decoded.error)),
        },
        replace=True,
    )
    db.conn.executemany(
        f"insert or replace into {WIRE_READS} (trace_id, idx, t_ns, data) values (?, ?, ?, ?)",
        [(trace.id, i, r.t_ns, r.data) for i, r in enumerate(wire.reads)],
    )
    db.conn.executemany(
        f"insert or replace into {WIRE_EVENTS} (trace_id, idx, t_ns, byte_start, byte_end, "
        "first_read, last_read, event, label) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                trace.id,
                e.index,
                e.t_ns,
                e.byte_start,
                e.byte_end,
                e.first_read,
                e.last_read,
                "comment" if e.comment else e.event or None,
                label,
            )
            for e, label in zip(decoded.events, decoded.labels)
        ],
    )


class TraceWriter:
    """Makes one trace durable while it streams.

    ``open()`` migrates and inserts the trace row (status ``interrupted`` until the
    run finishes, so a crash leaves an honest record). A daemon thread then writes
    what the capture has appended to ``arrivals`` at most every ``FLUSH_INTERVAL_S``:
    the capture loop itself does nothing for the writer. ``stop()`` ends those
    background writes (the next request of a chain streams undisturbed); ``finish``
    writes the rest, the final status, the headline stats and the token ranges, in
    one transaction. llm's own record of the response is llm's to write.

    The database never delays the request: if another connection holds its lock
    when ``open()`` runs, ``busy`` is set (for the caller to say so), the stream
    goes ahead with its fragments kept in memory, and the thread writes the trace
    row and the fragments once the lock frees. The thread does nothing at all until
    the first event has arrived (``arrivals.flowing``).

    Any other database failure is kept in ``error`` and stops further writes; the
    run carries on and reports it at the end.
    """

    def __init__(self, path: pathlib.Path | str, arrivals: Arrivals):
        self.path = pathlib.Path(path)
        self.arrivals = arrivals
        self.error: str | None = None
        self.warning: str | None = None
        """Something the run should say about the trace that did not stop it."""
        self.busy = False
        """The database was locked by another connection when the run started."""
        self._written = 0
        self._trace_id: str | None = None
        self._unwritten_row: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one flush at a time

    def open(self, trace: Trace, *, defer: bool = False) -> None:
        """Prepare the database and insert the trace row. Call before the request.

        With ``defer``, the row goes in from the background thread, once the stream
        flows: for a chain's later responses, whose time since the previous one is
        the chain's own (the tools running), not the database's.
        """
        row = _trace_row(trace) | {"status": STATUS_INTERRUPTED, "error": UNFINISHED}
        if defer:
            self._unwritten_row = row
            self._start(trace)
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._insert_trace_row(row, timeout=0)  # never wait for a lock here
        except sqlite3.OperationalError as ex:
            if not is_busy(ex):
                self.error = self._describe(ex)
                return
            self.busy = True
            self._unwritten_row = row
        except (StoreError, sqlite3.Error, OSError) as ex:
            self.error = self._describe(ex)
            return
        self._start(trace)

    def _start(self, trace: Trace) -> None:
        self._trace_id = trace.id
        self._thread = threading.Thread(target=self._run, name="streamscope-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the background writes once the stream is over; ``finish`` writes the rest.

        Returns once the thread has ended, so that nothing of this trace's runs
        while a chain's next request is in flight. Quick: the thread never waits
        long on a lock (see ``_run``).
        """
        self._stop.set()
        self.arrivals.flowing.set()  # the stream is over, flowed or not
        if self._thread is not None:
            self._thread.join()

    def _insert_trace_row(self, row: dict[str, Any], timeout: float) -> None:
        db = connect(self.path, timeout)
        try:
            migrate(db)
            with write_transaction(db):
                db[TRACES].insert(row)  # type: ignore[union-attr]
        finally:
            db.close()

    def _describe(self, ex: BaseException) -> str:
        if isinstance(ex, StoreError):
            return str(ex)
        return f"{self.path}: {one_line(ex)}"

    def _run(self) -> None:
        db = None
        try:
            self.arrivals.flowing.wait()
            # Nothing right after the first event either: the client is reading the
            # second one. The first write, and any connecting, waits a flush interval.
            # Never waiting on a lock (timeout 0): busy, the next interval tries again,
            # and stop() never waits for a lock either.
            while not self._stop.wait(FLUSH_INTERVAL_S):
                try:
                    if self._unwritten_row is not None:  # deferred, or the database was busy
                        self._insert_trace_row(self._unwritten_row, timeout=0)
                        self._unwritten_row = None
                    if db is None:
                        db = connect(self.path, timeout=0)
                    self._flush(db)
                except sqlite3.OperationalError as ex:
                    if not is_busy(ex):
                        raise
        except (StoreError, sqlite3.Error, OSError) as ex:
            self.error = self.error or self._describe(ex)
        finally:
            if db is not None:
                db.close()

    def _flush(self, db: sqlite_utils.Database) -> None:
        with self._lock:
            if self.error is not None or self._trace_id is None:
                return
            # Times are appended after events: up to len(times) both are there.
            events, times = self.arrivals.events, self.arrivals.times
            start, end = self._written, len(times)
            if end == start:
                return
            rows = _json_rows(start, events[start:end], times[start:end])
            with write_transaction(db):
                texts = ((i, clean_text(e.chunk)) for i, e in enumerate(events[start:end], start))
                _insert_json_rows(db, self._trace_id, rows, texts)
            self._written = end

    def _log_llm_record(self, db: sqlite_utils.Database, response: Any) -> str | None:
        """llm's own record, exactly as llm writes it; None (and a warning) if llm fails.

        In a savepoint: a failure inside llm (it cannot hash text holding a lone
        surrogate, for one) must not take the trace down with it.
        """
        try:
            with db.atomic():
                response.log_to_db(db)
        except Exception as ex:
            self.warning = f"llm could not log the response itself: {one_line(ex)}"
            return None
        return str(response.id)

    def finish(
        self,
        trace: Trace,
        alignment: Alignment | None,
        stats: Stats | None,
        response: Any = None,
        *,
        timeout: float = BUSY_TIMEOUT_S,
    ) -> str | None:
        """Write everything that is left. Returns llm's turn id (or ``trace.turn_id``).

        ``response`` (llm's, for a complete stream) is logged as llm logs it, in the
        same transaction: llm's own logging reads, then writes, in a deferred
        transaction, which SQLite refuses at once when another writer (a trace,
        another run) commits in between. The alignment and stats are missing only
        when the encoding failed to load. Raises StoreError when the trace could
        not be saved: DatabaseBusy when another connection held the lock for
        ``timeout`` seconds (nothing is written then; call again to retry).
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.error is not None or self._trace_id is None:
            raise StoreError(self.error or "the trace was never started")
        db = None
        try:
            if self._unwritten_row is not None:  # the database was busy all along
                self._insert_trace_row(self._unwritten_row, timeout)
                self._unwritten_row = None
            db = connect(self.path, timeout)
            with write_transaction(db):
                unwritten = trace.fragments[self._written :]
                if alignment is not None:  # every aligned row again, now with its tokens
                    _insert_fragments(db, trace.id, _aligned_rows(alignment))
                    unwritten = tuple(f for f in unwritten if not f.is_model_output)
                # What the thread has not written and the alignment does not cover:
                # kinds that are not model output, or everything without an encoding.
                _insert_fragments(db, trace.id, _fragment_rows(unwritten))
                _insert_wire(db, trace)
                turn_id = trace.turn_id
                if response is not None:
                    turn_id = self._log_llm_record(db, response)
                row = _trace_row(trace) | {"turn_id": turn_id}
                if stats is not None:
                    row |= _stats_columns(stats)
                db[TRACES].update(trace.id, row)  # type: ignore[union-attr]
            return turn_id
        except sqlite3.OperationalError as ex:
            if is_busy(ex):
                raise DatabaseBusy(self._describe(ex)) from None
            raise StoreError(self._describe(ex)) from None
        except (StoreError, sqlite3.Error, OSError) as ex:
            raise StoreError(self._describe(ex)) from None
        finally:
            if db is not None:
                db.close()


# ====================
# Reading (see ``stored`` for every read of a stored value)
# ====================


def alignment_matches(stored: dict[int, Placement], alignment: Alignment) -> bool:
    """Whether a recomputed alignment places every fragment where the stored one did."""
    return stored == {f.index: placement for f, placement in _placed(alignment)}
