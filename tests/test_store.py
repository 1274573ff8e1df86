"""Traces in llm's logs.db: real SQLite files, the real CLI, real subprocesses."""

import csv
import datetime
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import sqlite_utils
from click.testing import CliRunner
from llm.cli import cli
from llm.migrations import migrate as llm_migrate

from llm_streamscope.sim.server import get_server
from llm_streamscope.store import reading as stored
from llm_streamscope.store import writer as store

FAST = ("-m", "streamscope-sim", "-o", "speed", "0")


def response_doc(stdout):
    """The one response's document in a run's (or a shown trace's) JSON."""
    (doc,) = json.loads(stdout)["responses"]
    return doc


def invoke(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def streamscope(*args, **kwargs):
    return invoke("streamscope", *args, **kwargs)


def views(output):
    """The alignment and stats views of a run's or show's output."""
    return output[output.index("─ alignment ─") :]


def logs_db(user_path):
    return sqlite_utils.Database(user_path / "logs.db")


def traces(user_path):
    db_path = user_path / "logs.db"
    if not db_path.exists():
        return []
    db = logs_db(user_path)
    if not db["streamscope_traces"].exists():  # llm prompt makes logs.db, even with -n
        return []
    return list(db.query("select * from streamscope_traces order by id"))


def fragment_count(db, trace_id):
    return db.execute(
        "select count(*) from streamscope_fragments where trace_id = ?", [trace_id]
    ).fetchone()[0]


# Schema and migrations


def test_migrations_on_an_empty_db_are_idempotent(tmp_path):
    db = store.connect(tmp_path / "empty.db")
    store.migrate(db)
    store.migrate(db)
    assert db["turns"].exists()  # llm's own tables come first
    assert {"streamscope_traces", "streamscope_fragments"} <= set(db.table_names())
    applied = [m.name for m in store.migrations.applied(db)]
    assert applied == [
        "m001_traces_and_fragments",
        "m002_liveness_usage_and_aiperf_rate",
        "m003_runs",
        "m004_wire",
        "m005_untimed_traces",
    ]
    assert db["streamscope_fragments"].pks == ["trace_id", "idx"]
    assert db["streamscope_fragments"].foreign_keys[0].other_table == "streamscope_traces"


def test_migrations_on_a_db_llm_already_created(tmp_path):
    path = tmp_path / "llm.db"
    llm_db = sqlite_utils.Database(path)
    llm_db.execute("pragma synchronous = off")  # not a disk sync per statement: ~2 s on a busy disk
    llm_migrate(llm_db)
    before = set(llm_db.table_names())
    llm_db.close()
    db = store.connect(path)
    store.migrate(db)
    store.migrate(db)
    assert set(db.table_names()) - before >= {"streamscope_traces", "streamscope_fragments"}


# Logging runs


def test_run_logs_beside_llms_own_record(isolated_env):
    result = streamscope(*FAST, "-o", "max_tokens", "20", "--json", "hello there")
    assert result.exit_code == 0
    doc = response_doc(result.stdout)
    (row,) = traces(isolated_env)
    assert row["id"] == doc["trace_id"] and row["status"] == "complete" and row["error"] is None
    assert row["chunks"] == row["tokens"] == 20 and row["ttft_ms"] == doc["stats"]["ttft_ms"]
    assert row["gap_p99_ms"] == doc["stats"]["gap_ms"]["p99"]
    assert row["tokens_per_s"] == doc["stats"]["tokens_per_s"]
    db = logs_db(isolated_env)
    # turn_id joins llm's own record of the same response
    (turn,) = db.query(
        "select turns.* from streamscope_traces join turns on turns.id = streamscope_traces.turn_id"
    )
    assert turn["id"] == doc["turn_id"] and turn["output_tokens"] == 20
    # ... which `llm logs` still shows as usual
    logged = json.loads(invoke("logs", "-n", "1", "--json").stdout)
    assert logged[0]["prompt"] == "hello there"
    assert logged[0]["response"] == "".join(f["text"] for f in doc["fragments"])
    rows = list(db.query("select * from streamscope_fragments order by idx"))
    assert [r["text"] for r in rows] == [f["text"] for f in doc["fragments"]]
    assert [r["t_ns"] / 1e6 for r in rows] == [f["t_ms"] for f in doc["fragments"]]
    assert [r["token_start"] for r in rows] == [f["token_start"] for f in doc["fragments"]]


def test_no_log_logs_off_and_log(isolated_env):
    assert streamscope(*FAST, "-o", "max_tokens", "3", "-n", "x").exit_code == 0
    assert traces(isolated_env) == []
    invoke("logs", "off")
    assert streamscope(*FAST, "-o", "max_tokens", "3", "x").exit_code == 0
    assert traces(isolated_env) == []
    assert streamscope(*FAST, "-o", "max_tokens", "3", "--log", "x").exit_code == 0
    assert len(traces(isolated_env)) == 1
    invoke("logs", "on")
    assert streamscope(*FAST, "-o", "max_tokens", "3", "x").exit_code == 0
    assert len(traces(isolated_env)) == 2


def test_database_option(isolated_env, tmp_path):
    other = tmp_path / "elsewhere" / "traces.db"
    assert streamscope(*FAST, "-o", "max_tokens", "3", "-d", str(other), "x").exit_code == 0
    assert not (isolated_env / "logs.db").exists()
    out = streamscope("logs", "-d", str(other)).stdout
    assert out.count("\n") == 1 and "streamscope-sim" in out


def test_show_recomputes_exactly_what_the_run_showed(isolated_env):
    run = streamscope(*FAST, "-o", "profile", "gemini-flash", "-o", "text", "multilingual", "x")
    assert run.exit_code == 0
    shown = streamscope("show", "--latest")
    assert shown.exit_code == 0 and shown.stderr == ""
    assert views(shown.stdout) == views(run.stdout)
    run_doc = response_doc(
        streamscope(*FAST, "-o", "profile", "claude-haiku", "--json", "x").stdout
    )
    show_doc = response_doc(streamscope("show", run_doc["trace_id"], "--json").stdout)
    assert show_doc == run_doc
    # by llm's id for the same response, too
    assert response_doc(streamscope("show", run_doc["turn_id"], "--json").stdout) == run_doc
    # stored alignment equals the recomputed one
    db = store.connect(isolated_env / "logs.db")
    trace, *_ = stored.load_trace(db, run_doc["trace_id"])
    from llm_streamscope.analysis.align import align
    from llm_streamscope.analysis.encodings import get_encoding
    from llm_streamscope.capture.tokenizer import LocalTokenizer

    recomputed = align(trace, LocalTokenizer(get_encoding("o200k_base")))
    placements = stored.stored_placements(db, trace.id)
    assert placements is not None and store.alignment_matches(placements, recomputed)
    assert placements[0] == recomputed.streams[0].placement(0)


def test_show_warns_when_the_stored_alignment_differs(isolated_env):
    doc = response_doc(streamscope(*FAST, "-o", "max_tokens", "5", "--json", "x").stdout)
    db = logs_db(isolated_env)
    db.execute("update streamscope_fragments set token_end = 99 where idx = 0")
    db.conn.commit()
    result = streamscope("show", doc["trace_id"])
    assert result.exit_code == 0 and "stored alignment differs" in result.stderr


def test_logs_lists_newest_first_with_filters(isolated_env):
    for prompt in ("first", "second", "third"):
        streamscope(*FAST, "-o", "max_tokens", "2", prompt)
    lines = streamscope("logs").stdout.splitlines()
    assert [line.rsplit(" ", 1)[-1] for line in lines] == ["'third'", "'second'", "'first'"]
    assert len(streamscope("logs", "-n", "2").stdout.splitlines()) == 2
    assert streamscope("logs", "-m", "gpt-4o-mini").stdout == ""
    assert len(streamscope("logs", "-m", "streamscope-sim").stdout.splitlines()) == 3
    rows = json.loads(streamscope("logs", "--json", "-n", "1").stdout)
    assert rows[0]["prompt"] == "third" and rows[0]["stats"]["chunks"] == 2


def test_export_formats(isolated_env):
    doc = response_doc(streamscope(*FAST, "-o", "max_tokens", "6", "--json", "x").stdout)
    assert response_doc(streamscope("export", "--latest").stdout) == doc
    lines = streamscope("export", doc["trace_id"], "-F", "jsonl").stdout.splitlines()
    # one row per fragment, each naming its trace (a run's export holds several)
    tagged = [{"trace_id": doc["trace_id"], **f} for f in doc["fragments"]]
    assert [json.loads(line) for line in lines] == tagged
    table = list(csv.DictReader(io.StringIO(streamscope("export", "--latest", "-F", "csv").stdout)))
    assert [r["text"] for r in table] == [f["text"] for f in doc["fragments"]]
    assert list(table[0]) == list(tagged[0])


def test_a_stored_trace_without_fragments_shows_replays_and_exports(isolated_env):
    from llm_streamscope.views.documents import EXPORT_COLUMNS

    run = streamscope(*FAST, "-o", "error", "429", "x")
    assert run.exit_code == 1
    for command in ("show", "replay"):
        shown = streamscope(command, "--latest")
        assert shown.exit_code == 0 and shown.stdout == run.stdout
        assert "status          error: Error code: 429" in shown.stdout
    doc = response_doc(streamscope("export", "--latest").stdout)
    assert doc["status"] == "error" and doc["fragments"] == []
    exported = streamscope("export", "--latest", "-F", "csv").stdout
    assert exported.splitlines() == [",".join(EXPORT_COLUMNS)]
    assert streamscope("export", "--latest", "-F", "jsonl").stdout == ""


def test_replay_plays_the_stored_fragments_then_the_views(isolated_env):
    run = streamscope(*FAST, "-o", "max_tokens", "8", "x")
    replay = streamscope("replay", "--latest", "--speed", "0")
    assert replay.exit_code == 0
    assert replay.stdout == run.stdout


# Nothing lost


def test_dropped_connection_leaves_an_error_trace_with_what_arrived(isolated_env):
    result = streamscope(*FAST, "-o", "drop_after", "7", "x")
    assert result.exit_code == 1
    (row,) = traces(isolated_env)
    assert row["status"] == "error" and "incomplete chunked read" in row["error"]
    assert row["turn_id"] is None and row["chunks"] == 7
    assert fragment_count(logs_db(isolated_env), row["id"]) == 7
    shown = streamscope("show", row["id"])
    assert shown.exit_code == 0 and "status          error" in shown.stdout


def test_timeout_ends_a_stalled_stream(isolated_env):
    result = streamscope(
        *FAST, "-o", "stall_after", "4", "-o", "stall_s", "30", "--timeout", "0.5", "x"
    )
    assert result.exit_code == 1
    assert "stalled: nothing arrived for 0.5 s (--timeout)" in result.stderr
    (row,) = traces(isolated_env)
    assert row["status"] == "error" and row["chunks"] == 4


def spawn(user_path, *args, stdin=None, stdout=subprocess.PIPE, start_new_session=False, **env):
    """``llm streamscope *args`` in a process of its own, with ``env`` added
    (``start_new_session``: as the leader of its own process group, as a shell starts a job).

    Only this plugin loads there: importing llm-anthropic's SDK alone costs a
    process ~1.5 s of CPU, and no test here runs it in another process.
    """
    env = {
        **os.environ,
        "LLM_USER_PATH": str(user_path),
        "LLM_LOAD_PLUGINS": "llm-streamscope",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "llm", "streamscope", *args],
        env=env,
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        start_new_session=start_new_session,
    )


