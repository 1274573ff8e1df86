"""The end of the `llm streamscope` process: once everything is printed it ends with the
run's exit status, without Python's teardown of llm's imports; never in-process."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest
from click.testing import CliRunner
from llm.cli import cli

from llm_streamscope import exiting, prestart

FAST = ("-m", "streamscope-sim", "-o", "speed", "0", "-o", "chunks", "12")


class Ended(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.code = code


@pytest.fixture
def the_command(monkeypatch):
    """This process taken for the command: os._exit raises Ended instead, and what
    the atexit functions and the flushes did is kept in order."""
    done = []
    monkeypatch.setattr(prestart, "is_the_command", True)

    def exit_now(code):
        done.append(("exit", code))
        raise Ended(code)

    monkeypatch.setattr(exiting.os, "_exit", exit_now)
    monkeypatch.setattr(exiting.atexit, "_run_exitfuncs", lambda: done.append(("atexit",)))
    return done


def invoke(*args):
    return CliRunner().invoke(cli, ["streamscope", *args])


def test_a_run_ends_the_process_once_everything_is_printed(the_command):
    result = invoke(*FAST, "hi")
    assert isinstance(result.exception, Ended) and result.exception.code == 0
    assert "─ stats ─" in result.stdout  # printed before the end
    assert the_command == [("atexit",), ("exit", 0)]


def test_a_failed_run_ends_it_with_the_runs_exit_status(the_command):
    result = invoke(*FAST, "-o", "drop_after", "3", "hi")
    assert isinstance(result.exception, Ended) and result.exception.code == 1
    assert result.stderr.startswith("Error: stream error after 3 fragments: ")
    assert the_command[-1] == ("exit", 1)


def test_in_process_a_run_returns(isolated_env):
    assert not prestart.is_the_command  # pytest's command line is not llm's
    result = invoke(*FAST, "hi")
    assert result.exit_code == 0 and result.exception is None


def test_the_command_prints_and_logs_everything_through_a_pipe(isolated_env, tmp_path):
    env = {**os.environ, "LLM_USER_PATH": str(isolated_env)}
    env.pop("STREAMSCOPE_SIM_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "llm", "streamscope", *FAST, "--json", "hi"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("}")  # the whole document, flushed
    db = sqlite3.connect(isolated_env / "logs.db")
    (fragments,) = db.execute("select count(*) from streamscope_fragments").fetchone()
    db.close()
    assert fragments == 12
    failed = subprocess.run(
        [sys.executable, "-m", "llm", "streamscope", *FAST, "-o", "drop_after", "3", "hi"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 1
    assert failed.stderr.startswith("Error: stream error after 3 fragments: ")
    assert "─ stats ─" in failed.stdout
