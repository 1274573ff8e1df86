"""Every view that draws model text gives it back exactly: remove the view's own marks
(``¦ │ ↵ ⇥``) and its row breaks, and the stream's text is what is left, at any width,
plain or in colour. Plain output has no trailing padding."""

import io
import json
import pathlib
import re
from itertools import pairwise

import pytest
from click.testing import CliRunner
from hypothesis import example, given, settings
from hypothesis import strategies as st
from llm.cli import cli
from rich.cells import cell_len
from rich.console import Console
from test_pictures import svg_lines

from llm_streamscope.analysis import encodings
from llm_streamscope.analysis.align import align_fragments
from llm_streamscope.analysis.trace import Fragment
from llm_streamscope.capture.tokenizer import tokens_of
from llm_streamscope.views.liveview import LiveScreen
from llm_streamscope.views.render import VIEWS, AlignmentView, legend
from llm_streamscope.views.wrapping import row_breaks

SGR = re.compile(r"\x1b\[[0-9;]*m")
RECORDINGS = next(
    (
        place
        for place in (
            pathlib.Path(__file__).resolve().parents[2] / "shared" / "realstreams",
            pathlib.Path("/work/shared/realstreams"),
        )
        if place.is_dir()
    ),
    None,
)


@pytest.fixture(scope="module")
def o200k():
    return encodings.get_encoding("o200k_base")


def console(width, color):
    return Console(
        file=io.StringIO(),
        width=width,
        force_terminal=color,
        color_system="truecolor" if color else None,
        highlight=False,
        soft_wrap=False,
    )


def unwrap(rows):
    """The text a view's rows show: a row ending in ``↵`` ends a line of the text,
    any other row goes on in the next; the marks are taken out, ``⇥`` is a tab, and
    an invisible character's stand-in (``<U+200B>``) is the character again."""
    text = "".join(row[:-1] + "\n" if row.endswith("↵") else row for row in rows)
    text = text.replace("¦", "").replace("│", "").replace("⇥", "\t")
    return re.sub(r"<U\+([0-9A-F]{4,5})>", lambda m: chr(int(m.group(1), 16)), text)


# Characters a model writes, marks and controls aside (those are shown as pictures).
PIECES = st.sampled_from(
    [" ", "  ", "   ", "\t", "\n", "\n\n", "a", "word", " the", " France", "Paris", ".",
     "中文字", "日本語のテキスト", "😀", "👨‍👩‍👧‍👦", "❤️", "e\u0301", "ñ", "x" * 45,
     "Donaudampfschifffahrtsgesellschaftskapitän", "- item", "«»", "ŉ", "\u200b"]
)  # fmt: skip
TEXTS = st.lists(PIECES, min_size=1, max_size=60).map("".join)


def fragments_of(text, cuts):
    """``text`` cut into fragments at the given character offsets."""
    at = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [Fragment(i, "text", text[a:b], i) for i, (a, b) in enumerate(pairwise(at))]


@settings(max_examples=60, deadline=None)
@given(
    text=TEXTS,
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
    width=st.integers(min_value=20, max_value=200),
)
@example(text="I now can give a great answer. The capital of France is Paris.", cuts=[], width=47)
@example(text="abc" + " " * 30 + "def", cuts=[5], width=20)
def test_every_view_gives_back_the_text_at_any_width(o200k, text, cuts, width):
    stream = align_fragments(fragments_of(text, cuts), tokens_of(o200k, text))
    for view in VIEWS:
        for color in (False, True):
            out = console(width, color)
            out.print(AlignmentView(stream, view, color))
            rows = SGR.sub("", out.file.getvalue()).split("\n")[:-1]
            assert unwrap(rows) == text, (view, color)
            assert all(cell_len(row) <= width for row in rows)


@settings(max_examples=40, deadline=None)
@given(
    text=TEXTS,
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
    width=st.integers(min_value=20, max_value=200),
    rows=st.integers(min_value=1, max_value=12),
)
@example(
    text="The capital of France is Paris. Paris is not only the capital", cuts=[], width=20, rows=6
)
def test_the_live_tail_gives_back_the_end_of_the_text(o200k, text, cuts, width, rows):
    fragments = fragments_of(text, cuts)
    for tokenize in (lambda t: tokens_of(o200k, t), None):
        screen = LiveScreen(tokenize)
        screen.begin("m", start_ns=0)
        screen.add([("text", f.text, i) for i, f in enumerate(fragments)], origin_ns=0)
        for color in (False, True):
            tail, _ = screen._tail(console(width, color), width, rows)
            shown = [row.plain for row in tail]
            assert text.endswith(unwrap(shown))
            assert all(cell_len(row) <= width for row in shown)