@pytest.mark.parametrize(
    "sig,status,code", [(signal.SIGINT, "interrupted", 130), (signal.SIGTERM, "interrupted", 143)]
)
def test_signal_mid_stream_leaves_a_partial_trace(isolated_env, sig, status, code):
    # Surely mid-stream: 20 of 100 chunks at once, then silence past the signal.
    stall = ("-o", "stall_after", "20", "-o", "stall_s", "30")
    proc = spawn(isolated_env, *FAST, "-o", "chunks", "100", *stall, "x")
    received = proc.stdout.read(40)  # the live text is flowing
    assert received
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.decode().count("\n") == 1 and "Error: stream interrupted after" in err.decode()
    (row,) = traces(isolated_env)
    assert row["status"] == status
    stored = fragment_count(logs_db(isolated_env), row["id"])
    assert 0 < stored < 100 and row["chunks"] == stored
    assert streamscope("show", row["id"]).exit_code == 0


def test_ctrl_c_before_the_first_token_still_shows_status_and_stats(isolated_env):
    from llm_streamscope.sim.server import SimServer

    with SimServer() as server:
        stall = ("-o", "stall_after", "0", "-o", "stall_s", "30")
        proc = spawn(isolated_env, *FAST, *stall, "x", STREAMSCOPE_SIM_URL=server.base_url)
        deadline = time.monotonic() + 30
        while server.post_count == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # the request is in flight, no token has arrived
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.decode() == "Error: stream interrupted (Ctrl-C)\n"
    assert "status          interrupted (Ctrl-C)" in out.decode()
    (row,) = traces(isolated_env)
    assert row["status"] == "interrupted" and row["chunks"] == 0


