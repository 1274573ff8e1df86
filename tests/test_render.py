"""Views rendered on a fixed-width StringIO console; model text is always data."""

import io
import json
import re

import pytest
from rich.console import Console

from llm_streamscope.align import align
from llm_streamscope.encodings import get_encoding
from llm_streamscope.render import (
    SPLIT_STYLE,
    AlignmentPanel,
    AlignmentView,
    stats_table,
    trace_document,
    visible,
)
from llm_streamscope.stats import compute_stats
from llm_streamscope.tokenizer import LocalTokenizer
from llm_streamscope.trace import Fragment, Trace


@pytest.fixture(scope="module")
def o200k():
    return get_encoding("o200k_base")


def make(pieces, o200k, kinds=None):
    fragments = tuple(
        Fragment(i, (kinds or {}).get(i, "text"), p, (i + 1) * 1_000_000)
        for i, p in enumerate(pieces)
    )
    trace = Trace(
        "tid",
        "streamscope-sim",
        "o200k_base",
        True,
        "p",
        None,
        "2026-01-01",
        fragments,
        usage_output=3,
        end_ns=len(pieces) * 1_000_000 + 1,
    )
    alignment = align(trace, LocalTokenizer(o200k))
    return trace, alignment, compute_stats(trace, alignment)


SGR = re.compile(r"\x1b\[[0-9;]*m")


def unmarked(out):
    """What the reader sees: rich's own colour codes and the boundary marks removed."""
    return SGR.sub("", out).replace("¦", "").replace("│", "")


def render(renderable, color):
    buf = io.StringIO()
    console = Console(
        file=buf,
        width=60,
        force_terminal=color,
        color_system="truecolor" if color else None,
        highlight=False,
    )
    console.print(renderable)
    return buf.getvalue()


def test_plain_view_marks_tokens_and_chunks(o200k):
    _, alignment, _ = make(["Stre", "aming is", " fast"], o200k)
    out = render(AlignmentView(alignment.stream("text"), "both", color=False), color=False)
    assert out == "Stre│aming¦ is│ fast\n"
    assert render(AlignmentView(alignment.stream("text"), "tokens", False), False) == (
        "Streaming¦ is¦ fast\n"
    )
    assert render(AlignmentView(alignment.stream("text"), "chunks", False), False) == (
        "Stre│aming is│ fast\n"
    )


def test_markup_in_model_text_is_literal(o200k):
    _, alignment, _ = make(["[bold]not bold[/bold] [red]x"], o200k)
    for color in (True, False):
        out = render(AlignmentPanel(alignment, "tokens", color), color)
        assert "[bold]not bold[/bold] [red]x\n" in unmarked(out)


def test_escape_sequences_never_reach_the_terminal(o200k):
    evil = "Hi\x1b[2J\x1b]0;pwned\x07 there\r\u202eevil\x9b31m"
    _, alignment, _ = make([evil], o200k)
    for color in (True, False):
        out = render(AlignmentPanel(alignment, "both", color), color)
        assert "\x1b[2J" not in out and "\x1b]0" not in out and "\x07" not in out
        assert "\r" not in out and "\u202e" not in out and "\x9b" not in out
        seen = unmarked(out)
        assert "Hi␛[2J␛]0;pwned␇ there␍<U+202E>evil\\x9b31m" in seen
    assert visible("a\x1bb\nc\td\x00") == "a␛b\nc\td␀"


def test_newlines_and_tabs_are_visible(o200k):
    _, alignment, _ = make(["line one\n", "\tline two"], o200k)
    out = render(AlignmentView(alignment.stream("text"), "chunks", False), False)
    assert out == "line one↵\n│⇥line two\n"


def test_split_tokens_are_highlighted(o200k):
    _, alignment, _ = make(["Stre", "aming is"], o200k)
    text = AlignmentView(alignment.stream("text"), "both", color=True).text()
    split_spans = [text.plain[s.start : s.end] for s in text.spans if s.style == SPLIT_STYLE]
    assert "".join(split_spans) == "Streaming"
    # Colour: no ¦ marks, but the chunk boundary mark is still there.
    assert text.plain == "Stre│aming is"


def test_character_spanning_tokens_is_shown_once(o200k):
    family = "👨‍👩‍👧‍👦"
    _, alignment, _ = make(["A ", family], o200k)
    out = render(AlignmentView(alignment.stream("text"), "both", False), False)
    assert out.replace("¦", "").replace("│", "") == "A " + family + "\n"


def test_stats_table_lists_the_headline_numbers(o200k):
    trace, _, stats = make(["Hello", " world", "!"], o200k)
    out = render(stats_table(trace, stats), False)
    for label in ("TTFT", "TTST", "tokens/chunk", "gap", "stalls > 50 ms", "ITL", "tokens/s"):
        assert label in out
    assert "1.0 ms (instant)" in out
    assert "3 (o200k_base) · usage reports 3 (+0)" in out


def test_json_document_schema(o200k):
    trace, alignment, stats = make(["Stre", "aming", " is"], o200k, kinds={})
    doc = json.loads(json.dumps(trace_document(trace, alignment, stats)))
    assert doc["model"] == "streamscope-sim" and doc["encoding"] == "o200k_base"
    assert [f["text"] for f in doc["fragments"]] == ["Stre", "aming", " is"]
    first = doc["fragments"][0]
    assert first == {
        "index": 0,
        "kind": "text",
        "tool_call_id": None,
        "text": "Stre",
        "t_ms": 1.0,
        "byte_start": 0,
        "byte_end": 4,
        "token_start": 0,
        "token_end": 1,
        "starts_mid_token": False,
        "ends_mid_token": True,
    }
    s = doc["stats"]
    for key in (
        "ttft_ms",
        "total_ms",
        "chunks",
        "chars",
        "tokens",
        "usage_output_tokens",
        "tokens_per_chunk",
        "gap_ms",
        "stalls",
        "tokens_per_s",
        "itl_ms",
    ):
        assert key in s
    assert set(s["gap_ms"]) >= {"mean", "p50", "p90", "p99", "max"}
    tokens = doc["streams"][0]["tokens"]
    assert tokens[0]["first_fragment"] == 0 and tokens[0]["last_fragment"] == 1
    assert tokens[0]["t_ms"] == 2.0
