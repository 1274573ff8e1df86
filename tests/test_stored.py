"""Stored traces read back: every value through one checked path; every character kept."""

import json
import shutil

import pytest
import sqlite_utils
from click.testing import CliRunner
from conftest import streaming_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llm.cli import cli

from llm_streamscope.analysis.trace import Trace, clean_text
from llm_streamscope.store import writer as store

FAST = ("-m", "streamscope-sim", "-o", "speed", "0")


def streamscope(*args):
    return CliRunner().invoke(cli, ["streamscope", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def logged_once(tmp_path_factory, tiktoken_cache):
    """One logged trace with its wire record, made once: its log database, and its
    --json document."""
    user_path = tmp_path_factory.mktemp("llm-user")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LLM_USER_PATH", str(user_path))
        env.setenv("TIKTOKEN_CACHE_DIR", str(tiktoken_cache))
        result = streamscope(*FAST, "-o", "max_tokens", "8", "--wire", "--json", "hi")
    assert result.exit_code == 0, result.output
    (doc,) = json.loads(result.stdout)["responses"]
    return user_path / "logs.db", doc


@pytest.fixture
def wire_trace(isolated_env, logged_once):
    """A copy of ``logged_once``'s log as this test's logs.db; the trace's document."""
    path, doc = logged_once
    shutil.copyfile(path, isolated_env / "logs.db")
    return doc


READERS = [
    ("show", "--latest", "--json"),
    ("show", "--latest", "--wire"),
    ("export", "--latest", "-F", "jsonl"),
    ("replay", "--latest", "--speed", "0", "--no-live"),
    ("whatif", "--latest", "--json"),
    ("compare", "--from-logs", "-m", "streamscope-sim", "--json"),
]

DAMAGE = [
    ("streamscope_wire", "headers_json", "'{not json'", "is not valid JSON; read as empty"),
    ("streamscope_wire", "format", "'bogus'", "does not decode (unknown format 'bogus'"),
    ("streamscope_wire", "status", "'x'", "is not an integer ('x'); read as empty"),
    ("streamscope_wire", "headers_ns", "'abc'", "is not an integer ('abc'); read as empty"),
    ("streamscope_wire_reads", "data", "'text'", "holds text, not bytes; read as its UTF-8"),
    ("streamscope_wire_reads", "data", "5", "is not bytes (5); read as no bytes"),
    ("streamscope_fragments", "text", "X'ff41'", "holds bytes, not text; read as UTF-8"),
    ("streamscope_fragments", "text", "cast(X'ff41' as text)", "is not UTF-8 text; read as"),
    ("streamscope_fragments", "t_ns", "'x'", "is not an integer ('x'); read as the time before"),
    ("streamscope_fragments", "kind", "X'00'", "holds bytes, not text"),
    ("streamscope_traces", "run_index", "'x'", "is not an integer ('x'); read as 0"),
    ("streamscope_traces", "setup_ns", "'x'", "is not an integer ('x'); read as empty"),
    ("streamscope_traces", "ttft_ms", "'x'", "is not a finite number ('x'); read as empty"),
    ("streamscope_traces", "ttft_ms", "9e999", "is not a finite number (inf); read as empty"),
    ("streamscope_traces", "prompt", "X'00ff'", "holds bytes, not text"),
    ("streamscope_traces", "pid", "'x'", "is not an integer ('x'); read as empty"),
]


@pytest.mark.parametrize(("table", "column", "value", "problem"), DAMAGE)
def test_a_damaged_value_is_one_warning_and_the_rest_of_the_trace_reads(
    isolated_env, wire_trace, table, column, value, problem
):
    trace_id = wire_trace["trace_id"]
    db = sqlite_utils.Database(isolated_env / "logs.db")
    where = {
        "streamscope_fragments": "trace_id = ? and idx = 1",
        "streamscope_wire_reads": "trace_id = ? and idx = 0",
    }.get(table)
    where = where or ("trace_id = ?" if table != "streamscope_traces" else "id = ?")
    db.execute(f"update {table} set {column} = {value} where {where}", [trace_id])
    db.conn.commit()
    named = "streamscope_wire" if column == "format" else column
    if table != "streamscope_traces" and column != "format":
        named = f"{table}.{column}"
    readers = READERS + ([("logs", "--json")] if table == "streamscope_traces" else [])
    for args in readers:
        result = streamscope(*args)
        assert result.exit_code == 0, (args, result.output)
        warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
        assert warnings[0].startswith(f"Warning: trace {trace_id}: {named} {problem}"), args
        # once, however many rows (what follows from it, a wire that no longer decodes,
        # may say so too)
        assert len([w for w in warnings if f"{trace_id}: {named} " in w]) == 1, (args, warnings)
        assert "Traceback" not in result.output
    shown = json.loads(streamscope("show", "--latest", "--json").stdout)["responses"][0]
    damaged_fragment = table == "streamscope_fragments"
    for before, after in zip(wire_trace["fragments"], shown["fragments"]):
        if not (damaged_fragment and before["index"] == 1):
            assert after["text"] == before["text"]
    assert len(shown["fragments"]) == len(wire_trace["fragments"])


@pytest.mark.parametrize(
    ("table", "in_logs"),
    [
        ("streamscope_traces", False),  # logs then lists none, as for a log never written to
        ("streamscope_fragments", True),  # logs counts an unfinished trace's fragments
        ("streamscope_wire", False),
        ("streamscope_wire_reads", False),
    ],
)
def test_a_dropped_table_is_one_error_line(isolated_env, wire_trace, table, in_logs):
    sqlite_utils.Database(isolated_env / "logs.db")[table].drop()
    for args in [*READERS, *([("logs",)] if in_logs else [])]:
        result = streamscope(*args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: "), args


def test_a_dropped_column_reads_as_null_or_its_stand_in(isolated_env, wire_trace):
    db = sqlite_utils.Database(isolated_env / "logs.db")
    db.execute("alter table streamscope_traces drop column model")
    db.execute("alter table streamscope_wire drop column status")
    db.conn.commit()
    warning = (
        f"Warning: trace {wire_trace['trace_id']}: model is missing; read as '(unknown model)'\n"
    )
    # (compare --from-logs picks traces by their model: without the column, one error line)
    for args in [*READERS[:-1], ("logs",)]:
        result = streamscope(*args)
        assert result.exit_code == 0 and result.stderr == warning, (args, result.output)


def test_a_log_that_is_not_a_database(isolated_env):
    logs_db = isolated_env / "logs.db"
    logs_db.write_bytes(b"this is not sqlite" * 100)
    # A run still shows its views, and says the trace was not saved.
    run = streamscope(*FAST, "-o", "max_tokens", "4", "hi")
    assert run.exit_code == 1 and "─ stats ─" in run.stdout
    assert run.stderr.startswith("Error: trace not saved: ") and run.stderr.count("\n") == 1
    assert "file is not a database" in run.stderr
    # -n does not touch it, nor does it create one
    assert streamscope(*FAST, "-o", "max_tokens", "4", "-n", "hi").exit_code == 0
    assert logs_db.read_bytes() == b"this is not sqlite" * 100
    logs_db.unlink()
    assert streamscope(*FAST, "-o", "max_tokens", "4", "-n", "hi").exit_code == 0
    assert not logs_db.exists()
    # Reading it is one error line.
    logs_db.write_bytes(b"this is not sqlite" * 100)
    for args in [*READERS, ("logs",)]:
        result = streamscope(*args)
        assert result.exit_code == 1 and result.stderr.count("\n") == 1, args
        assert "file is not a database" in result.stderr


STORED_TEXTS = "select text from streamscope_fragments order by idx"

# Every character kept: lone surrogates as llm passes them (each read as U+FFFD, as
# the run itself has it), NUL, U+2028, the BOM, and everything else.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=st.lists(any_text, min_size=1, max_size=5))
def test_every_code_point_round_trips_from_fragment_to_show_json(isolated_env, texts):
    from llm.parts import StreamEvent

    from llm_streamscope.analysis.align import align
    from llm_streamscope.analysis.encodings import get_encoding
    from llm_streamscope.analysis.trace import Arrivals, Fragment
    from llm_streamscope.capture.tokenizer import LocalTokenizer

    texts = [*texts, "ab\x00cd", "\u2028\ufeff\ud83d"]
    fragments = tuple(
        Fragment(i, "text", clean_text(text), 1000 * (i + 1)) for i, text in enumerate(texts)
    )
    trace = Trace("01every", "m", "o200k_base", True, "x", None, "2026", fragments)
    path = isolated_env / "every.db"
    path.unlink(missing_ok=True)
    arrivals = Arrivals()
    writer = store.TraceWriter(path, arrivals)
    writer.open(trace)
    # The streamed rows, as the writer's thread writes them from llm's events (its
    # flush called here, not half a second later), then the finished trace's.
    arrivals.events.extend(StreamEvent(type="text", chunk=text) for text in texts)
    arrivals.times.extend(f.t_ns for f in fragments)
    writer._flush(store.connect(path))
    streamed = [r[0] for r in store.connect(path).execute(STORED_TEXTS).fetchall()]
    assert streamed == [clean_text(t) for t in texts]
    writer.stop()
    writer.finish(trace, align(trace, LocalTokenizer(get_encoding("o200k_base"))), None)
    shown = streamscope("show", "01every", "--json", "-d", str(path))
    assert shown.exit_code == 0 and shown.stderr == ""
    (doc,) = json.loads(shown.stdout)["responses"]
    assert [f["text"] for f in doc["fragments"]] == [clean_text(t) for t in texts]


def test_odd_characters_from_a_model_round_trip_through_the_cli(isolated_env, register_models):
    chunks = ("ab\x00cd", " half \ud83d", "\ude00 pair", "\u2028\u2029\ufeff\x00", "\U0010ffff end")
    register_models(streaming_model("odd-text", *chunks))
    run = streamscope("-m", "odd-text", "--json", "hi")
    assert run.exit_code == 0, run.output
    (ran,) = json.loads(run.stdout)["responses"]
    assert [f["text"] for f in ran["fragments"]] == [clean_text(c) for c in chunks]
    shown = streamscope("show", "--latest", "--json")
    assert shown.exit_code == 0 and shown.stderr == ""  # the stored alignment matches, too
    (doc,) = json.loads(shown.stdout)["responses"]
    assert doc["fragments"] == ran["fragments"]
