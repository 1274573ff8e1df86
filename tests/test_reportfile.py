"""`--html`/`--svg` replace only what streamscope wrote: a logs.db given by mistake, or
any other file, is kept (one error line, exit 1) unless `--overwrite` is given."""

import sqlite3

from click.testing import CliRunner
from llm.cli import cli

SIM = ("-m", "streamscope-sim", "-o", "speed", "0", "-o", "max_tokens", "5", "--no-live")


def streamscope(*args):
    return CliRunner().invoke(cli, ["streamscope", *args], catch_exceptions=False)


def traces(db_path):
    with sqlite3.connect(db_path) as db:
        return db.execute("select count(*) from streamscope_traces").fetchone()[0]


def test_a_report_pointed_at_logs_db_is_refused_and_the_database_kept(isolated_env):
    logs = isolated_env / "logs.db"
    assert streamscope(*SIM, "hi").exit_code == 0
    for args in (
        (*SIM, "--html", str(logs), "hi"),
        ("show", "--latest", "--svg", str(logs)),
        ("show", "--latest", "--html", str(logs)),
        ("whatif", "--latest", "--html", str(logs)),
        ("compare", "--from-logs", "-m", "streamscope-sim", "--html", str(logs)),
    ):
        result = streamscope(*args)
        assert result.exit_code == 1, args
        assert result.stderr == (
            f"Error: Not writing {logs}: it is a SQLite database (--overwrite replaces it)\n"
        )
        assert result.stdout == ""  # refused before the run: nothing else happened
    assert traces(logs) == 1


def test_a_logs_db_that_the_run_itself_creates_is_kept_too(isolated_env):
    """Checked again at the end: the file did not exist when the options were read."""
    logs = isolated_env / "logs.db"
    result = streamscope(*SIM, "--html", str(logs), "hi")
    assert result.exit_code == 1
    assert result.stderr.endswith("it is a SQLite database (--overwrite replaces it)\n")
    assert "─ stats ─" in result.stdout  # the views were shown all the same
    assert traces(logs) == 1


def test_any_other_file_is_kept_but_our_own_reports_are_rewritten(tmp_path, isolated_env):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    assert streamscope(*SIM, "hi").exit_code == 0
    result = streamscope("show", "--latest", "--html", str(notes))
    assert result.exit_code == 1
    assert "it exists and is not a report streamscope wrote" in result.stderr
    assert notes.read_text() == "my notes\n"

    report, drawing, empty = tmp_path / "r.html", tmp_path / "r.svg", tmp_path / "empty"
    empty.touch()
    for _ in range(2):  # written, then replaced: they are ours
        args = ("--html", str(report), "--svg", str(drawing))
        assert streamscope("show", "--latest", *args).exit_code == 0
    assert report.read_text().startswith("<!doctype html>")
    assert drawing.read_text().splitlines()[1].startswith("<svg")
    assert streamscope("show", "--latest", "--svg", str(empty)).exit_code == 0


def test_overwrite_replaces_what_is_not_ours(tmp_path, isolated_env):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    assert streamscope(*SIM, "--html", str(notes), "--overwrite", "hi").exit_code == 0
    assert "<html" in notes.read_text()
    notes.write_text("my notes\n")
    result = streamscope("whatif", "--latest", "--html", str(notes), "--overwrite")
    assert result.exit_code == 0
    assert "<html" in notes.read_text()
