"""`--svg FILE` and `--timeline`: the terminal views drawn, and the gaps drawn."""

import re
import xml.etree.ElementTree as ET

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
