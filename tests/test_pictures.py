"""`--svg`, `--timeline` and `--html`: the views drawn, the gaps drawn, and the HTML report."""

import html
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

from click.testing import CliRunner
from conftest import streaming_model
from llm.cli import cli

SVG = "{http://www.w3.org/2000/svg}"


FAST = ("-m", "streamscope-sim", "-o", "speed", "0")


def run(*args):
    return CliRunner().invoke(cli, ["streamscope", *args], catch_exceptions=False)


def svg_text(path):
    """The SVG's root, and its text as drawn (rich puts non-breaking spaces between words)."""
    root = ET.parse(path).getroot()
    text = "".join(node.text or "" for node in root.iter(f"{SVG}text")).replace("\xa0", " ")
    return root, text


def test_run_and_show_draw_the_views_in_colour(tmp_path, isolated_env):
    drawn = tmp_path / "run.svg"
    result = run(
        *FAST,
        "-o",
        "chunks",
        "8",
        "--wire",
        "--svg",
        str(drawn),
        "hi",
    )
    assert result.exit_code == 0, result.output
    assert "─ stats ─" in result.stdout  # the views still go to stdout as well
    root, text = svg_text(drawn)
    assert root.tag == f"{SVG}svg"
    for heading in ("alignment", "stats", "carried no model output", "TTFT", "tokens/chunk"):
        assert heading in text
    # in colour (the alternating token colours among them), though stdout is not a terminal
    assert len(set(re.findall(r"fill: (#[0-9a-f]{6})", drawn.read_text()))) >= 4
    shown = tmp_path / "show.svg"
    assert run("show", "--latest", "--svg", str(shown)).exit_code == 0
    assert "alignment" in svg_text(shown)[1] and "carried no model output" not in svg_text(shown)[1]


def test_model_text_is_drawn_never_run(tmp_path, register_models):
    register_models(
        streaming_model("sly", "<script>alert(1)</script>", " & [bold]not markup[/bold]")
    )
    drawn = tmp_path / "sly.svg"
    result = run("-m", "sly", "--svg", str(drawn), "-n", "hi")
    assert result.exit_code == 0, result.output
    root, text = svg_text(drawn)
    assert not [node for node in root.iter() if node.tag.endswith("script")]
    assert "<script>alert(1)</script>" in text.replace("│", "").replace("¦", "")
    assert "[bold]not markup[/bold]" in text.replace("│", "").replace("¦", "")


def test_a_file_that_cannot_be_written_is_one_error(tmp_path):
    result = run(
        *FAST,
        "-o",
        "chunks",
        "3",
        "--svg",
        str(tmp_path / "missing" / "v.svg"),
        "-n",
        "hi",
    )
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("Error: Cannot write")


def test_timeline_on_run_show_and_replay(isolated_env):
    result = run(*FAST, "-o", "chunks", "12", "--timeline", "hi")
    assert result.exit_code == 0, result.output
    assert "─ timeline ─" in result.stdout and "  tokens " in result.stdout
    for command in (("show", "--latest"), ("replay", "--latest", "--speed", "0")):
        shown = run(*command, "--timeline")
        assert shown.exit_code == 0, shown.output
        timeline = shown.stdout.split("─ timeline ─")[1]
        assert timeline.splitlines()[1:] == result.stdout.split("─ timeline ─")[1].splitlines()[1:]
    assert "timeline" not in run("show", "--latest", "--json", "--timeline").stdout


def test_timeline_by_time_on_run_and_show(isolated_env):
    result = run(*FAST, "-o", "chunks", "12", "--timeline-by-time", "hi")
    assert result.exit_code == 0, result.output
    timeline = result.stdout.split("─ timeline ─")[1]
    assert "timeline by time: 12 chunks in" in " ".join(timeline.split())
    assert "    TTFT " in timeline
    shown = run("show", "--latest", "--timeline", "--timeline-by-time")  # the last one wins
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.split("─ timeline ─")[1].splitlines()[1:] == timeline.splitlines()[1:]


class Tags(HTMLParser):
    """Every start tag of an HTML document, with its attributes."""

    def __init__(self, document):
        super().__init__()
        self.tags = []
        self.feed(document)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def count(self, tag, css=None):
        return sum(t == tag and (css is None or a.get("class") == css) for t, a in self.tags)


def test_html_report_is_one_offline_file_of_tokens_chunks_charts_and_stats(tmp_path):
    report = tmp_path / "r.html"
    result = run(*FAST, "-o", "chunks", "20", "--json", "--html", str(report), "hi")
    assert result.exit_code == 0, result.output
    (doc,) = json.loads(result.stdout)["responses"]
    tags = Tags(report.read_text())
    tokens = doc["stats"]["tokens"]
    assert (
        tags.count("span", "t0") + tags.count("span", "t1") + tags.count("span", "split") == tokens
    )
    assert tags.count("span", "cb") == doc["stats"]["chunks"] - 1  # a bar between two chunks
    assert tags.count("svg", "chart") == 3
    # offline: nothing is fetched from anywhere, nothing runs
    assert not [a for _, a in tags.tags if {"src", "href"} & set(a)]
    assert tags.count("script") == tags.count("link") == 0
    titles = [a["title"] for t, a in tags.tags if t == "span" and "title" in a]
    assert titles[0].startswith("token 0 · id ") and "complete at" in titles[0]
    shown = tmp_path / "shown.html"
    assert run("show", "--latest", "--html", str(shown)).exit_code == 0  # the same from logs.db
    assert Tags(shown.read_text()).count("span", "cb") == doc["stats"]["chunks"] - 1


def test_html_report_escapes_model_text(tmp_path, register_models):
    register_models(streaming_model("sly", "<script>alert(1)</script>", " & <b>bold</b>"))
    report = tmp_path / "sly.html"
    assert run("-m", "sly", "--html", str(report), "-n", "hi").exit_code == 0
    document = report.read_text()
    assert Tags(document).count("script") == 0 and Tags(document).count("b") == 0
    # shown as text: the tokens' text, joined, is the answer exactly
    shown = re.search(r'<div class="text">(.*?)</div>', document, re.S).group(1)
    assert html.unescape(re.sub(r"<[^>]*>", "", shown)) == "<script>alert(1)</script> & <b>bold</b>"
