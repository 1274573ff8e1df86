"""One clock per document, and no time where none is known.

Every time a document shows (views, ``--json``, export, HTML, timeline) is on the
clock ``stats.clock`` names; the other clock keeps its own name. Bytes that were
already waiting when ``inspect -`` began reading have no arrival time.
"""

import csv
import io
import json
import os
import re
import threading
import time

import pytest
from click.testing import CliRunner
from llm.cli import cli
from test_inspect import OPENAI, TEXTS, write

from llm_streamscope.inspection import InspectSettings, inspect_source
from llm_streamscope.render import stats_table, trace_document
from llm_streamscope.wire.sources import read_stdin

FAST = ("-m", "streamscope-sim", "-o", "speed", "0", "-o", "seed", "3", "-o", "chunks", "12")


def streamscope(*args):
    result = CliRunner().invoke(cli, ["streamscope", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def text_chunks(doc):
    return [f for f in doc["fragments"] if f["kind"] == "text" and f["text"]]


def check_one_clock(doc):
    """The first text chunk's t_ms is the TTFT; a token's t_ms is its last fragment's."""
    chunks = text_chunks(doc)
    assert chunks[0]["t_ms"] == doc["stats"]["ttft_ms"]
    by_index = {f["index"]: f for f in doc["fragments"]}
    text = next(s for s in doc["streams"] if s["kind"] == "text")
    assert [t["t_ms"] for t in text["tokens"]] == [
        by_index[t["last_fragment"]]["t_ms"] for t in text["tokens"]
    ]


@pytest.mark.parametrize("wire", [True, False])
def test_every_time_of_every_document_is_on_the_stats_clock(wire, tmp_path):
    flags = ("--wire",) if wire else ()
    html = tmp_path / "report.html"
    run_doc = json.loads(streamscope("run", *FAST, *flags, "--json", "--html", str(html), "hi"))
    (doc,) = run_doc["responses"]
    check_one_clock(doc)
    chunks = text_chunks(doc)
    if wire:
        assert doc["stats"]["clock"] == "wire"
        # The wire's time is the document's; llm's own is beside it, under its name.
        assert all(f["t_ms"] == f["wire_t_ms"] for f in chunks)
        assert all(f["llm_t_ms"] >= f["wire_t_ms"] for f in chunks)
        assert any(f["llm_t_ms"] > f["wire_t_ms"] for f in chunks)
        delays = doc["stats"]["wire"]["client_delay_ms"]
        assert delays["count"] == len(chunks) and delays["max"] > 0
    else:
        assert doc["stats"]["clock"] == "llm"
        assert all(f["t_ms"] == f["llm_t_ms"] and f["wire_t_ms"] is None for f in chunks)
    # The HTML's first token is complete when the TTFT says.
    first = re.search(r"complete at ([0-9.]+) ms", html.read_text())
    assert first is not None and first.group(1) == f"{doc['stats']['ttft_ms']:.1f}"
    # The logged run, read back: show --json and export jsonl / csv say the same times.
    (shown,) = json.loads(streamscope("show", "--latest", "--json"))["responses"]
    assert [f["t_ms"] for f in shown["fragments"]] == [f["t_ms"] for f in doc["fragments"]]
    assert shown["stats"]["ttft_ms"] == doc["stats"]["ttft_ms"]
    jsonl = streamscope("export", "--latest", "--format", "jsonl")
    rows = [json.loads(line) for line in jsonl.splitlines()]
    assert [(r["t_ms"], r["llm_t_ms"], r["wire_t_ms"]) for r in rows] == [
        (f["t_ms"], f["llm_t_ms"], f["wire_t_ms"]) for f in doc["fragments"]
    ]
    table = list(csv.DictReader(io.StringIO(streamscope("export", "--latest", "--format", "csv"))))
    assert [float(r["t_ms"]) for r in table] == [f["t_ms"] for f in doc["fragments"]]


def test_the_timeline_counts_by_the_wire_with_wire(isolated_env):
    out = streamscope("run", *FAST, "--wire", "--timeline-by-time", "hi")
    doc = json.loads(streamscope("show", "--latest", "--json"))["responses"][0]
    ttft = doc["stats"]["ttft_ms"]
    last = text_chunks(doc)[-1]["t_ms"]
    assert f"TTFT {ttft:,.1f} ms" in out
    assert f"chunks in {last:,.1f} ms" in out  # the wire's last chunk, not llm's


def waiting_pipe(before: bytes, after: list[bytes], pause_s: float = 0.05):
    """A real pipe holding ``before`` already, and a thread writing ``after`` later."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, before)

    def writer():
        for part in after:
            time.sleep(pause_s)
            os.write(write_fd, part)
        os.close(write_fd)

    thread = threading.Thread(target=writer)
    thread.start()
    return os.fdopen(read_fd, "rb"), thread


def test_bytes_waiting_before_reading_began_are_never_timed():
    events = OPENAI.split(b"\n\n")
    cut = 4  # the role event and three text chunks are already in the pipe
    before = b"\n\n".join(events[:cut]) + b"\n\n"
    after = [e + b"\n\n" for e in events[cut:-1]]
    stream, thread = waiting_pipe(before, after)
    with stream:
        source = read_stdin(stream)
    thread.join()
    assert source.reads[0].t_ns is None and source.reads[0].data == before
    assert all(r.t_ns is not None for r in source.reads[1:])
    inspection = inspect_source(source, InspectSettings())
    (response,) = inspection.result.responses
    stats = response.stats
    doc = json.loads(json.dumps(trace_document(response.trace, response.alignment, stats)))
    chunks = text_chunks(doc)
    assert [f["text"] for f in chunks] == TEXTS  # nothing received is lost
    # The three chunks that were waiting have no time; the rest are timed.
    assert [f["t_ms"] is None for f in chunks] == [True] * 3 + [False] * 3
    assert all(f["llm_t_ms"] is None for f in chunks)
    s = doc["stats"]
    assert s["clock"] == "wire" and s["untimed_chunks"] == 3 and s["chunks"] == 6
    assert s["ttft_ms"] is None and s["ttst_ms"] is None and s["total_ms"] is None
    assert s["gap_ms"]["count"] == 2  # between the three timed chunks only
    assert s["gap_ms"]["min" if "min" in s["gap_ms"] else "p50"] > 10  # written 50 ms apart
    # Rates from the timed chunks: their tokens over their window.
    window = chunks[-1]["t_ms"] - chunks[3]["t_ms"]
    text = next(st for st in doc["streams"] if st["kind"] == "text")
    timed_tokens = sum(1 for t in text["tokens"] if t["t_ms"] is not None)
    assert s["itl_ms"]["mean"] == pytest.approx(window / (timed_tokens - 1))
    console = io.StringIO()
    from rich.console import Console

    Console(file=console, width=100, color_system=None).print(stats_table(response.trace, stats))
    out = console.getvalue()
    assert "3 of 6 text chunks untimed" in out and "times and rates from the other 3" in out
    assert not re.search(r"TTFT\s+0\.0", out)
    assert any("no arrival time" in w for w in inspection.result.warnings)


def test_a_stream_all_waiting_has_no_times_at_all():
    stream, thread = waiting_pipe(OPENAI, [])
    with stream:
        source = read_stdin(stream)
    thread.join()
    (response,) = inspect_source(source, InspectSettings()).result.responses
    s = response.stats
    assert s.untimed_chunks == s.chunks == 6
    assert (s.ttft_ms, s.total_ms, s.tokens_per_s, s.itl_ms.mean) == (None, None, None, None)
    assert s.tokens == 7 and s.one_token_chunks_pct is not None  # the counts stay


def test_an_untimed_file_invents_no_times_in_html_and_says_why_in_the_timeline(tmp_path):
    path = write(tmp_path, "reply.sse", OPENAI)
    html = tmp_path / "report.html"
    out = streamscope("inspect", path, "--timeline", "--html", str(html))
    lines = out.splitlines()
    rule = next(i for i, line in enumerate(lines) if "─ timeline ─" in line)
    assert lines[rule + 1].startswith("timeline: its 6 text chunks have no times")
    page = html.read_text()
    assert "complete at" not in page and "gap " not in page.split("<h2>stats")[0]
    assert "tokens each chunk completed" in page  # needs no time: kept
    assert "arrival of each chunk" not in page
    doc = json.loads(streamscope("inspect", path, "--json"))["responses"][0]
    assert doc["stats"]["untimed_chunks"] == 6 and doc["stats"]["ttft_ms"] is None
    assert all(f["t_ms"] is None and f["llm_t_ms"] is None for f in doc["fragments"])