def wait_for_fragments(user_path, wanted=1, timeout_s=30):
    """How many fragments another process has stored, once there are ``wanted``."""
    deadline = time.monotonic() + timeout_s
    stored = 0
    while time.monotonic() < deadline and stored < wanted:
        time.sleep(0.05)
        if (user_path / "logs.db").exists():
            with sqlite3.connect(user_path / "logs.db", timeout=30) as conn:
                if conn.execute(
                    "select count(*) from sqlite_master where name = 'streamscope_fragments'"
                ).fetchone()[0]:
                    stored = conn.execute("select count(*) from streamscope_fragments").fetchone()[
                        0
                    ]
    return stored


def test_a_running_trace_shows_as_running_and_a_killed_one_as_unfinished(isolated_env):
    import socket

    # Mid-stream (silent after 6 chunks), its fragments are in the database
    # already; a SIGKILL then leaves them, and the row says the run never finished.
    stall = ("-o", "stall_after", "6", "-o", "stall_s", "30")
    proc = spawn(isolated_env, *FAST, *stall, "x")
    try:
        assert wait_for_fragments(isolated_env, 6) == 6 and proc.poll() is None
        (row,) = traces(isolated_env)
        assert (row["pid"], row["host"]) == (proc.pid, socket.gethostname())
        assert "  running  TTFT -  6 chunks  - tokens  " in streamscope("logs").stdout
        (listed,) = json.loads(streamscope("logs", "--json").stdout)
        assert (listed["status"], listed["error"], listed["chunks"]) == ("running", None, 6)
        shown = streamscope("show", "--latest")
        assert shown.exit_code == 0 and "status          running\n" in shown.stdout
        assert store.UNFINISHED not in shown.stdout
        exported = response_doc(streamscope("export", "--latest").stdout)
        assert exported["status"] == "running" and len(exported["fragments"]) == 6
    finally:
        proc.kill()
        proc.wait()
    # Its process is gone: the honest record, and the fragments it left counted.
    (row,) = traces(isolated_env)
    assert row["status"] == "interrupted" and row["error"] == store.UNFINISHED
    assert "  interrupted  TTFT -  6 chunks  - tokens  " in streamscope("logs").stdout
    shown = streamscope("show", "--latest").stdout
    assert f"status          interrupted: {store.UNFINISHED}" in shown


