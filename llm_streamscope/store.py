"""Aligned traces in llm's own logs.db, beside llm's record of the same response.

Two tables, created by ``sqlite_utils.Migrations("llm_streamscope")`` after llm's
own migrations: ``streamscope_traces`` (one row per run, headline stats as plain
columns so SQL and Datasette can sort and chart runs) and
``streamscope_fragments`` (one row per streamed fragment, with its arrival time
and its place among the tokens). ``streamscope_traces.turn_id`` is llm's
``turns.id`` for the same response.

A ``TraceWriter`` keeps a run durable while it streams: the trace row goes in
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
from typing import TYPE_CHECKING, Any

import sqlite_utils
from sqlite_utils import Migrations

from .trace import (
    KINDS,
    STATUS_INTERRUPTED,
    STATUS_RUNNING,
    Alignment,
    Fragment,
    Trace,
    clean_text,
    one_line,
)

if TYPE_CHECKING:
    from .stats import Stats
    from .trace import Arrivals

TRACES = "streamscope_traces"
FRAGMENTS = "streamscope_fragments"
FLUSH_INTERVAL_S = 0.5
BUSY_TIMEOUT_S = 60.0
UNFINISHED = "process ended before the stream finished"

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


class StoreError(Exception):
    """A database problem, with a one-line message fit for the user."""


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


def open_for_reading(
    path: pathlib.Path | str, *, need_traces: bool = True
) -> sqlite_utils.Database:
    """Open an existing database; with ``need_traces``, one that has the trace tables.

    A missing file is an error, as for ``llm logs``; a database that streamscope
    has not written to yet holds no traces (``recent_traces`` lists none).
    """
    if not pathlib.Path(path).exists():
        raise StoreError(f"No log database found at {path}")
    db = connect(path)
    if need_traces and not db[TRACES].exists():
        raise StoreError(f"{path} holds no streamscope traces")
    return db


@contextmanager
def write_transaction(db: sqlite_utils.Database) -> Iterator[None]:
    """BEGIN IMMEDIATE: take the write lock up front, so no two writers deadlock."""
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    db.conn.execute("COMMIT")


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
        "options_json": json.dumps(trace.options, default=str),
        "started_utc": trace.started_utc,
        "status": trace.status,
        "error": trace.error,
        "setup_ns": trace.setup_ns,
        "end_ns": trace.end_ns,
        "usage_input": trace.usage_input,
        "usage_output": trace.usage_output,
        "usage_json": None if trace.usage_details is None else json.dumps(trace.usage_details),
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
        "stats_json": json.dumps(stats.to_dict()),
    }


_COLUMNS = (
    "idx, kind, tool_call_id, t_ns, text, "
    "byte_start, token_start, token_end, starts_mid_token, ends_mid_token"
)
# One statement per batch: SQLite unpacks the rows from one JSON array. With
# executemany the sqlite3 module hands the GIL back and forth once per row, and
# each hand-off can stall the thread that is timestamping the stream.
_INSERT_FRAGMENTS = (
    f"insert or replace into {FRAGMENTS} (trace_id, {_COLUMNS}) select :trace_id, "
    + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(10))
    + " from json_each(:rows)"
)


def _insert_fragments(db: sqlite_utils.Database, trace_id: str, rows: Iterable[list]) -> None:
    # In batches, so that a long stream's rows are never all in memory as JSON at once.
    for batch in batched(rows, 10_000):
        db.conn.execute(_INSERT_FRAGMENTS, {"trace_id": trace_id, "rows": json.dumps(batch)})


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _json_rows(start: int, events: list[Any], times: list[int]) -> str:
    """Rows for fragments as they stream, as one JSON array written as text.

    Built from strings alone: a list per row would be a container allocation per
    fragment, and those trigger garbage collections that walk llm's whole heap
    while the stream is still arriving.
    """
    dumps = json.dumps
    kinds = {kind: dumps(kind) for kind in KINDS}
    rows = ",".join(
        f"[{i},{kinds.get(e.type) or dumps(e.type)},"
        f"{'null' if e.tool_call_id is None else dumps(e.tool_call_id)},{t},{dumps(e.chunk)}]"
        for i, e, t in zip(count(start), events, times)
    )
    if "\\ud" in rows:  # maybe a lone surrogate: SQLite would store bytes no one can read
        rows = ",".join(
            f"[{i},{dumps(e.type)},{dumps(e.tool_call_id)},{t},{dumps(clean_text(e.chunk))}]"
            for i, e, t in zip(count(start), events, times)
        )
    return f"[{rows}]"


def _fragment_rows(fragments: list[Fragment] | tuple[Fragment, ...]) -> list[list]:
    """Rows for fragments whose place among the tokens is not known yet."""
    return [[f.index, f.kind, f.tool_call_id, f.t_ns, f.text] for f in fragments]


def _aligned_rows(alignment: Alignment) -> Iterator[list]:
    """Complete rows: every fragment with its place among its stream's tokens."""
    for s in alignment.streams:
        for j, f in enumerate(s.fragments):
            yield [
                f.index,
                f.kind,
                f.tool_call_id,
                f.t_ns,
                f.text,
                s.fragment_byte_start(j),
                s.fragment_token_start[j],
                s.fragment_token_end[j],
                int(s.fragment_starts_mid_token[j]),
                int(s.fragment_ends_mid_token[j]),
            ]


