"""`--wire` end to end: the real llm CLI and plugins, the tap on real loopback sockets."""

import json

import pytest
import sqlite_utils
from click.testing import CliRunner
from conftest import streaming_model
from llm.cli import cli
from tlsproxy import GEMINI_HOST, GEMINI_KEY, certificate, proxy, tls_proxy

from llm_streamscope.sim.server import SimServer, get_server


def run(*args, input=None):
    return CliRunner().invoke(cli, ["streamscope", *args], input=input, catch_exceptions=False)


def run_json(*args):
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return result, json.loads(result.stdout)


FAST = ("-m", "streamscope-sim", "-o", "speed", "0")
__all__ = ["certificate", "proxy", "tls_proxy"]  # fixtures, from tlsproxy


def text_chunks(doc):
    return [f for f in doc["fragments"] if f["kind"] == "text" and f["text"]]


def test_wire_times_every_text_chunk_by_the_sse_event_that_carried_it():
    _, run_doc = run_json(*FAST, "-o", "seed", "5", "-o", "chunks", "30", "--wire", "Explain SSE")
    (doc,) = run_doc["responses"]
    wire = doc["wire"]
    server = get_server()
    assert (wire["source"], wire["format"], wire["framing"]) == ("socket", "openai-chat", "sse")
    assert wire["status"] == 200
    assert wire["url"] == server.base_url + "/chat/completions"
    assert wire["headers"]["content-type"].startswith("text/event-stream")
    chunks = text_chunks(doc)
    sent = server.send_log(server.last_completion_id)
    assert [f["text"] for f in chunks] == sent.chunks
    # Every chunk has a wire time, and llm handed it over no earlier than its bytes arrived.
    assert all(f["wire_t_ms"] is not None and f["wire_t_ms"] <= f["llm_t_ms"] for f in chunks)
    labels = [e["label"] for e in wire["events"]]
    assert labels[0] == "role" and labels[-1] == "done"
    assert labels.count("text") == len(chunks)
    assert sum(r["bytes"] for r in wire["reads"]) == doc["stats"]["wire"]["body_bytes"]
    # The events' times are those of the reads that carried their last bytes.
    read_times = [r["t_ms"] for r in wire["reads"]]
    assert all(e["t_ms"] == read_times[e["last_read"]] for e in wire["events"])
    stats = doc["stats"]
    assert stats["clock"] == "wire"
    assert stats["ttft_ms"] == chunks[0]["wire_t_ms"]  # TTFT from the wire
    assert stats["wire"]["events"] == len(labels)
    assert stats["wire"]["events_without_output"] == len(labels) - labels.count("text")
    assert stats["wire"]["client_delay_ms"]["count"] == len(chunks)
    assert stats["wire"]["first_content_ms"] == stats["ttft_ms"]
    assert stats["wire"]["headers_ms"] <= stats["wire"]["first_event_ms"] <= stats["ttft_ms"]


def test_without_wire_nothing_is_recorded_and_times_are_llms():
    _, run_doc = run_json(*FAST, "-o", "chunks", "5", "hi")
    (doc,) = run_doc["responses"]
    assert doc["wire"] is None
    assert doc["stats"]["clock"] == "llm" and doc["stats"]["wire"] is None
    assert all(f["wire_t_ms"] is None for f in doc["fragments"])


def test_the_view_shows_the_wire(isolated_env):
    result = run(*FAST, "-o", "chunks", "6", "--wire", "hi")
    assert result.exit_code == 0, result.output
    out = result.stdout
    wire = out.split("─ wire ─")[1]
    assert "openai-chat (sse)" in wire
    assert "role → text ×6 → finish → usage → done" in wire
    assert "clock" in out.split("─ stats ─")[1]
    # the same from logs.db
    shown = run("show", "--latest", "--wire")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.split("─ alignment ─")[1] == out.split("─ alignment ─")[1]


def test_the_wire_is_logged_and_read_back(isolated_env):
    _, live = run_json(*FAST, "-o", "chunks", "8", "-o", "seed", "2", "--wire", "hi")
    _, shown = run_json("show", "--latest")
    assert shown["responses"][0]["wire"] == live["responses"][0]["wire"]
    assert shown["responses"][0]["fragments"] == live["responses"][0]["fragments"]
    assert shown["responses"][0]["stats"] == live["responses"][0]["stats"]
    db = sqlite_utils.Database(isolated_env / "logs.db")
    (row,) = db["streamscope_wire"].rows
    assert "?" not in row["url"] and row["source"] == "socket"
    total = db.execute("select sum(length(data)) from streamscope_wire_reads").fetchone()[0]
    assert total == row["body_bytes"]
    events = list(db["streamscope_wire_events"].rows)
    assert len(events) == len(live["responses"][0]["wire"]["events"])
    assert events[0]["label"] == "role"
    exported = run("export", "--latest", "--wire", "-F", "csv")
    lines = exported.stdout.splitlines()
    assert lines[0].startswith("trace_id,index,t_ms,label,carried,event")
    assert len(lines) == 1 + len(events)
    fragments = run("export", "--latest", "-F", "jsonl").stdout.splitlines()
    assert fragments and all("wire_t_ms" in json.loads(line) for line in fragments)