def test_a_trace_from_another_host_or_a_dead_process_is_not_running(isolated_env):
    streamscope(*FAST, "-o", "max_tokens", "2", "x")
    db = logs_db(isolated_env)
    unfinished = {"status": "interrupted", "error": store.UNFINISHED, "chunks": None}
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    for change in ({"host": "elsewhere"}, {"pid": int(dead.stdout)}, {"pid": None}):
        db["streamscope_traces"].update(traces(isolated_env)[0]["id"], unfinished | change)
        (listed,) = json.loads(streamscope("logs", "--json").stdout)
        assert listed["status"] == "interrupted" and listed["chunks"] == 2, change


def test_concurrent_runs_into_one_db(isolated_env):
    from llm_streamscope.sim.server import SimServer

    class Gate(SimServer):
        """Holds every request until all three have come: the streams run together."""

        gate = threading.Barrier(3, timeout=60)

        def _count_post(self):
            super()._count_post()
            self.gate.wait()

    # A pause mid-stream, longer than the writer's flush interval: each process
    # writes fragments while the others do, then all finish at once.
    stall = ("-o", "stall_after", "75", "-o", "stall_s", str(store.FLUSH_INTERVAL_S + 0.3))
    with Gate() as server:
        procs = [
            spawn(
                isolated_env,
                *FAST,
                *("-o", "chunks", "150", "-o", "seed", str(i), *stall, f"run {i}"),
                STREAMSCOPE_SIM_URL=server.base_url,
            )
            for i in range(3)
        ]
        results = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, results):
        assert proc.returncode == 0, err.decode()
        assert b"locked" not in err
    rows = traces(isolated_env)
    assert len(rows) == 3 and {r["status"] for r in rows} == {"complete"}
    db = logs_db(isolated_env)
    assert all(fragment_count(db, r["id"]) == 150 == r["chunks"] for r in rows)
    assert db.execute("select count(*) from turns").fetchone()[0] == 3
    # They did run at the same time: there was a moment when all three streamed.
    spans = []
    for r in rows:
        start = datetime.datetime.fromisoformat(r["started_utc"]).timestamp()
        spans.append((start, start + (r["setup_ns"] + r["end_ns"]) / 1e9))
    assert max(s for s, _ in spans) < min(e for _, e in spans), spans


# Bad input


def test_unknown_id_and_empty_log(isolated_env):
    result = streamscope("show", "--latest")
    assert result.exit_code == 1 and result.stderr.startswith("Error: No log database found at")
    streamscope(*FAST, "-o", "max_tokens", "2", "x")
    for command in ("show", "replay", "export"):
        result = streamscope(command, "01nosuchtrace")
        assert result.exit_code == 1
        assert result.stderr == "Error: No trace or run with id 01nosuchtrace\n"
    result = streamscope("show")
    assert "Give a trace id" in result.stderr


@pytest.mark.parametrize("command", ["show", "replay", "export"])
def test_latest_and_an_id_together_are_refused(isolated_env, command):
    streamscope(*FAST, "-o", "max_tokens", "2", "x")
    result = streamscope(command, "--latest", "01nosuchtrace")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == "Error: Give a trace id or --latest, not both (got 01nosuchtrace)\n"


def test_logs_of_a_database_without_traces_lists_none(isolated_env, tmp_path):
    # As `llm logs`: a missing file is an error, a database without rows lists nothing.
    missing = streamscope("logs")
    assert missing.exit_code == 1
    assert missing.stderr == f"Error: No log database found at {isolated_env / 'logs.db'}\n"
    assert invoke("logs").exit_code == 1  # llm's own answer
    foreign = tmp_path / "foreign.db"
    sqlite_utils.Database(foreign)["things"].insert({"a": 1})
    emptied = tmp_path / "emptied.db"
    streamscope(*FAST, "-o", "max_tokens", "2", "-d", str(emptied), "x")
    sqlite_utils.Database(emptied).execute("delete from streamscope_fragments")
    sqlite_utils.Database(emptied).execute("delete from streamscope_traces")
    for path in (foreign, emptied):
        listed = streamscope("logs", "-d", str(path), "--json")
        assert (listed.exit_code, listed.stdout, listed.stderr) == (0, "[]\n", "")
        listed = streamscope("logs", "-d", str(path))
        assert (listed.exit_code, listed.stdout, listed.stderr) == (0, "", "")
    assert "things" in sqlite_utils.Database(foreign).table_names()
    assert "streamscope_traces" not in sqlite_utils.Database(foreign).table_names()


