"""Traces read back from logs.db, every value through one checked path.

A stored trace stays readable whatever happened to its rows: another tool, a
hand-made ``update``, a damaged disk. Every row read from a streamscope table
passes ``Checked.row``, which holds each value to the type its column was
created with (by ``store``'s migrations): a value of another type, text that is
not UTF-8 or JSON that is not an object is read as a stand-in (named in the
warning), with one ``Warning:`` line per trace and column, and the rest of the
trace reads as stored. A database that cannot be read at all (not SQLite, a
table dropped) is one ``StoreError``, one line.
"""

from __future__ import annotations

import functools
import json
import math
import os
import pathlib
import socket
import sqlite3
from typing import TYPE_CHECKING, Any

import sqlite_utils

from ..analysis.trace import (
    KINDS,
    PLACEMENT_FIELDS,
    STATUS_INTERRUPTED,
    STATUS_RUNNING,
    Fragment,
    Placement,
    Trace,
    one_line,
)
from .writer import (
    FRAGMENTS,
    TRACES,
    UNFINISHED,
    WIRE,
    WIRE_READS,
    StoreError,
    connect,
    migrations,
)

if TYPE_CHECKING:
    from ..wire.events import Wire

JSON_COLUMNS = {"options_json": "options", "stats_json": "stats"}
"""Trace columns that hold a JSON object as text, and the key their value takes
in ``logs --json``."""

EMPTY = (None, "empty")
"""A damaged value with no better stand-in: its value, and how the warning says it."""


class Undecodable(str):
    """Stored text that is not UTF-8, read with U+FFFD in place of the bytes that are not."""


def _text(data: bytes) -> str:
    """The connection's text factory: sqlite3's own fails the whole query on one
    value that is not UTF-8."""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return Undecodable(data.decode(errors="replace"))


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
    db.conn.text_factory = _text
    if need_traces and not _exists(db, TRACES):
        raise StoreError(f"{path} holds no streamscope traces")
    return db


@functools.cache
def column_types() -> dict[str, dict[str, type]]:
    """Each streamscope table's columns and the Python type of each, as the
    migrations create them (applied to an empty database in memory: one definition).

    >>> column_types()["streamscope_fragments"]["t_ns"]
    <class 'int'>
    """
    db = sqlite_utils.Database(memory=True)
    migrations.apply(db)
    return {
        name: db[name].columns_dict  # type: ignore[union-attr]
        for name in db.table_names()
        if name.startswith("streamscope_")
    }


def _check(value: Any, column: str, kind: type) -> tuple[Any, str | None]:
    """A stored value held to its column's type: the value (or a stand-in), and what
    is wrong with it.

    >>> _check(7, "t_ns", int)
    (7, None)
    >>> _check("x", "t_ns", int)
    (None, "is not an integer ('x')")
    >>> _check('{"seed": 7}', "options_json", str)
    ('{"seed": 7}', None)
    >>> _check("[1]", "options_json", str)
    (None, 'is not a JSON object')
    """
    if value is None:
        return None, None
    if kind is int:
        if isinstance(value, int):
            return value, None
        return None, f"is not an integer ({_shown(value)})"
    if kind is float:
        if isinstance(value, int | float) and math.isfinite(value):
            return value, None
        return None, f"is not a finite number ({_shown(value)})"
    if kind is bytes:
        if isinstance(value, bytes):
            return value, None
        if isinstance(value, str):
            return value.encode(errors="replace"), "holds text, not bytes; read as its UTF-8"
        return None, f"is not bytes ({_shown(value)})"
    if isinstance(value, Undecodable):
        return str(value), f"is not UTF-8 text; read {_REPLACED}"
    if not isinstance(value, str):
        if isinstance(value, bytes):
            return value.decode(errors="replace"), f"holds bytes, not text; read {_REPLACED}"
        return None, f"is not text ({_shown(value)})"
    if column.endswith("_json"):
        try:
            decoded = json.loads(value)
        except ValueError:
            return None, "is not valid JSON"
        if decoded is not None and not isinstance(decoded, dict):
            return None, "is not a JSON object"
    return value, None


_REPLACED = "as UTF-8 with U+FFFD for each byte that is not"


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:39] + "…"