class TraceWriter:
    """Makes one run durable while it streams.

    ``open()`` migrates and inserts the trace row (status ``interrupted`` until the
    run finishes, so a crash leaves an honest record). A daemon thread then writes
    what the capture has appended to ``arrivals`` at most every ``FLUSH_INTERVAL_S``:
    the capture loop itself does nothing for the writer. ``finish`` writes the rest,
    the final status, the headline stats, the token ranges and llm's own record, in
    one transaction.

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
        self.busy = False
        """The database was locked by another connection when the run started."""
        self._written = 0
        self._trace_id: str | None = None
        self._unwritten_row: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one flush at a time

    def open(self, trace: Trace) -> None:
        """Prepare the database and insert the trace row. Call before the request."""
        row = _trace_row(trace) | {"status": STATUS_INTERRUPTED, "error": UNFINISHED}
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
        self._trace_id = trace.id
        self._thread = threading.Thread(target=self._run, name="streamscope-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the background writes once the stream is over; ``finish`` writes the rest.

        Returns once the thread has ended: llm logs its own record next, and a write
        of ours committing beside llm's read-then-write transaction would make
        SQLite refuse one of the two at once (its deadlock rule). Quick: the thread
        never waits long on a lock (see ``_run``).
        """
        self._stop.set()
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
            while not self._stop.wait(FLUSH_INTERVAL_S):
                if self._unwritten_row is not None:  # the database was busy: try again
                    try:
                        self._insert_trace_row(self._unwritten_row, timeout=0)
                    except sqlite3.OperationalError as ex:
                        if is_busy(ex):
                            continue
                        raise
                    self._unwritten_row = None
                if db is None:
                    db = connect(self.path, timeout=0)
                try:
                    self._flush(db)
                except sqlite3.OperationalError as ex:
                    if not is_busy(ex):
                        raise  # busy: the next interval tries again
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
                db.conn.execute(_INSERT_FRAGMENTS, {"trace_id": self._trace_id, "rows": rows})
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
    ) -> str | None:
        """Write everything that is left. Returns llm's turn id, or None.

        ``response`` (llm's, for a complete stream) is logged as llm logs it; the
        alignment and stats are missing only when the encoding failed to load.
        Raises StoreError when the trace could not be saved.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.error is not None or self._trace_id is None:
            raise StoreError(self.error or "the trace was never started")
        db = None
        try:
            if self._unwritten_row is not None:  # the database was busy all along
                self._insert_trace_row(self._unwritten_row, BUSY_TIMEOUT_S)
            db = connect(self.path)
            with write_transaction(db):
                unwritten = trace.fragments[self._written :]
                if alignment is not None:  # every aligned row again, now with its tokens
                    _insert_fragments(db, trace.id, _aligned_rows(alignment))
                    unwritten = tuple(f for f in unwritten if not f.is_model_output)
                # What the thread has not written and the alignment does not cover:
                # kinds that are not model output, or everything without an encoding.
                _insert_fragments(db, trace.id, _fragment_rows(unwritten))
                turn_id = None
                if response is not None:
                    turn_id = self._log_llm_record(db, response)
                row = _trace_row(trace) | {"turn_id": turn_id}
                if stats is not None:
                    row |= _stats_columns(stats)
                db[TRACES].update(trace.id, row)  # type: ignore[union-attr]
            return turn_id
        except (StoreError, sqlite3.Error, OSError) as ex:
            raise StoreError(self._describe(ex)) from None
        finally:
            if db is not None:
                db.close()


# ====================
# Reading
# ====================


JSON_COLUMNS = {"options_json": "options", "stats_json": "stats"}
"""Trace columns that hold a JSON object as text, and the key their value takes."""


def json_column(row: dict[str, Any], column: str) -> tuple[dict | None, str | None]:
    """The object a trace row keeps as JSON text in ``column``, and what is wrong with it.

    A damaged value must not make the trace unreadable: it reads as None, with a
    one-line problem naming the trace and the column.

    >>> json_column({"id": "01k", "options_json": '{"seed": 7}'}, "options_json")
    ({'seed': 7}, None)
    >>> json_column({"id": "01k", "options_json": "{seed"}, "options_json")
    (None, 'trace 01k: options_json is not valid JSON; read as empty')
    """
    text = row.get(column)
    if text is None:
        return None, None
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None, f"trace {row['id']}: {column} is not valid JSON; read as empty"
    if value is not None and not isinstance(value, dict):
        return None, f"trace {row['id']}: {column} is not a JSON object; read as empty"
    return value, None


def decode_json_columns(row: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A trace row with its JSON columns decoded (``options_json`` becomes ``options``,
    ``stats_json`` becomes ``stats``), and a line for each column that could not be."""
    decoded = {k: v for k, v in row.items() if k not in JSON_COLUMNS}
    problems = []
    for column, key in JSON_COLUMNS.items():
        decoded[key], problem = json_column(row, column)
        if problem:
            problems.append(problem)
    decoded["options"] = decoded["options"] or {}
    return decoded, problems