def test_invalid_json_in_a_row_is_named_and_the_trace_stays_readable(isolated_env):
    ids = [
        response_doc(streamscope(*FAST, "-o", "max_tokens", "3", "--json", p).stdout)["trace_id"]
        for p in ("good", "bad options", "bad stats")
    ]
    db = logs_db(isolated_env)
    db.execute("update streamscope_traces set options_json = '{seed' where id = ?", [ids[1]])
    db.execute("update streamscope_traces set stats_json = '[1, 2]' where id = ?", [ids[2]])
    db.conn.commit()
    listed = streamscope("logs", "--json")
    assert listed.exit_code == 0
    assert listed.stderr == (
        f"Warning: trace {ids[2]}: stats_json is not a JSON object; read as empty\n"
        f"Warning: trace {ids[1]}: options_json is not valid JSON; read as empty\n"
    )
    rows = json.loads(listed.stdout)
    assert [r["id"] for r in rows] == ids[::-1]
    assert rows[0]["stats"] is None and rows[1]["options"] == {}
    assert rows[2]["options"] == {"speed": 0.0, "max_tokens": 3} and rows[2]["stats"]["chunks"] == 3
    warning = f"Warning: trace {ids[1]}: options_json is not valid JSON; read as empty\n"
    for args in (("show",), ("show", "--json"), ("replay", "--speed", "0"), ("export",)):
        result = streamscope(*args, ids[1])
        assert result.exit_code == 0 and result.stderr == warning, args
        assert "─ stats ─" in result.stdout or response_doc(result.stdout)["options"] == {}
    assert streamscope("show", ids[0]).stderr == ""


def test_corrupt_and_foreign_databases(isolated_env, tmp_path):
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not sqlite" * 100)
    result = streamscope("logs", "-d", str(corrupt))
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "file is not a database" in result.stderr
    # A run that needs llm to read it (-c) cannot start: one line, before any request.
    # (One that only logs to it runs: see test_stored.)
    server = get_server()
    before = server.last_completion_id
    run = streamscope(*FAST, "-o", "max_tokens", "4", "-d", str(corrupt), "-c", "x")
    assert run.exit_code == 1 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and "file is not a database" in run.stderr
    assert server.last_completion_id == before
    foreign = tmp_path / "foreign.db"
    sqlite_utils.Database(foreign)["things"].insert({"a": 1})
    result = streamscope("show", "--latest", "-d", str(foreign))
    assert result.exit_code == 1 and "holds no streamscope traces" in result.stderr


def _wrapped_connect(monkeypatch, prepare):
    real = store.connect

    def connect(path, *args, **kwargs):
        db = real(path, *args, **kwargs)
        prepare(db)
        return db

    monkeypatch.setattr(store, "connect", connect)


def test_read_only_database(isolated_env, monkeypatch):
    streamscope(*FAST, "-o", "max_tokens", "2", "x")  # create and migrate it
    # Tests run as root, which ignores file modes: make SQLite itself refuse writes.
    _wrapped_connect(monkeypatch, lambda db: db.execute("pragma query_only = 1"))
    result = streamscope(*FAST, "-o", "max_tokens", "4", "x")
    assert result.exit_code == 1 and "─ stats ─" in result.stdout
    assert result.stderr.startswith("Error: trace not saved: ")
    assert "readonly" in result.stderr and result.stderr.count("\n") == 1
    assert streamscope("show", "--latest").exit_code == 0  # reading still works


def test_disk_full_while_streaming(isolated_env, monkeypatch):
    streamscope(*FAST, "-o", "max_tokens", "2", "x")

    # SQLite's own page limit turns further growth into SQLITE_FULL, as a full disk would.
    def cap(db):
        pages = db.execute("pragma page_count").fetchone()[0]
        db.execute(f"pragma max_page_count = {pages + 1}")

    _wrapped_connect(monkeypatch, cap)
    # 200 fragments, then a pause longer than the writer's flush interval: it is
    # that mid-stream flush that finds the disk full.
    stall = ("-o", "stall_after", "200", "-o", "stall_s", str(store.FLUSH_INTERVAL_S + 0.3))
    result = streamscope(*FAST, "-o", "chunks", "300", *stall, "x")
    assert result.exit_code == 1 and "─ stats ─" in result.stdout
    assert result.stderr.startswith("Error: trace not saved: ")
    assert "database or disk is full" in result.stderr


