"""The README and docs/ say what the product does: their simulator examples run,
their SQL runs, they name every JSON key and column, their generated parts are
current, and the README stays a front page."""

import itertools
import pathlib
import re
import shlex

import pytest
from click.testing import CliRunner
from cogapp import Cog

ROOT = pathlib.Path(__file__).parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]

# A word that stands for something the reader supplies: a trace id, a file, a port.
PLACEHOLDER = re.compile(r"\.\.\.|…|^01k|^[A-Z][A-Z_]+$|^\[|[|<>]")
# Examples that need more than the simulator: a captured file, a collector, a server
# in the foreground, or llm's default model (which needs a key).
NEEDS_MORE = ("--otel", "--file", "-d", "--database")
STORED = ("logs", "show", "replay", "export", "whatif")
SIM = "streamscope-sim"


def command_lines(text):
    """The shell commands a page shows: indented code lines and ``$ `` lines of fenced
    blocks, continuation lines joined, trailing ``  # comments`` dropped.

    >>> command_lines("Run:\\n\\n    llm streamscope logs   # recent\\n")
    ['llm streamscope logs']
    """
    commands, fenced, pending = [], False, ""
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced and line.startswith("$ "):
            command = line[2:]
        elif fenced and pending:
            command = line
        elif not fenced and line.startswith("    "):
            command = line[4:]
        else:
            pending = ""
            continue
        command = pending + re.split(r"\s{2,}#", command)[0].strip()
        if command.endswith("\\"):
            pending = command[:-1]
            continue
        pending = ""
        commands.append(command)
    return commands


def runnable(command):
    """``command``'s arguments for llm's CLI, with the simulator at speed 0, or None
    when it needs more than the simulator and a log of the runs before it."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if words[:1] != ["llm"] or any(PLACEHOLDER.search(w) for w in words):
        return None
    if any(w in NEEDS_MORE for w in words):
        return None
    models = [after for before, after in itertools.pairwise(words) if before in ("-m", "--model")]
    if models and set(models) != {SIM}:
        return None
    subcommand = words[2] if words[1:2] == ["streamscope"] and len(words) > 2 else None
    if not models and subcommand not in STORED:
        return None
    args = words[:1]
    for before, word in itertools.pairwise(words):
        args.append(word)
        if before in ("-m", "--model") and word == SIM and "speed" not in words:
            args += ["-o", "speed", "0"]  # the same stream, without its pauses
    return args


def examples(page):
    return [args for args in map(runnable, command_lines(page.read_text())) if args is not None]


@pytest.mark.parametrize("page", [p for p in PAGES if examples(p)], ids=lambda p: p.name)
def test_every_simulator_example_runs(page, isolated_env, tmp_path, monkeypatch):
    from llm.cli import cli

    runs = examples(page)
    monkeypatch.chdir(tmp_path)  # where --html and --svg examples write
    seed = ["streamscope", "-m", SIM, "-o", "speed", "0", "-o", "max_tokens", "5", "--wire", "x"]
    assert CliRunner().invoke(cli, seed).exit_code == 0  # a logged run for --latest
    for args in runs:
        result = CliRunner().invoke(cli, args[1:])
        assert result.exit_code == 0, (shlex.join(args), result.output)


def test_the_examples_found_are_the_ones_meant():
    """The harvest finds the simulator examples, and leaves what needs a key or a file."""
    found = {shlex.join(args) for page in PAGES for args in examples(page)}
    assert len(found) >= 15
    assert f"llm streamscope -m {SIM} -o speed 0 'Why does streaming feel fast?'" in found
    assert "llm streamscope whatif --latest --policy tokens:4 --policy word" in found
    assert not any("gpt-4o-mini" in c.split("profile")[0] or "capture.sse" in c for c in found)


def test_readme_opens_with_what_it_is_then_the_two_setup_commands():
    text = README.read_text()
    assert text.startswith("# llm-streamscope\n\nA plugin for [LLM]")
    lines = [line.strip() for line in text.splitlines() if line.startswith("    ")]
    assert lines[0].endswith('llm streamscope -m streamscope-sim "Why does streaming feel fast?"')
    assert lines[1] == (
        "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest -n 2"
    )


def test_readme_is_a_front_page_whose_links_and_picture_are_there():
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    local = [t for t in re.findall(r"\]\(([^)#]+)", text) if "://" not in t]
    assert "docs/streamscope.svg" in local
    assert [t for t in local if not (ROOT / t).exists()] == []
    picture = (DOCS / "streamscope.svg").read_text()
    assert picture.startswith("<!-- written by llm streamscope -->")  # by --svg, not by hand
    assert "alignment" in picture and "TTFT" in picture


def test_no_development_diary_in_the_user_docs():
    diary = re.compile(r"\bissue \d|earlier runs|earlier today|the final code", re.I)
    assert [p.name for p in PAGES if diary.search(p.read_text())] == []


def test_the_simulator_option_table_is_current():
    assert Cog().main(["cog", "--check", str(DOCS / "simulator.md")]) == 0, (
        "run: cog -r docs/simulator.md"
    )


def test_one_version_number(isolated_env):
    from llm.cli import cli

    import llm_streamscope

    result = CliRunner().invoke(cli, ["streamscope", "--version"])
    assert result.exit_code == 0
    assert result.output == f"llm-streamscope, version {llm_streamscope.__version__}\n"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert not re.search(r'^version\s*=\s*"', pyproject, re.M)  # no second number
    assert 'version = { attr = "llm_streamscope._version.__version__" }' in pyproject


def test_the_sql_examples_run_against_a_real_log(isolated_env):
    import sqlite3

    from llm.cli import cli

    for profile in ("gpt-4o-mini", "gemini-flash"):
        args = ["streamscope", "-m", SIM, "-o", "speed", "0", "-o", "max_tokens", "30", "-o"]
        assert CliRunner().invoke(cli, [*args, "profile", profile, "x"]).exit_code == 0
    queries = re.findall(r"```sql\n(.*?)```", (DOCS / "logging.md").read_text(), re.S)
    assert len(queries) == 2
    db = sqlite3.connect(isolated_env / "logs.db")
    assert len(db.execute(queries[0]).fetchall()) == 2
    ((model, fragments, *_),) = db.execute(queries[1]).fetchall()
    assert model == SIM and fragments > 30


def section(text, heading):
    """A page's section: from its heading to the next heading of the same level or higher."""
    level = heading.split(" ")[0]
    start = text.index(f"\n{heading}\n")
    ends = [text.find(f"\n{h} ", start + 1) for h in ("#" * n for n in range(1, len(level) + 1))]
    return text[start : min((e for e in ends if e != -1), default=len(text))]