def find_trace_id(db: sqlite_utils.Database, ident: str | None, latest: bool = False) -> str:
    """A trace id from a trace id, llm's turn id, or the latest trace."""
    if latest:
        rows = list(db.query(f"select id from {TRACES} order by started_utc desc, id desc limit 1"))
        if not rows:
            raise StoreError("No streamscope traces logged yet")
        return rows[0]["id"]
    if not ident:
        raise StoreError("Give a trace id (or llm's response id), or use --latest")
    rows = list(
        db.query(
            f"select id from {TRACES} where id = :i or turn_id = :i order by id = :i desc limit 1",
            {"i": ident.lower()},
        )
    )
    if not rows:
        raise StoreError(f"No trace with id {ident}")
    return rows[0]["id"]


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False  # os.kill(0, ...) would signal a whole process group
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True  # it exists, as another user's process
    except OSError:
        return False
    return True


def with_live_status(row: dict[str, Any]) -> dict[str, Any]:
    """A trace row as it stands now: ``running`` while its run is still streaming.

    Until a run finishes, its row says ``interrupted`` with the error ``UNFINISHED``,
    which is what it will stay if its process dies. While that process (``pid`` on
    ``host``, this machine) is alive, the trace is reported as running instead.
    (A process id reused after the run died would read as running too.)
    """
    if (
        row["status"] == STATUS_INTERRUPTED
        and row["error"] == UNFINISHED
        and row.get("host") == socket.gethostname()
        and row.get("pid") is not None
        and _process_alive(row["pid"])
    ):
        return row | {"status": STATUS_RUNNING, "error": None}
    return row


def load_trace(db: sqlite_utils.Database, trace_id: str) -> tuple[Trace, dict[str, Any]]:
    """The stored trace, and its row (with the stored headline stats)."""
    row = with_live_status(db[TRACES].get(trace_id))  # type: ignore[union-attr]
    fragments = tuple(
        Fragment(r["idx"], r["kind"], r["text"], r["t_ns"], r["tool_call_id"])
        for r in db.query(
            f"select idx, kind, text, t_ns, tool_call_id from {FRAGMENTS} "
            "where trace_id = ? order by idx",
            [trace_id],
        )
    )
    trace = Trace(
        id=row["id"],
        model_id=row["model"],
        encoding_name=row["encoding"],
        encoding_exact=bool(row["encoding_exact"]),
        prompt=row["prompt"],
        system=row["system"],
        started_utc=row["started_utc"],
        fragments=fragments,
        status=row["status"],
        error=row["error"],
        setup_ns=row["setup_ns"],
        end_ns=row["end_ns"],
        usage_input=row["usage_input"],
        usage_output=row["usage_output"],
        turn_id=row["turn_id"],
        options=json_column(row, "options_json")[0] or {},
        usage_details=json_column(row, "usage_json")[0],
    )
    return trace, row


def stored_alignment_rows(db: sqlite_utils.Database, trace_id: str) -> dict[int, tuple]:
    """What was stored of each model-output fragment's alignment, by fragment index."""
    kinds = ", ".join("?" * len(KINDS))
    return {
        r[0]: tuple(r[1:])
        for r in db.execute(
            f"select idx, byte_start, token_start, token_end, starts_mid_token, ends_mid_token "
            f"from {FRAGMENTS} where trace_id = ? and kind in ({kinds})",
            [trace_id, *KINDS],
        ).fetchall()
    }


def alignment_matches(stored: dict[int, tuple], alignment: Alignment) -> bool:
    """Whether a recomputed alignment equals the stored one, fragment by fragment."""
    recomputed = {row[0]: tuple(row[5:]) for row in _aligned_rows(alignment)}
    return stored == recomputed


def recent_traces(
    db: sqlite_utils.Database, limit: int | None = 10, model: str | None = None
) -> list[dict[str, Any]]:
    """The newest trace rows first, or none if streamscope never wrote to ``db``.

    Each row as it stands now (``with_live_status``). A trace that never finished
    (still running, or its process killed) has no headline stats: its ``chunks``
    are counted from the fragments stored so far, as the stats count them
    (non-empty text fragments).
    """
    if not db[TRACES].exists():
        return []
    where, params = "", {}
    if model:
        where, params = "where model = :model", {"model": model}
    stored_chunks = (
        f"case when t.chunks is null then (select count(*) from {FRAGMENTS} f "
        "where f.trace_id = t.id and f.kind = 'text' and f.text != '') end"
    )
    sql = (
        f"select t.*, {stored_chunks} as stored_chunks from {TRACES} t {where} "
        "order by t.started_utc desc, t.id desc"
    )
    if limit:
        sql += f" limit {int(limit)}"
    rows = []
    for row in db.query(sql, params):
        stored = row.pop("stored_chunks")
        if row["chunks"] is None:
            row["chunks"] = stored
        rows.append(with_live_status(row))
    return rows