class Checked:
    """Rows of one read, each value held to its column's type; ``warnings`` says,
    once per trace and column, what was damaged and how it reads."""

    def __init__(self) -> None:
        self._damage: dict[tuple[str, str], list[Any]] = {}

    def row(
        self,
        table: str,
        row: dict[str, Any],
        trace_id: str,
        stand_ins: dict[str, tuple[Any, str]] | None = None,
        *,
        whole: bool = False,
    ) -> dict[str, Any]:
        """``row`` with every column of ``table`` checked. A damaged value reads as
        its ``stand_ins`` entry, ``(value, words for the warning)``, else ``EMPTY``
        (None). Columns the table does not have (computed ones) are left as they are.

        A ``whole`` row (``select *``) has every column: one the table lacks reads as
        null (a database not migrated since, opened read-only), or as its stand-in,
        with a warning, when it must have a value (a column dropped since)."""
        types = column_types()[table]
        checked = dict(row)
        for column in types.keys() - row.keys() if whole else ():
            checked[column] = None
            if column in (stand_ins or {}):
                checked[column], words = (stand_ins or {})[column]
                self.note(trace_id, column, f"is missing; read as {words}")
        for column, value in row.items():
            kind = types.get(column)
            if kind is None:
                continue
            checked[column], problem = _check(value, column, kind)
            if problem is not None:
                stand_in, words = (stand_ins or {}).get(column, EMPTY)
                if checked[column] is None:
                    checked[column] = stand_in
                    problem = f"{problem}; read as {words}"
                self.note(trace_id, column if table == TRACES else f"{table}.{column}", problem)
        return checked

    def note(self, trace_id: str, column: str, problem: str) -> None:
        """One more damaged value of ``column``: the first one's problem is what is said."""
        seen = self._damage.setdefault((trace_id, column), [problem, 0])
        seen[1] += 1

    @property
    def warnings(self) -> list[str]:
        lines = []
        for (trace_id, column), (problem, times) in self._damage.items():
            more = f" (and in {times - 1} more rows)" if times > 1 else ""
            lines.append(f"trace {trace_id}: {column} {problem}{more}")
        return lines


