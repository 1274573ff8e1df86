"""Saving a finished trace when logs.db is locked: wait, say so, and never drop it.

A run's traces are written once its stream is over (``store.TraceWriter.finish``).
When another connection holds the database's lock, ``save`` waits: quietly for
``QUIET_WAIT_S``, then, after ``on_busy`` (the run shows its views meanwhile) and
a note saying how to stop waiting, for as long as the lock is held. A Ctrl-C or a
SIGTERM while it waits (``signals.RunSignals``, holding them) ends the wait: the
trace is written to a database of its own beside logs.db (``aside_dir``), which
``llm streamscope show -d FILE`` reads as it is and the next run that logs
imports (``import_set_aside``).

A trace set aside carries no record of llm's own (llm's tables number their rows
per database): its ``turn_id`` stays empty.
"""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..analysis.trace import Arrivals, Trace, one_line
from .writer import (
    TRACES,
    DatabaseBusy,
    StoreError,
    TraceWriter,
    connect,
    is_busy,
    write_transaction,
)

if TYPE_CHECKING:
    from ..analysis.stats import Stats
    from ..analysis.trace import Alignment
    from ..capture.signals import RunSignals

QUIET_WAIT_S = 2.0
"""How long a busy database is waited for before the run says so (a concurrent
run's commit takes milliseconds)."""
WAIT_SLICE_S = 0.25
"""Each wait after that: how soon a signal is acted on."""


def aside_dir(database: pathlib.Path) -> pathlib.Path:
    """Where traces that could not wait for ``database`` go, beside it.

    >>> aside_dir(pathlib.Path("/u/logs.db"))
    PosixPath('/u/logs.db-streamscope-unsaved')
    """
    return database.with_name(database.name + "-streamscope-unsaved")


def save(
    writer: TraceWriter,
    trace: Trace,
    alignment: Alignment | None,
    stats: Stats | None,
    response: Any,
    *,
    signals: RunSignals | None,
    on_busy: Callable[[], None],
) -> tuple[str | None, str | None]:
    """Write ``trace`` (``writer.finish``), waiting out a busy database; llm's turn id
    (or None) and a problem to report (None when the trace is in logs.db).

    ``on_busy`` is called once, when the database has been busy for ``QUIET_WAIT_S``.
    """
    timeout = QUIET_WAIT_S
    while True:
        try:
            return writer.finish(trace, alignment, stats, response, timeout=timeout), None
        except DatabaseBusy:
            pass
        except StoreError as ex:
            return None, f"trace not saved: {ex}"
        if signals is not None and signals.received is not None:
            return None, set_aside(writer.path, trace, alignment, stats)
        if timeout == QUIET_WAIT_S:
            on_busy()
            timeout = WAIT_SLICE_S


def set_aside(
    database: pathlib.Path, trace: Trace, alignment: Alignment | None, stats: Stats | None
) -> str:
    """Write ``trace`` to a database of its own beside ``database``; what to tell the user."""
    path = aside_dir(database) / f"{trace.id}.db"
    writer = TraceWriter(path, Arrivals())
    writer.open(trace)
    writer.stop()  # nothing streams: everything is written by finish
    try:
        writer.finish(trace, alignment, stats)
    except StoreError as ex:
        return f"{database} is locked, and the trace could not be set aside either: {ex}"
    return f"{database} is locked: the trace is saved in {path}, and the next run imports it"


def import_set_aside(database: pathlib.Path) -> tuple[list[str], list[str]]:
    """Move every trace set aside for ``database`` into it, if it is free now.

    Returns the ids moved, and a line for each file that could not be (it stays,
    for a later run). A busy database is left alone: no run waits for this.
    """
    folder = aside_dir(database)
    if not folder.is_dir():
        return [], []
    moved: list[str] = []
    problems: list[str] = []
    for path in sorted(folder.glob("*.db")):
        try:
            moved += _import_one(database, path)
        except sqlite3.OperationalError as ex:
            if is_busy(ex):
                break
            problems.append(f"{path} not imported: {one_line(ex)}")
        except (StoreError, sqlite3.Error, OSError) as ex:
            problems.append(f"{path} not imported: {one_line(ex)}")
        else:
            path.unlink(missing_ok=True)  # another run may have moved it at the same time
    with contextlib.suppress(OSError):  # not empty (a file left for later), or gone
        folder.rmdir()
    return moved, problems


def _import_one(database: pathlib.Path, path: pathlib.Path) -> list[str]:
    db = connect(database, timeout=0)
    try:
        db.conn.execute("ATTACH DATABASE ? AS aside", [str(path)])
        tables = [
            name
            for (name,) in db.execute(
                "select name from aside.sqlite_master where type = 'table' "
                "and name like 'streamscope\\_%' escape '\\' order by name != ?",
                [TRACES],
            )
        ]
        ids = [trace_id for (trace_id,) in db.execute(f"select id from aside.{TRACES}")]
        with write_transaction(db):
            for table in tables:
                key = "id" if table == TRACES else "trace_id"
                # What the run wrote while it streamed (the row, some fragments) is
                # replaced by the whole trace.
                db.execute(
                    f"delete from main.[{table}] where {key} in (select id from aside.{TRACES})"
                )
                columns = ", ".join(
                    f"[{c.name}]" for c in db[table].columns if c.name in _columns(db, table)
                )
                db.execute(
                    f"insert into main.[{table}] ({columns}) select {columns} from aside.[{table}]"
                )
        return ids
    finally:
        db.close()


def _columns(db: Any, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"pragma aside.table_info([{table}])")}


def wait_note(database: pathlib.Path) -> str:
    return (
        f"{database} is locked by another process: waiting to save the trace "
        f"(Ctrl-C saves it in {aside_dir(database)} instead, and the next run imports it)"
    )
