"""Signals at any moment of a run: nothing received is lost, and the run ends with its
views, one line and 130 (Ctrl-C) or 143 (SIGTERM). Real processes, real signals."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from test_store import spawn as store_spawn

STALLED = ("-o", "chunks", "100", "-o", "stall_after", "20", "-o", "stall_s", "30")


def spawn(user_path, *args, **options):
    """``llm streamscope *args`` as the leader of a process group of its own, so
    that a signal can reach the whole group."""
    return store_spawn(user_path, *args, start_new_session=True, **options)


def stored_fragments(user_path, wanted=1, timeout_s=30):
    """How many fragments the run has stored, once there are ``wanted``.

    Read without locks (immutable): a reader's lock, taken as the run writes its
    trace row, would make the run note that the database is busy."""
    deadline = time.monotonic() + timeout_s
    stored = 0
    while time.monotonic() < deadline and stored < wanted:
        time.sleep(0.05)
        try:
            db = sqlite3.connect(f"file:{user_path / 'logs.db'}?immutable=1", uri=True)
            try:
                (stored,) = db.execute("select count(*) from streamscope_fragments").fetchone()
            finally:
                db.close()
        except sqlite3.Error:
            continue  # not made yet, or caught mid-write
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


@pytest.fixture(scope="module")
def live_sim():
    """One simulator process for this module's live views: each run is in a process
    group of its own, so a signal to the run's group never reaches it."""
    from test_liveview import Simulator

    sim = Simulator()
    yield sim
    sim.process.terminate()
    sim.process.wait(10)


def test_sigterm_to_the_process_group_takes_the_live_view_off_the_screen(tmp_path, live_sim):
    from test_liveview import STATUS, cursor_shown_at_end, left_on_screen, live_run

    term = live_run(tmp_path, live_sim, "-o", "chunks", "400", "-o", "speed", "0.3")
    term.wait_for(STATUS.pattern)
    os.killpg(term.process.pid, signal.SIGTERM)  # timeout, systemd, a CI runner
    assert term.finish() == 143
    end = term.text()
    assert not left_on_screen(end), end
    assert cursor_shown_at_end(bytes(term.raw))
    assert b"alignment" in term.raw and "terminated (SIGTERM)" in end
    (row,) = trace_rows(tmp_path / "user")
    assert row["status"] == "interrupted" and 0 < row["stored"] < 400


def test_the_live_view_leaves_the_screen_when_the_run_is_killed(tmp_path, live_sim):
    from test_liveview import STATUS, cursor_shown_at_end, left_on_screen, live_run

    term = live_run(tmp_path, live_sim, "-o", "chunks", "400", "-o", "speed", "0.3")
    term.wait_for(STATUS.pattern)
    term.process.kill()  # the run alone, and no handler of its own runs
    assert term.finish() == -signal.SIGKILL  # the reader ends once the helper has too
    assert not left_on_screen(term.text()), term.text()
    assert cursor_shown_at_end(bytes(term.raw))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_tokenizer_process_ignores_the_runs_signals_and_ends_with_its_input(signum):
    from llm_streamscope.capture.tokenizer import TokenizerProcess

    tokenizer = TokenizerProcess("o200k_base")
    os.kill(tokenizer._process.pid, signum)  # while it starts and loads
    tokenizer.wait_ready()
    os.kill(tokenizer._process.pid, signum)
    assert tokenizer.tokenize(["hello world"])[0][0].tolist() == [24912, 2375]
    tokenizer.close()
    assert tokenizer._process.wait(10) == 0  # its input closed: it ends by itself


# The window between the stream's end and the trace being saved.