def _query(db: sqlite_utils.Database, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    """Rows of a query; a database that cannot answer it (a dropped table, damage
    SQLite itself finds) is one StoreError."""
    try:
        return list(db.query(sql, params))
    except sqlite3.Error as ex:
        raise StoreError(f"Cannot read the log database: {one_line(ex)}") from None


def _exists(db: sqlite_utils.Database, table: str) -> bool:
    try:
        return db[table].exists()
    except sqlite3.Error as ex:
        raise StoreError(f"Cannot read the log database: {one_line(ex)}") from None


def _columns(db: sqlite_utils.Database, table: str) -> set[str]:
    return {r["name"] for r in _query(db, f"select name from pragma_table_info('{table}')")}


def decode_json_columns(row: dict[str, Any]) -> dict[str, Any]:
    """A checked trace row with its JSON columns decoded (``options_json`` becomes
    ``options``, ``stats_json`` becomes ``stats``).

    >>> decode_json_columns({"id": "01k", "options_json": '{"seed": 7}', "stats_json": None})
    {'id': '01k', 'options': {'seed': 7}, 'stats': None}
    """
    decoded = {k: v for k, v in row.items() if k not in JSON_COLUMNS}
    for column, key in JSON_COLUMNS.items():
        decoded[key] = _json(row.get(column))
    decoded["options"] = decoded["options"] or {}
    return decoded


def _json(text: str | None) -> dict | None:
    """A checked JSON column's object (the check has made a damaged one None)."""
    return None if text is None else json.loads(text)


def find_run(db: sqlite_utils.Database, ident: str | None, latest: bool = False) -> list[str]:
    """Trace ids in run order: for a trace id or llm's turn id, that trace; for a
    run id, every trace of that run; with ``latest``, every trace of the latest run."""
    run_id, in_run_order = ("run_id", "run_index, ") if _has_runs(db) else ("id", "")
    if latest:
        newest = _latest_trace_id(db)
        (row,) = _query(db, f"select {run_id} as run from {TRACES} where id = ?", [newest])
        spellings = [row["run"], row["run"]]
    else:
        given = _given(ident)
        found = _trace_id_of(db, given)
        if found is not None:
            return [found]
        spellings = [given, given.lower()]  # run ids are stored as given; ours are lower case
    rows = _query(
        db,
        f"select id from {TRACES} where {run_id} in (?, ?) order by {in_run_order}started_utc, id",
        spellings,
    )
    if not rows:
        raise StoreError(f"No trace or run with id {ident}")
    return [r["id"] for r in rows]


def _given(ident: str | None) -> str:
    if not ident:
        raise StoreError("Give a trace id (or llm's response id), or use --latest")
    return ident


def _latest_trace_id(db: sqlite_utils.Database) -> str:
    rows = _query(db, f"select id from {TRACES} order by started_utc desc, id desc limit 1")
    if not rows:
        raise StoreError("No streamscope traces logged yet")
    return rows[0]["id"]


def _trace_id_of(db: sqlite_utils.Database, ident: str) -> str | None:
    """The trace with this id, else the one llm logged with this turn id."""
    rows = _query(
        db,
        f"select id from {TRACES} where id = :i or turn_id = :i order by id = :i desc limit 1",
        {"i": ident.lower()},
    )
    return rows[0]["id"] if rows else None


def _has_runs(db: sqlite_utils.Database) -> bool:
    """Whether the traces have run columns. A database that no run has written to
    since ``m003_runs`` is read as it is (it may be read-only): each trace a run."""
    return "run_id" in _columns(db, TRACES)


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False  # os.kill(0, ...) would signal a whole process group
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True  # it exists, as another user's process
    except (OSError, OverflowError):
        return False
    return True


def with_live_status(row: dict[str, Any]) -> dict[str, Any]:
    """A checked trace row as it stands now: ``running`` while its run is still streaming.

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


_TRACE_STAND_INS = {
    "model": ("(unknown model)", "'(unknown model)'"),
    "encoding": ("o200k_base", "o200k_base"),
    "started_utc": ("", "''"),
    "status": (STATUS_INTERRUPTED, STATUS_INTERRUPTED),
    "run_index": (0, "0"),
}
"""What a damaged value of a trace column that must have one reads as."""

_UNSET = object()
"""A fragment's or read's index or time that was damaged: the reader puts one in."""

_FRAGMENT_STAND_INS = {
    "idx": (_UNSET, "its place"),
    "t_ns": (_UNSET, "the time before it"),
    "kind": ("unknown", "'unknown' (kept, not aligned)"),
    "text": ("", "''"),
}


def load_trace(db: sqlite_utils.Database, trace_id: str) -> tuple[Trace, dict[str, Any], list[str]]:
    """The stored trace; its checked row (with the stored headline stats); and a
    warning for each damaged column."""
    checked = Checked()
    rows = _query(db, f"select * from {TRACES} where id = ?", [trace_id])
    if not rows:
        raise StoreError(f"No trace or run with id {trace_id}")
    row = with_live_status(checked.row(TRACES, rows[0], trace_id, _TRACE_STAND_INS, whole=True))
    trace = Trace(
        id=trace_id,
        model_id=row["model"],
        encoding_name=row["encoding"],
        encoding_exact=bool(row["encoding_exact"]),
        prompt=row["prompt"],
        system=row["system"],
        started_utc=row["started_utc"],
        fragments=_fragments(db, trace_id, checked),
        status=row["status"],
        error=row["error"],
        setup_ns=row["setup_ns"],
        end_ns=row["end_ns"],
        usage_input=row["usage_input"],
        usage_output=row["usage_output"],
        turn_id=row["turn_id"],
        options=_json(row["options_json"]) or {},
        usage_details=_json(row.get("usage_json")),
        run_id=row.get("run_id") or trace_id,
        run_index=row.get("run_index") or 0,
        run_offset_ns=0 if row["run_id"] is None else row["run_offset_ns"],  # a run of its own
        timed=row.get("timed") != 0,
        wire=load_wire(db, trace_id, checked),
    )
    return trace, row, checked.warnings


def _fragments(db: sqlite_utils.Database, trace_id: str, checked: Checked) -> tuple[Fragment, ...]:
    """A trace's fragments in order, each read through ``checked``."""
    # A database not migrated since m004 (opened read-only) has no wire times.
    wire_t = "wire_t_ns" if "wire_t_ns" in _columns(db, FRAGMENTS) else "null as wire_t_ns"
    fragments = []
    t_ns = 0
    for place, stored in enumerate(
        _query(
            db,
            f"select idx, kind, text, t_ns, tool_call_id, {wire_t} from {FRAGMENTS} "
            "where trace_id = ? order by idx",
            [trace_id],
        )
    ):
        r = checked.row(FRAGMENTS, stored, trace_id, _FRAGMENT_STAND_INS)
        t_ns = t_ns if r["t_ns"] in (None, _UNSET) else r["t_ns"]
        index = place if r["idx"] in (None, _UNSET) else r["idx"]
        text, kind = r["text"] or "", r["kind"] or "unknown"
        fragments.append(Fragment(index, kind, text, t_ns, r["tool_call_id"], r["wire_t_ns"]))
    return tuple(fragments)


_READ_STAND_INS = {"t_ns": (_UNSET, "the time before it"), "data": (b"", "no bytes")}


def load_wire(
    db: sqlite_utils.Database, trace_id: str, checked: Checked | None = None
) -> Wire | None:
    """A trace's stored wire record, its events decoded again from the stored reads;
    None when there is none, or when the stored reads no longer decode (a warning)."""
    checked = checked or Checked()
    if not _exists(db, WIRE):
        if "wire_t_ns" in _columns(db, FRAGMENTS):  # migrated, and the table dropped since
            raise StoreError(f"Cannot read the log database: no such table: {WIRE}")
        return None  # a database not migrated since m004 (opened read-only)
    rows = _query(db, f"select * from {WIRE} where trace_id = ?", [trace_id])
    if not rows:
        return None
    from ..wire.events import Read, Wire, WireError
    from ..wire.formats import decode

    row = checked.row(WIRE, rows[0], trace_id, whole=True)
    reads = []
    t_ns = None
    for stored in _query(
        db, f"select t_ns, data from {WIRE_READS} where trace_id = ? order by idx", [trace_id]
    ):
        r = checked.row(WIRE_READS, stored, trace_id, _READ_STAND_INS)
        t_ns = t_ns if r["t_ns"] is _UNSET else r["t_ns"]
        reads.append(Read(t_ns, r["data"] or b""))
    try:
        decoded = decode(reads, row["format"])
    except WireError as ex:
        checked.note(trace_id, WIRE, f"does not decode ({ex}); read without the wire")
        return None
    return Wire(
        source=row["source"] or "",
        decoded=decoded,
        reads=tuple(reads),
        url=row["url"],
        status=row["status"],
        headers=_json(row["headers_json"]) or {},
        headers_ns=row["headers_ns"],
        wire_bytes=row["wire_bytes"],
    )


def stored_placements(db: sqlite_utils.Database, trace_id: str) -> dict[int, Placement] | None:
    """The stored placement of each model-output fragment, by fragment index; None
    when some fragment has none (stored while streaming, never aligned, or damaged:
    the fragments' own warnings say so)."""
    kinds = ", ".join("?" * len(KINDS))
    checked = Checked()  # damage here is said by the fragments' own reading
    rows = [
        checked.row(FRAGMENTS, r, trace_id)
        for r in _query(
            db,
            f"select idx, {', '.join(PLACEMENT_FIELDS)} from {FRAGMENTS} "
            f"where trace_id = ? and kind in ({kinds})",
            [trace_id, *KINDS],
        )
    ]
    if any(None in row.values() for row in rows):
        return None
    return {
        r["idx"]: Placement(
            r["byte_start"],
            r["token_start"],
            r["token_end"],
            bool(r["starts_mid_token"]),
            bool(r["ends_mid_token"]),
        )
        for r in rows
    }


def recent_traces(
    db: sqlite_utils.Database, limit: int | None = 10, model: str | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """The newest trace rows first (none if streamscope never wrote to ``db``), checked,
    and a warning for each damaged column.

    Each row as it stands now (``with_live_status``), with ``run_id``, ``run_index``
    and ``run_size`` (how many traces its run has). A trace that never finished
    (still running, or its process killed) has no headline stats: its ``chunks``
    are counted from the fragments stored so far, as the stats count them
    (non-empty text fragments).
    """
    if not _exists(db, TRACES):
        return [], []
    where, params = "", {}
    if model:
        where, params = "where model = :model", {"model": model}
    stored_chunks = (
        f"case when typeof(t.chunks) != 'integer' then (select count(*) from {FRAGMENTS} f "
        "where f.trace_id = t.id and f.kind = 'text' and f.text != '') end"
    )
    if _has_runs(db):
        run = f"(select count(*) from {TRACES} r where r.run_id = t.run_id) as run_size"
    else:
        run = "t.id as run_id, 0 as run_index, 1 as run_size"
    sql = (
        f"select t.*, {run}, {stored_chunks} as stored_chunks from {TRACES} t {where} "
        "order by t.started_utc desc, t.id desc"
    )
    if limit:
        sql += f" limit {int(limit)}"
    checked = Checked()
    rows = []
    for stored in _query(db, sql, params):
        row = checked.row(TRACES, stored, str(stored["id"]), _TRACE_STAND_INS, whole=True)
        chunks = row.pop("stored_chunks")
        if row["chunks"] is None:
            row["chunks"] = chunks
        rows.append(with_live_status(row))
    return rows, checked.warnings