def test_reader_gone_early_still_leaves_a_complete_trace(isolated_env):
    # As with `llm streamscope ... | head`: the live text loses its reader, the
    # stream and its trace do not. The reader leaves during a pause mid-stream, so
    # the rest of the text and the views all go to a closed pipe.
    stall = ("-o", "stall_after", "20", "-o", "stall_s", "0.5")
    proc = spawn(isolated_env, *FAST, "-o", "chunks", "300", *stall, "x")
    assert proc.stdout.read(50)
    proc.stdout.close()
    proc.wait(timeout=60)
    (row,) = traces(isolated_env)
    assert row["status"] == "complete" and row["chunks"] == 300
    assert b"Traceback" not in proc.stderr.read()


def test_a_busy_database_never_delays_the_request(isolated_env):
    from llm_streamscope.sim.server import get_server

    streamscope(*FAST, "-o", "max_tokens", "2", "x")  # create and migrate it
    holder = sqlite3.connect(
        isolated_env / "logs.db", isolation_level=None, check_same_thread=False
    )
    holder.execute("begin immediate")  # another process's write lock
    released_ns = []
    server = get_server()
    posts = server.post_count

    def release_once_the_request_is_out():
        # A request held back by the lock never comes: then the lock frees after
        # 10 s, and the request goes out after that.
        deadline = time.monotonic() + 10
        while server.post_count == posts and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # and a little longer: the run's end waits for the lock too
        released_ns.append(time.perf_counter_ns())
        holder.execute("commit")

    releaser = threading.Thread(target=release_once_the_request_is_out)
    releaser.start()
    started_ns = time.perf_counter_ns()
    result = streamscope(*FAST, "-o", "seed", "2", "-o", "max_tokens", "12", "busy")
    releaser.join()
    assert result.exit_code == 0, result.output
    # Said once, and the request went out at once, while the lock was held.
    assert result.stderr.count("\n") == 1 and "logs.db is busy" in result.stderr
    sent = server.send_log(server.last_completion_id)
    assert sent.t0_ns - started_ns < 1e9 and sent.t0_ns < released_ns[0]
    # Everything received was written once the lock freed.
    db = logs_db(isolated_env)
    trace = next(iter(db.query("select * from streamscope_traces where prompt = 'busy'")))
    assert trace["status"] == "complete" and trace["tokens"] == 12 and trace["turn_id"]
    texts = [
        r["text"]
        for r in db.query(
            "select text from streamscope_fragments where trace_id = ? order by idx", [trace["id"]]
        )
    ]
    assert texts == sent.chunks


# A stream shaped like llm-anthropic's with server-side web search: a redacted
# (empty) reasoning event, reasoning, a tool call, an opaque tool_result blob, text,
# and usage whose details give the reasoning tokens.
SEARCH_RESULT = json.dumps([{"type": "web_search_result", "encrypted_content": "x" * 5000}] * 4)


@pytest.fixture
def tool_user(register_models):
    import llm
    from llm.parts import StreamEvent

    call = "srvtoolu_01A09q90qw90lq917835lq9"

    class ToolUser(llm.Model):
        model_id = "tool-user"
        can_stream = True

        def execute(self, prompt, stream, response, conversation=None):
            yield StreamEvent(type="reasoning", chunk="", redacted=True)
            yield StreamEvent(type="reasoning", chunk="Search first.")
            yield StreamEvent(type="tool_call_name", chunk="web_search", tool_call_id=call)
            yield StreamEvent(type="tool_call_args", chunk='{"query": "x"}', tool_call_id=call)
            yield StreamEvent(
                type="tool_result",
                chunk=SEARCH_RESULT,
                tool_call_id=call,
                server_executed=True,
                tool_name="web_search",
            )
            yield StreamEvent(type="text", chunk="Found")
            yield StreamEvent(type="text", chunk=" it.")
            details = {"output_tokens_details": {"thinking_tokens": 7}}  # as Anthropic
            response.set_usage(input=5, output=30, details=details)

    register_models(ToolUser())
    return call