def test_the_docs_name_every_json_key_and_every_column(isolated_env):
    import json

    import sqlite_utils
    from llm.cli import cli

    args = ["streamscope", "-m", SIM, "-o", "speed", "0", "-o", "max_tokens", "2"]
    doc = json.loads(CliRunner().invoke(cli, [*args, "--json", "x"]).stdout)
    json_page = (DOCS / "json.md").read_text()
    missing = [k for k in doc if f'"{k}"' not in json_page and f"`{k}`" not in json_page]
    assert missing == []
    response = doc["responses"][0]
    missing = [k for k in response if f'"{k}"' not in json_page and f"`{k}`" not in json_page]
    assert missing == []
    stats_page = (DOCS / "stats.md").read_text()
    assert [k for k in response["stats"] if f"`{k}`" not in stats_page] == []
    schema = section((DOCS / "logging.md").read_text(), "## Schema")
    db = sqlite_utils.Database(isolated_env / "logs.db")
    tables = ("streamscope_wire", "streamscope_wire_reads", "streamscope_wire_events")
    for table in ("streamscope_traces", "streamscope_fragments", *tables):
        missing = [c.name for c in db[table].columns if f"`{c.name}`" not in schema]
        assert missing == [], table


def test_the_picture_script_draws_with_arguments_streamscope_takes(tmp_path):
    """docs/make_picture.py's run, in-process and at speed 0: an SVG streamscope wrote."""
    import importlib.util

    from llm.cli import cli

    spec = importlib.util.spec_from_file_location("make_picture", DOCS / "make_picture.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    picture = tmp_path / "picture.svg"
    args = ["streamscope", *script.RUN, "-o", "speed", "0", "--svg", str(picture)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert picture.read_text().startswith("<!-- written by llm streamscope -->")