@pytest.fixture(scope="module")
def messages_server():
    with SimServer(defaults={"speed": 0, "seed": 4, "chunks": 12}) as server:
        yield server


SECRET = "sk-ant-never-stored-7f3a"


@pytest.fixture
def claude(messages_server, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", messages_server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    return messages_server


@pytest.mark.parametrize("mode", [(), ("--async",)])
def test_wire_through_llm_anthropic(claude, isolated_env, mode):
    _, run_doc = run_json("-m", "claude-haiku-4.5", *mode, "--wire", "hi")
    (doc,) = run_doc["responses"]
    wire = doc["wire"]
    assert (wire["format"], wire["framing"], wire["status"]) == ("anthropic", "sse", 200)
    labels = [e["label"] for e in wire["events"]]
    chunks = text_chunks(doc)
    assert (
        labels.count("text")
        == len(chunks)
        == len(claude.send_log(claude.last_completion_id).chunks)
    )
    assert all(f["wire_t_ms"] is not None for f in chunks)
    assert doc["stats"]["clock"] == "wire"
    # Nothing that holds the key is stored: request headers are never recorded.
    assert SECRET.encode() not in (isolated_env / "logs.db").read_bytes()


def test_a_model_the_tap_cannot_see_runs_without_the_wire(register_models):
    register_models(streaming_model("elsewhere", "not over", " a tapped socket"))
    result = run("-m", "elsewhere", "--wire", "--json", "hi")
    assert result.exit_code == 0, result.output
    assert "--wire cannot see elsewhere's requests" in result.stderr
    assert json.loads(result.stdout)["responses"][0]["wire"] is None


def test_the_tap_is_gone_after_the_run():
    import httpcore2

    before = httpcore2._backends.sync.SyncBackend.connect_tcp
    run_json(*FAST, "-o", "chunks", "3", "--wire", "hi")
    assert httpcore2._backends.sync.SyncBackend.connect_tcp is before


@pytest.fixture(scope="module")
def server():
    """The simulator behind the TLS proxy (tests/tlsproxy.py)."""
    with SimServer(defaults={"speed": 0, "seed": 6}) as running:
        yield running


@pytest.mark.parametrize("mode", [(), ("--async",)])
def test_wire_through_llm_gemini_over_tls(proxy, server, isolated_env, mode):
    _, run_doc = run_json("-m", "gemini-2.5-flash", *mode, "--wire", "hi")
    (doc,) = run_doc["responses"]
    wire = doc["wire"]
    # llm-gemini reads the JSON-array stream, gzipped, as the real API sends it
    assert (wire["format"], wire["framing"], wire["status"]) == ("gemini", "json-array", 200)
    assert (
        wire["url"] == f"https://{GEMINI_HOST}/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    )
    assert wire["headers"]["content-encoding"] == "gzip"
    sent = server.send_log(server.last_completion_id)
    chunks = text_chunks(doc)
    assert "".join(f["text"] for f in chunks) == "".join(
        c for c, kind in zip(sent.chunks, sent.kinds) if kind == "text"
    )
    assert all(f["wire_t_ms"] is not None for f in chunks)
    assert doc["stats"]["clock"] == "wire"
    assert GEMINI_KEY.encode() not in (isolated_env / "logs.db").read_bytes()


def test_a_tool_chain_has_the_wire_of_each_request():
    _, run_doc = run_json(
        *FAST, "-o", "chunks", "4", "-T", "llm_time", "--wire", "What time is it?"
    )
    call, answer = run_doc["responses"]
    call_labels = [e["label"] for e in call["wire"]["events"]]
    assert "tool_call_name" in call_labels and "tool_call_args" in call_labels
    assert "text" not in call_labels
    args = [f for f in call["fragments"] if f["kind"] == "tool_call_args" and f["text"]]
    assert args and all(f["wire_t_ms"] is not None for f in args)
    assert [e["label"] for e in answer["wire"]["events"]].count("text") == 4
    assert answer["stats"]["clock"] == "wire"