def test_tool_results_are_kept_and_summarised_not_aligned(isolated_env, tool_user):
    result = streamscope("-m", "tool-user", "hi")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stderr  # the reasoning, piped: no styles, as llm prompt
    shown = views(result.stdout)
    assert "encrypted_content" not in shown  # the blob is not printed ...
    (summary,) = [line for line in shown.splitlines() if line.startswith("tool_result")]
    assert f"1 event · {len(SEARCH_RESULT):,} chars" in summary  # ... but summarised
    assert "reasoning (" not in shown and "srvtoolu_01A…" in shown  # ids shortened
    assert "reasoning: 3 tokens, 1 chunk" in shown  # the empty event is not a chunk
    # Like with like: usage 30 output - 7 reasoning against text + tool-call tokens.
    text_tokens, call_tokens = 3, 2 + 6  # o200k: "Found it." / "web_search", '{"query": "x"}'
    assert "usage reports 30 output tokens − 7 reasoning = 23" in shown
    assert f"streamed text+tool calls {text_tokens + call_tokens} (−{23 - 11})" in shown

    doc = response_doc(streamscope("-m", "tool-user", "--json", "hi").stdout)
    assert [s["kind"] for s in doc["streams"]] == [
        "reasoning",
        "tool_call_name",
        "tool_call_args",
        "text",
    ]
    blob = doc["fragments"][4]
    assert blob["kind"] == "tool_result" and blob["text"] == SEARCH_RESULT
    assert blob["token_start"] is None and blob["byte_end"] is None
    assert doc["stats"]["usage_reasoning_tokens"] == 7
    assert [k["kind"] for k in doc["stats"]["other_kinds"]] == ["tool_result"]

    # Stored whole (the fragment and the usage details), and read back the same.
    db = logs_db(isolated_env)
    row = db["streamscope_traces"].get(doc["trace_id"])
    assert json.loads(row["usage_json"]) == {"output_tokens_details": {"thinking_tokens": 7}}
    (stored,) = db.query(
        "select * from streamscope_fragments where kind = 'tool_result' and trace_id = ?",
        [doc["trace_id"]],
    )
    assert stored["text"] == SEARCH_RESULT and stored["token_start"] is None
    again = response_doc(streamscope("show", doc["trace_id"], "--json").stdout)
    assert again["fragments"] == doc["fragments"] and again["stats"] == doc["stats"]
    assert "Warning" not in streamscope("show", doc["trace_id"]).stderr


def test_unreadable_usage_details_leave_the_trace_readable(isolated_env, tool_user):
    doc = response_doc(streamscope("-m", "tool-user", "--json", "hi").stdout)
    db = logs_db(isolated_env)
    db["streamscope_traces"].update(doc["trace_id"], {"usage_json": "{not json"})
    shown = response_doc(streamscope("show", doc["trace_id"], "--json").stdout)
    # Without the reasoning figure, every streamed model token is compared with usage.
    assert shown["stats"]["usage_reasoning_tokens"] is None
    assert shown["stats"]["streamed_compared"] == "text+reasoning+tool calls"
    assert shown["stats"]["tokens_minus_usage"] == 3 + 3 + 8 - 30


# Runs, the writer's own calls, llm's turns


def written_trace(path, trace_id, fragments=(), **fields):
    """A trace written by a real TraceWriter, as one response of a run writes it."""
    from llm_streamscope.analysis.trace import Arrivals, Trace

    trace = Trace(
        trace_id,
        "streamscope-sim",
        "o200k_base",
        True,
        "x",
        None,
        fields.pop("started"),
        tuple(fragments),
        **fields,
    )
    arrivals = Arrivals()
    arrivals.flowing.set()
    writer = store.TraceWriter(path, arrivals)
    writer.open(trace)
    writer.finish(trace, None, None)
    return trace


def test_old_traces_become_runs_of_their_own(tmp_path):
    path = tmp_path / "old.db"
    db = store.connect(path)
    llm_migrate(db)
    store.migrations.apply(db, stop_before="m003_runs")
    db["streamscope_traces"].insert(
        {
            "id": "01old",
            "model": "m",
            "encoding": "o200k_base",
            "started_utc": "2025",
            "status": "complete",
        }
    )
    # Read as it is (no run has migrated it yet): each trace is a run of its own.
    assert stored.find_run(db, None, latest=True) == ["01old"]
    assert stored.find_run(db, "01old") == ["01old"]
    (row,), _ = stored.recent_traces(db)
    assert (row["run_id"], row["run_index"], row["run_size"]) == ("01old", 0, 1)
    trace, *_ = stored.load_trace(db, "01old")
    assert (trace.run_id, trace.run_index, trace.run_offset_ns) == ("01old", 0, 0)
    store.migrate(db)
    row = db["streamscope_traces"].get("01old")
    assert (row["run_id"], row["run_index"], row["run_offset_ns"]) == ("01old", 0, 0)
    assert ["run_id"] in [index.columns for index in db["streamscope_traces"].indexes]


