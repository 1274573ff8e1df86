"""Signals at any moment of a run: nothing received is lost, and the run ends with its
views, one line and 130 (Ctrl-C) or 143 (SIGTERM). Real processes, real signals."""

import json
import os
import signal
import sqlite3
import time

import pytest
from test_store import spawn as store_spawn

STALLED = ("-o", "chunks", "100", "-o", "stall_after", "20", "-o", "stall_s", "30")


def spawn(user_path, *args, **options):
    """``llm streamscope *args`` as the leader of a process group of its own, so
    that a signal can reach the whole group."""
    return store_spawn(user_path, *args, start_new_session=True, **options)


def stored_fragments(user_path, wanted=1, timeout_s=30):
    """How many fragments the run has stored, once there are ``wanted``."""
    deadline = time.monotonic() + timeout_s
    stored = 0
    while time.monotonic() < deadline and stored < wanted:
        time.sleep(0.05)
        try:
            db = sqlite3.connect(user_path / "logs.db", timeout=0.1)
            (stored,) = db.execute("select count(*) from streamscope_fragments").fetchone()
            db.close()
        except sqlite3.Error:
            continue  # not made yet, or busy
    return stored


def trace_rows(user_path):
    db = sqlite3.connect(user_path / "logs.db")
    db.row_factory = sqlite3.Row
    rows = [dict(r) for r in db.execute("select * from streamscope_traces")]
    for row in rows:
        (row["stored"],) = db.execute(
            "select count(*) from streamscope_fragments where trace_id = ?", [row["id"]]
        ).fetchone()
    db.close()
    return rows


# A signal to the whole process group reaches the tokenizer process too.


def test_ctrl_c_to_the_process_group_in_a_pipe_keeps_the_views(isolated_env):
    proc = spawn(isolated_env, "-m", "streamscope-sim", "-o", "speed", "0", *STALLED, "x")
    assert stored_fragments(isolated_env) > 0  # mid-stream: in the stall
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.decode().count("\n") == 1
    assert err.decode().startswith("Error: stream interrupted after 20 fragments")
    assert "─ alignment ─" in out.decode() and "tokens/s" in out.decode()
    (row,) = trace_rows(isolated_env)
    assert row["status"] == "interrupted" and row["stored"] == 20


def test_sigterm_to_the_process_group_keeps_the_json_document(isolated_env, tmp_path):
    out_path = tmp_path / "out.json"
    with open(out_path, "wb") as out:
        args = ("-m", "streamscope-sim", "-o", "speed", "0", *STALLED, "--json", "x")
        proc = spawn(isolated_env, *args, stdout=out)
        assert stored_fragments(isolated_env) > 0
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.decode().count("\n") <= 2  # llm's newline after the stream, then the line
    assert "Error: stream interrupted after 20 fragments: terminated (SIGTERM)\n" in err.decode()
    (response,) = json.loads(out_path.read_text())["responses"]
    assert response["status"] == "interrupted" and len(response["fragments"]) == 20


def test_sigterm_to_the_process_group_takes_the_live_view_off_the_screen(tmp_path):
    from test_liveview import STATUS, Simulator, cursor_shown_at_end, left_on_screen, live_run

    sim = Simulator()
    try:
        term = live_run(tmp_path, sim, "-o", "chunks", "400", "-o", "speed", "0.3")
        term.wait_for(STATUS.pattern)
        os.killpg(term.process.pid, signal.SIGTERM)  # timeout, systemd, a CI runner
        assert term.finish() == 143
    finally:
        sim.process.terminate()
        sim.process.wait(10)
    end = term.text()
    assert not left_on_screen(end), end
    assert cursor_shown_at_end(bytes(term.raw))
    assert b"alignment" in term.raw and "terminated (SIGTERM)" in end
    (row,) = trace_rows(tmp_path / "user")
    assert row["status"] == "interrupted" and 0 < row["stored"] < 400


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_tokenizer_process_ignores_the_runs_signals_and_ends_with_its_input(signum):
    from llm_streamscope.tokenizer import TokenizerProcess

    tokenizer = TokenizerProcess("o200k_base")
    os.kill(tokenizer._process.pid, signum)  # while it starts and loads
    tokenizer.wait_ready()
    os.kill(tokenizer._process.pid, signum)
    assert tokenizer.tokenize(["hello world"])[0][0].tolist() == [24912, 2375]
    tokenizer.close()
    assert tokenizer._process.wait(10) == 0  # its input closed: it ends by itself
