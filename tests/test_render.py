"""Views rendered on a fixed-width StringIO console; model text is always data."""

import dataclasses
import io
import json
import re

import pytest
from rich.console import Console

from llm_streamscope.analysis.align import align
from llm_streamscope.analysis.encodings import get_encoding
from llm_streamscope.analysis.stats import compute_stats
from llm_streamscope.analysis.trace import PLACEMENT_FIELDS, Fragment, Trace
from llm_streamscope.capture.tokenizer import LocalTokenizer
from llm_streamscope.views.documents import trace_document
from llm_streamscope.views.render import (
    CHUNK_STYLES,
    SPLIT_STYLE,
    TOKEN_STYLES,
    AlignmentPanel,
    AlignmentView,
    legend,
    stats_table,
    visible,
)
from llm_streamscope.views.timeline import Timeline


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
    for label in ("TTFT", "TTST", "tokens/chunk", "gap", "gaps > 50 ms", "ITL", "tokens/s"):
        assert label in out
    assert "1.0 ms (instant)" in out
    assert "usage reports 3 output tokens" in out and "streamed text 3 (+0)" in out


@pytest.mark.parametrize(
    ("status", "error", "shown"),
    [
        ("interrupted", "interrupted (Ctrl-C)", "interrupted (Ctrl-C)"),
        ("interrupted", "terminated (SIGTERM)", "interrupted: terminated (SIGTERM)"),
        ("error", "HTTP 503: busy", "error: HTTP 503: busy"),
    ],
)
def test_the_status_row_says_the_status_once(o200k, status, error, shown):
    trace, alignment, _ = make(["Hello"], o200k)
    trace = dataclasses.replace(trace, status=status, error=error, usage_output=1)
    out = render(stats_table(trace, compute_stats(trace, alignment)), False)
    (row,) = [line for line in out.splitlines() if line.startswith("status")]
    assert row.split(None, 1)[1].rstrip() == shown
    # one output token, in the singular
    assert "usage reports 1 output token" in out and "1 output tokens" not in out


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
        "llm_t_ms": 1.0,
        "wire_t_ms": None,
        "byte_start": 0,
        "byte_end": 4,
        "token_start": 0,
        "token_end": 1,
        "starts_mid_token": False,
        "ends_mid_token": True,
    }
    # the JSON document's placement is the alignment's, under the same names
    placement = alignment.streams[0].placement(0)
    assert {name: first[name] for name in PLACEMENT_FIELDS} == {
        name: getattr(placement, name) for name in PLACEMENT_FIELDS
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


def test_neighbouring_token_colours_stay_distinct_in_16_256_and_true_colour():
    from rich.color import ColorSystem
    from rich.style import Style

    def background(style, system):
        color = Style.parse(style).bgcolor
        return color.downgrade(system).get_ansi_codes(foreground=False)

    for system in (ColorSystem.STANDARD, ColorSystem.EIGHT_BIT, ColorSystem.TRUECOLOR):
        tokens = [background(style, system) for style in TOKEN_STYLES]
        for i, code in enumerate(tokens):  # and the last against the first, where it wraps
            assert code != tokens[(i + 1) % len(tokens)], (system, i)
        assert background(SPLIT_STYLE, system) not in tokens, system
        assert background(CHUNK_STYLES[0], system) != background(CHUNK_STYLES[1], system)


def realistic_trace(o200k):
    """A long, slow stream with large values, a long model id, a tool call and a
    tool result: the widest stats table a real run gives."""
    words = [f" word{i}" for i in range(300)]
    times = [1234.5 + 1130.1 * i + (i % 7) * 11.3 for i in range(300)]
    fragments = [Fragment(i, "text", w, int(t * 1e6)) for i, (w, t) in enumerate(zip(words, times))]
    call = "toolu_01A09q90qw90lq917835lq9"
    n = len(fragments)
    fragments += [
        Fragment(n, "tool_call_name", "web_search", 400_000_000_000, call),
        Fragment(n + 1, "tool_call_args", '{"q": "x"}', 400_100_000_000, call),
        Fragment(n + 2, "tool_result", "[" + "{}," * 20_000 + "{}]", 401_000_000_000, call),
    ]
    trace = Trace(
        "tid",
        "anthropic/claude-sonnet-4-5-20250929-extended-thinking-preview",
        "o200k_base",
        False,
        "p",
        None,
        "2026-01-01",
        tuple(fragments),
        setup_ns=1_234_567_000,
        end_ns=401_000_000_000,
        usage_output=123_456,
        usage_details={"completion_tokens_details": {"reasoning_tokens": 100_000}},
    )
    alignment = align(trace, LocalTokenizer(o200k))
    return trace, alignment, compute_stats(trace, alignment)


def test_stats_table_fits_80_columns_without_splitting_a_value(o200k):
    trace, _, stats = realistic_trace(o200k)
    buf = io.StringIO()
    Console(file=buf, width=80, color_system=None, highlight=False).print(stats_table(trace, stats))
    lines = buf.getvalue().splitlines()
    assert max(map(len, lines)) <= 80
    text = "\n".join(line.rstrip() for line in lines)
    d = stats.gap_ms
    for value in (
        f"mean {d.mean:,.0f} ms",
        f"p99 {d.p99:,.0f} ms",
        f"max {d.max:,.0f} ms",
        trace.model_id,
        "id toolu_01A09q…",  # the tool call id is in the value, shortened
        "usage reports 123,456 output tokens − 100,000 reasoning = 23,456",
        "per user (AIPerf: 1 / mean ITL)",
    ):
        assert value in text, value
    labels = [line[:16].strip() for line in lines if line[:16].strip()]
    assert max(map(len, labels)) <= 14 and "tool_result" in labels


def test_kinds_that_are_not_model_output_are_kept_and_summarised(o200k):
    trace, alignment, stats = realistic_trace(o200k)
    assert [s.kind for s in alignment.streams] == ["text", "tool_call_name", "tool_call_args"]
    (result,) = stats.other_kinds
    assert (result.kind, result.events, result.chars) == ("tool_result", 1, 60_004)
    assert (result.first_ms, result.last_ms) == (401_000, 401_000)
    doc = trace_document(trace, alignment, stats)
    assert len(doc["fragments"]) == len(trace.fragments)  # kept
    last = doc["fragments"][-1]
    assert last["kind"] == "tool_result" and len(last["text"]) == 60_004
    assert last["token_start"] is None and last["byte_start"] is None  # not aligned
    assert [s["kind"] for s in doc["streams"]] == ["text", "tool_call_name", "tool_call_args"]
    out = render(AlignmentPanel(alignment, "both", False), False)
    assert "{}," not in out


def test_legend_counts_chunks_as_the_stats_do(o200k):
    _, alignment, stats = make(["", "Hi", "", " there", ""], o200k, kinds={0: "reasoning"})
    text, reasoning = alignment.stream("text"), alignment.stream("reasoning")
    assert "text: 2 tokens, 2 chunks" in legend(text, "both", False).plain
    assert stats.chunks == 2
    assert "reasoning: 0 tokens, 0 chunks" in legend(reasoning, "both", False).plain


def timeline_trace(o200k):
    """Six chunks: a burst (0.5 ms), a stall (100 ms), and a last chunk of three tokens."""
    pieces = ["Stre", "aming", " is", " fast", " indeed", ", truly fast"]
    ms = [10, 10.5, 30, 130, 140, 150]
    fragments = tuple(
        Fragment(i, "text", p, int(t * 1e6)) for i, (p, t) in enumerate(zip(pieces, ms))
    )
    trace = Trace("t", "m", "o200k_base", True, None, None, "", fragments)
    alignment = align(trace, LocalTokenizer(o200k))
    return alignment, compute_stats(trace, alignment)


def test_timeline_in_plain_characters(o200k):
    out = io.StringIO()
    Console(file=out, width=40, color_system=None).print(Timeline(*timeline_trace(o200k)))
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    assert lines[-8:] == [
        "         = !",
        "  100 ms   #",
        "           #",
        "         --#--",
        "           #",
        "           #",
        "    0 ms  ####",
        "  tokens 11113",
    ]
    header = " ".join(lines[:-8])
    assert "TTFT 10.0 ms" in header and "stall > 50 ms" in header


def test_timeline_by_time_in_plain_characters(o200k):
    out = io.StringIO()
    Console(file=out, width=40, color_system=None).print(
        Timeline(*timeline_trace(o200k), by="time")
    )
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    # 30 columns of 5 ms: the first chunk in the third, the stall a blank stretch
    # ending in its bar, the last three chunks in the last four columns
    assert lines[-9:] == [
        "           =                       !",
        "  100 ms                           #",
        "                                   #",
        "         --------------------------#---",
        "                                   #",
        "                                   #",
        "    0 ms       #                   # ##",
        "  tokens   1   1                   1 13",
        "    TTFT --|                   150.0 ms",
    ]
    header = " ".join(lines[:-9])
    assert "timeline by time: 6 chunks in 150.0 ms, 5.0 ms per column" in header
    assert "TTFT 10.0 ms" in header and "largest gap ending in a column" in header


def test_timeline_by_time_puts_chunks_of_one_instant_in_one_column(o200k):
    """A run at speed 0: every chunk at the same time, in the last column, or all at 0."""
    for ms, tokens, axis in (
        (5.0, "  tokens" + " " * 30 + "3", "    TTFT " + "-" * 29 + "|"),
        (0.0, "  tokens 3", "    TTFT |" + f"{'0.0 ms':>29}"),
    ):
        pieces = (" one", " two", " three")
        fragments = tuple(Fragment(i, "text", p, int(ms * 1e6)) for i, p in enumerate(pieces))
        trace = Trace("t", "m", "o200k_base", True, None, None, "", fragments)
        alignment = align(trace, LocalTokenizer(o200k))
        out = io.StringIO()
        Console(file=out, width=40, color_system=None).print(
            Timeline(alignment, compute_stats(trace, alignment), by="time")
        )
        lines = [line.rstrip() for line in out.getvalue().splitlines()]
        assert lines[-2:] == [tokens, axis]


def test_timeline_in_colour_and_with_too_few_chunks(o200k):
    out = io.StringIO()
    Console(file=out, width=40, color_system="truecolor").print(Timeline(*timeline_trace(o200k)))
    shown = SGR.sub("", out.getvalue())
    assert "≈ ▲" in shown and "█" in shown and "┄" in shown
    _, alignment, stats = make(["One"], o200k)
    out = io.StringIO()
    Console(file=out, width=40, color_system=None).print(Timeline(alignment, stats))
    assert "fewer than two text chunks" in out.getvalue()


def test_html_tokens_cover_the_text_once_even_where_bpe_cuts_a_character(o200k):
    import html as html_module

    from llm_streamscope.views.report import token_html

    pieces = ["こんにちは", "😀🎉🦄", " 𝔘𝔫𝔦", "code"]
    _, alignment, _ = make(pieces, o200k)
    stream = alignment.stream("text")
    drawn = token_html(stream)
    assert html_module.unescape(re.sub(r"<[^>]*>", "", drawn)) == "".join(pieces)
    assert drawn.count('class="cb"') == len(pieces) - 1