def test_find_run_by_trace_turn_or_run_id(tmp_path):
    path = tmp_path / "logs.db"
    alone = written_trace(path, "01alone", started="2026-01-01T00:00:00", turn_id="01turn")
    assert (alone.run_id, alone.run_offset_ns) == (None, None)
    for i in (1, 0, 2):  # stored in any order, read in run order
        written_trace(
            path,
            f"01chain{i}",
            started=f"2026-01-02T00:00:0{i}",
            run_id="01run",
            run_index=i,
            run_offset_ns=i * 5_000_000,
            turn_id=f"01t{i}",
        )
    db = stored.open_for_reading(path)
    chain = ["01chain0", "01chain1", "01chain2"]
    assert stored.find_run(db, "01run") == chain
    assert stored.find_run(db, "01RUN") == chain  # ids are case-insensitive, as ULIDs
    assert stored.find_run(db, None, latest=True) == chain
    assert stored.find_run(db, "01CHAIN1") == ["01chain1"]  # a trace of a run: that trace
    assert stored.find_run(db, "01turn") == ["01alone"]  # llm's turn id
    assert stored.find_run(db, "01alone") == ["01alone"]
    trace, row, _ = stored.load_trace(db, "01chain2")
    assert (trace.run_id, trace.run_index, trace.run_offset_ns) == ("01run", 2, 10_000_000)
    assert trace.turn_id == row["turn_id"] == "01t2"  # written as given
    trace, *_ = stored.load_trace(db, "01alone")
    assert (trace.run_id, trace.run_index, trace.run_offset_ns) == ("01alone", 0, 0)
    rows, _ = stored.recent_traces(db)
    assert [(r["id"], r["run_id"], r["run_index"], r["run_size"]) for r in rows] == [
        ("01chain2", "01run", 2, 3),
        ("01chain1", "01run", 1, 3),
        ("01chain0", "01run", 0, 3),
        ("01alone", "01alone", 0, 1),
    ]
    for ident, message in [
        ("01nosuch", "No trace or run with id 01nosuch"),
        (None, "Give a trace id (or llm's response id), or use --latest"),
    ]:
        with pytest.raises(store.StoreError) as raised:
            stored.find_run(db, ident)
        assert str(raised.value) == message
    empty = store.connect(tmp_path / "empty.db")
    store.migrate(empty)
    with pytest.raises(store.StoreError, match=r"^No streamscope traces logged yet$"):
        stored.find_run(empty, None, latest=True)


def test_stop_ends_background_writes_and_finish_writes_the_rest(tmp_path):
    from llm.parts import StreamEvent

    from llm_streamscope.analysis.trace import Arrivals, Fragment, Trace

    path = tmp_path / "logs.db"
    arrivals = Arrivals()
    trace = Trace("01stop", "m", "o200k_base", True, "x", None, "2026", ())
    writer = store.TraceWriter(path, arrivals)
    writer.open(trace)
    arrivals.events.append(StreamEvent(type="text", chunk="Hi"))
    arrivals.times.append(1000)
    started = time.perf_counter()
    writer.stop()  # the thread, still waiting for the stream to flow, ends at once
    assert time.perf_counter() - started < 0.5
    assert not writer._thread.is_alive()
    db = store.connect(path)
    assert fragment_count(db, "01stop") == 0  # stopped before its first write
    done = Trace(
        "01stop", "m", "o200k_base", True, "x", None, "2026", (Fragment(0, "text", "Hi", 1000),)
    )
    writer.finish(done, None, None)
    assert fragment_count(db, "01stop") == 1
    assert db["streamscope_traces"].get("01stop")["status"] == "complete"


def test_streamed_rows_keep_any_text_and_clean_lone_surrogates(tmp_path):
    from llm.parts import StreamEvent

    from llm_streamscope.analysis.align import align
    from llm_streamscope.analysis.encodings import get_encoding
    from llm_streamscope.analysis.trace import Arrivals, Fragment, Trace
    from llm_streamscope.capture.tokenizer import LocalTokenizer

    chunks = [
        ("text", "😀 ok", None),
        ("text", "流式", None),
        ("tool_call_args", '{"a":', "c1"),
        ("text", "smile \ud83d", None),
        ("text", "\ude00!", None),
        ("text", "ab\x00cd", None),  # SQLite's JSON functions would end it at the NUL
    ]
    path = tmp_path / "logs.db"
    arrivals = Arrivals()
    writer = store.TraceWriter(path, arrivals)
    header = Trace("01text", "m", "o200k_base", True, "x", None, "2026", ())
    writer.open(header)
    for i, (kind, chunk, call) in enumerate(chunks):
        arrivals.events.append(StreamEvent(type=kind, chunk=chunk, tool_call_id=call))
        arrivals.times.append(1000 * (i + 1))
    arrivals.flowing.set()
    db = store.connect(path)
    deadline = time.monotonic() + 10
    while fragment_count(db, "01text") < len(chunks) and time.monotonic() < deadline:
        time.sleep(0.05)
    rows = list(
        db.query("select kind, tool_call_id, t_ns, text from streamscope_fragments order by idx")
    )
    assert [(r["kind"], r["text"], r["tool_call_id"]) for r in rows] == [
        ("text", "😀 ok", None),
        ("text", "流式", None),
        ("tool_call_args", '{"a":', "c1"),
        ("text", "smile \ufffd", None),
        ("text", "\ufffd!", None),
        ("text", "ab\x00cd", None),
    ]
    fragments = tuple(
        Fragment(i, r["kind"], r["text"], r["t_ns"], r["tool_call_id"]) for i, r in enumerate(rows)
    )
    trace = Trace("01text", "m", "o200k_base", True, "x", None, "2026", fragments)
    alignment = align(trace, LocalTokenizer(get_encoding("o200k_base")))
    writer.finish(trace, alignment, None)
    types = db.execute(
        "select distinct typeof(starts_mid_token), typeof(ends_mid_token) "
        "from streamscope_fragments"
    ).fetchall()
    assert types == [("integer", "integer")]
    assert store.alignment_matches(stored.stored_placements(db, "01text"), alignment)