def run_in_process(*args):
    from click.testing import CliRunner
    from llm.cli import cli

    return CliRunner().invoke(cli, ["streamscope", *args], catch_exceptions=False)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_after_the_stream_saves_everything_then_exits(
    isolated_env, monkeypatch, signum, code
):
    from llm_streamscope.analysis import align

    real_align = align.align

    def signalled_align(*args, **kwargs):  # the stream is over, nothing saved yet
        os.kill(os.getpid(), signum)
        return real_align(*args, **kwargs)

    monkeypatch.setattr(align, "align", signalled_align)
    result = run_in_process("-m", "streamscope-sim", "-o", "speed", "0", "-o", "chunks", "300", "x")
    assert result.exit_code == code, result.output
    assert "Aborted!" not in result.output and "─ alignment ─" in result.stdout
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")
    assert "once the stream was over" in result.stderr
    (row,) = trace_rows(isolated_env)
    assert row["status"] == "complete" and row["stored"] == 300 and row["turn_id"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back as it was


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_as_the_stream_ends_in_llms_code_keeps_the_complete_trace(
    isolated_env, monkeypatch, signum, code
):
    from llm_streamscope.session import Session

    real_ended = Session.ended

    def signalled_ended(self, record):  # the stream has ended: llm's loop is next
        real_ended(self, record)
        os.kill(os.getpid(), signum)

    monkeypatch.setattr(Session, "ended", signalled_ended)
    result = run_in_process("-m", "streamscope-sim", "-o", "speed", "0", "-o", "chunks", "50", "x")
    assert result.exit_code == code, result.output
    assert "─ alignment ─" in result.stdout and "Aborted!" not in result.output
    assert result.stderr.endswith("once the stream was over\n")
    assert result.stderr.count("Error: ") == 1
    (row,) = trace_rows(isolated_env)
    assert row["status"] == "complete" and row["stored"] == 50


def hold_the_lock(user_path):
    """Another connection holding logs.db's write lock (readers still read)."""
    from llm_streamscope.store import writer as store

    store.prepare(user_path / "logs.db")
    lock = sqlite3.connect(user_path / "logs.db", isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN IMMEDIATE")
    return lock


def test_a_locked_database_shows_the_views_waits_and_ctrl_c_sets_the_trace_aside(isolated_env):
    lock = hold_the_lock(isolated_env)
    args = ("-m", "streamscope-sim", "-o", "speed", "0", "-o", "chunks", "40", "x")
    proc = spawn(isolated_env, *args)
    waiting = ""
    while "waiting to save" not in waiting:  # the window, held open by the lock
        line = proc.stderr.readline().decode()
        assert line, "the run ended without waiting"
        waiting = line
    os.killpg(proc.pid, signal.SIGINT)  # (SIGTERM is the same wait's way out)
    out, err = proc.communicate(timeout=60)
    lock.execute("ROLLBACK")
    assert proc.returncode == 130, err
    assert "─ alignment ─" in out.decode()  # the views, shown while it waited
    (line,) = err.decode().splitlines()
    assert line.startswith("Error: ") and "the next run imports it" in line
    (aside,) = (isolated_env / "logs.db-streamscope-unsaved").glob("*.db")
    shown = run_in_process("show", "-d", str(aside), "--latest")
    assert shown.exit_code == 0 and "status          complete" in shown.stdout

    result = run_in_process("-m", "streamscope-sim", "-o", "speed", "0", "-o", "chunks", "3", "y")
    assert result.exit_code == 0, result.output
    assert "set aside while" in result.stderr
    assert not (isolated_env / "logs.db-streamscope-unsaved").exists()
    rows = trace_rows(isolated_env)
    assert sorted((r["status"], r["stored"]) for r in rows) == [("complete", 3), ("complete", 40)]


def test_a_database_locked_past_the_old_limit_still_gets_the_trace(isolated_env, monkeypatch):
    from llm_streamscope.store import saving
    from llm_streamscope.store import writer as store

    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.1)  # the old give-up time, made short
    monkeypatch.setattr(saving, "QUIET_WAIT_S", 0.1)
    lock = hold_the_lock(isolated_env)
    release = threading.Timer(1.5, lock.execute, ["ROLLBACK"])
    release.start()
    result = run_in_process("-m", "streamscope-sim", "-o", "speed", "0", "-o", "chunks", "9", "x")
    release.join()
    assert result.exit_code == 0, result.output
    assert "waiting to save the trace (Ctrl-C saves it in" in result.stderr
    (row,) = trace_rows(isolated_env)
    assert row["status"] == "complete" and row["stored"] == 9 and row["turn_id"]


# Ctrl-C at any moment


def test_ctrl_c_while_llm_starts_ends_with_130_and_nothing_more():
    code = (
        "import os, signal, sys, time\n"
        "sys.argv = ['llm', 'streamscope', 'x']\n"
        "import llm_streamscope\n"  # as llm loads its plugins
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(10)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (130, b"", b"")


def test_ctrl_c_during_the_final_report_ends_with_130_and_no_traceback(isolated_env, monkeypatch):
    from llm_streamscope.cli import common

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(common, "print_views", interrupted)
    result = run_in_process("-m", "streamscope-sim", "-o", "speed", "0", "x")
    assert result.exit_code == 130
    assert "Aborted!" not in result.output and "Traceback" not in result.output
    (row,) = trace_rows(isolated_env)
    assert row["status"] == "complete"  # saved before the report


# Interrupted inspect - and replay: treated as a run's interrupted stream.


def unread(fd):
    """Bytes waiting in the pipe whose read end is ``fd``."""
    import array
    import fcntl
    import termios

    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return count[0]


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_inspect_of_stdin_shows_and_logs_what_arrived(isolated_env, signum, code):
    from test_inspect import TEXTS, chunk, sse

    read_end, write_end = os.pipe()
    proc = spawn(isolated_env, "inspect", "-", "--log", stdin=read_end)
    os.write(write_end, sse(*(chunk({"content": t}) for t in TEXTS[:3])))
    deadline = time.monotonic() + 30
    while unread(read_end) and time.monotonic() < deadline:  # until inspect has read them
        time.sleep(0.02)
    time.sleep(0.1)
    os.killpg(proc.pid, signum)
    out, err = proc.communicate(timeout=60)
    os.close(write_end)
    os.close(read_end)
    assert proc.returncode == code, err
    *warnings, line = err.decode().splitlines()  # (the bytes were waiting before it read)
    assert all(w.startswith("Warning: ") for w in warnings)
    assert line.startswith("Error: -: stream interrupted after ")
    assert "─ alignment ─" in out.decode() and "status          interrupted" in out.decode()
    (row,) = trace_rows(isolated_env)
    assert row["status"] == "interrupted" and row["stored"] == 3


def test_an_interrupted_replay_shows_the_views(isolated_env):
    # Three fragments at once, then a stall (0.1 s; ten seconds replayed at 0.01):
    # the replay shows text within milliseconds and is still going when interrupted.
    stalled = ("-o", "stall_after", "3", "-o", "stall_s", "0.1")
    logged = run_in_process(
        "-m", "streamscope-sim", "-o", "speed", "0", "-o", "chunks", "30", *stalled, "x"
    )
    assert logged.exit_code == 0
    proc = spawn(isolated_env, "replay", "--latest", "--speed", "0.01")
    assert proc.stdout.read(4)  # the replay has begun
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.decode() == "Error: replay interrupted (Ctrl-C)\n"
    assert "─ alignment ─" in out.decode() and "Aborted!" not in out.decode()


def test_held_signals_are_noted_once_and_a_second_one_stops_at_once():
    from llm_streamscope.capture.signals import RunSignals

    before = signal.getsignal(signal.SIGINT)
    with RunSignals() as signals:
        with pytest.raises(KeyboardInterrupt):  # not held: as Python does
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        signals.hold()
        os.kill(os.getpid(), signal.SIGTERM)  # noted, not raised
        time.sleep(0.01)
        assert signals.received == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):  # a second: the user insists
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is before