@given(line=st.text(alphabet=" ab中😀\u0301", max_size=80), width=st.integers(1, 30))
def test_rows_keep_every_character_and_fit(line, width):
    breaks = row_breaks(line, width)
    rows = [line[a:b] for a, b in zip([0, *breaks], [*breaks, len(line)])]
    assert "".join(rows) == line and (all(rows) or not line)
    assert all(cell_len(row) <= max(width, 2) for row in rows)


def section(lines, start):
    """The lines from the rule at ``start`` to the next rule."""
    later = range(start + 1, len(lines) + 1)
    end = next(i for i in later if i == len(lines) or RULE.match(lines[i]))
    return lines[start + 1 : end]


RULE = re.compile(r"^─+( .* ─+)?$")


def stream_of(stream, texts):
    """A stream of a ``--json`` document as the ``StreamAlignment`` it was drawn from."""
    fragments = [
        Fragment(j, stream["kind"], texts[i], j, tool_call_id=stream["tool_call_id"])
        for j, i in enumerate(stream["fragment_indices"])
    ]
    tokens = stream["tokens"]
    sizes = [t["byte_end"] - t["byte_start"] for t in tokens]
    return align_fragments(fragments, ([t["id"] for t in tokens], sizes))


def recordings():
    if RECORDINGS is None:
        return [pytest.param(None, marks=pytest.mark.skip(reason="no ../shared/realstreams here"))]
    return sorted(p for p in RECORDINGS.iterdir() if p.suffix in (".sse", ".ndjson", ".jsonl"))


@pytest.mark.parametrize("recording", recordings(), ids=lambda p: p and p.name)
def test_real_recordings_read_back_exactly_at_three_widths(recording, monkeypatch, tmp_path):
    runner = CliRunner()
    document = json.loads(
        runner.invoke(cli, ["streamscope", "inspect", str(recording), "--json"]).stdout
    )
    for width in (47, 80, 133):
        monkeypatch.setenv("COLUMNS", str(width))
        drawn = tmp_path / f"{width}.svg"
        args = ["streamscope", "inspect", str(recording), "--timeline"]
        result = runner.invoke(cli, [*args, "--svg", str(drawn)])
        assert result.exit_code == 0, result.output
        lines = result.stdout.split("\n")
        assert not [line for line in lines if line.endswith(" ")], "trailing padding"
        given_back(recording, document, lines, width)
    # The SVG draws the views at 100 columns, in colour.
    given_back(recording, document, svg_lines(drawn).split("\n"), 100, color=True)


def given_back(recording, document, lines, width, color=False):
    """Each response's alignment section in ``lines`` shows its streams' text exactly."""
    starts = [i for i, line in enumerate(lines) if RULE.match(line) and " alignment " in line]
    assert len(starts) == len(document["responses"])
    for start, response in zip(starts, document["responses"]):
        rows = section(lines, start)
        texts = {f["index"]: f["text"] for f in response["fragments"]}
        for stream in response["streams"]:
            heading = legend(stream_of(stream, texts), "both", color)
            rows = rows[len(heading.wrap(console(width, color), width)) :]
            text = "".join(texts[i] for i in stream["fragment_indices"])
            taken = 1
            while unwrap(rows[:taken]) != text or rows[taken - 1].endswith("↵"):
                taken += 1
                assert taken <= len(rows), f"{recording.name} at {width}: text not given back"
            rows = rows[taken:]
        assert rows == []


def test_the_examples_in_the_docstrings_hold():
    import doctest

    from llm_streamscope.views import alignview, wrapping

    for module in (alignview, wrapping):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_compare_and_whatif_tables_have_no_trailing_padding(monkeypatch):
    runner = CliRunner()
    monkeypatch.setenv("COLUMNS", "80")
    sim = ("-o", "speed", "0", "-o", "max_tokens", "24", "-m", "streamscope-sim")
    profiles = [*sim, "-o", "profile", "gpt-4o-mini", "-m", "streamscope-sim"]
    compared = runner.invoke(cli, ["streamscope", "compare", *profiles, "hi"])
    assert compared.exit_code == 0, compared.output
    ran = runner.invoke(cli, ["streamscope", *sim, "hi"])
    assert ran.exit_code == 0, ran.output
    whatif = runner.invoke(cli, ["streamscope", "whatif", "--latest"])
    assert whatif.exit_code == 0, whatif.output
    for result in (compared, whatif):
        lines = result.stdout.split("\n")
        assert len(lines) > 5 and not [line for line in lines if line.endswith(" ")]
