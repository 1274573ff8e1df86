"""The README's generated parts (command help, simulator options) are current."""

import pathlib

from cogapp import Cog

README = pathlib.Path(__file__).parent.parent / "README.md"


def test_readme_is_up_to_date():
    assert Cog().main(["cog", "--check", str(README)]) == 0, "run: cog -r README.md"


def test_readme_opens_with_the_two_setup_commands():
    lines = [line.strip() for line in README.read_text().splitlines() if line.startswith("    ")]
    assert lines[0].endswith('llm streamscope -m streamscope-sim "Why does streaming feel fast?"')
    assert lines[1] == (
        "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest -n 2"
    )


def test_readme_sql_examples_run_against_a_real_log(isolated_env):
    import re
    import sqlite3

    from click.testing import CliRunner
    from llm.cli import cli

    for profile in ("gpt-4o-mini", "gemini-flash"):
        args = ["streamscope", "-m", "streamscope-sim", "-o", "speed", "0", "-o", "profile"]
        assert (
            CliRunner().invoke(cli, [*args, profile, "-o", "max_tokens", "30", "x"]).exit_code == 0
        )
    queries = re.findall(r"```sql\n(.*?)```", README.read_text(), re.S)
    assert len(queries) == 2
    db = sqlite3.connect(isolated_env / "logs.db")
    assert len(db.execute(queries[0]).fetchall()) == 2
    ((model, fragments, *_),) = db.execute(queries[1]).fetchall()
    assert model == "streamscope-sim" and fragments > 30


def section(text, heading):
    """A README section: from its heading to the next heading of the same level or higher."""
    level = heading.split(" ")[0]
    start = text.index(f"\n{heading}\n")
    ends = [text.find(f"\n{h} ", start + 1) for h in ("#" * n for n in range(1, len(level) + 1))]
    return text[start : min((e for e in ends if e != -1), default=len(text))]


def test_readme_names_every_json_key_and_every_column(isolated_env):
    import json

    import sqlite_utils
    from click.testing import CliRunner
    from llm.cli import cli

    args = ["streamscope", "-m", "streamscope-sim", "-o", "speed", "0", "-o", "max_tokens", "2"]
    doc = json.loads(CliRunner().invoke(cli, [*args, "--json", "x"]).stdout)
    text = README.read_text()
    json_section = section(text, "## JSON")
    missing = [k for k in doc if f'"{k}"' not in json_section and f"`{k}`" not in json_section]
    assert missing == []
    schema = section(text, "### Schema")
    db = sqlite_utils.Database(isolated_env / "logs.db")
    tables = ("streamscope_wire", "streamscope_wire_reads", "streamscope_wire_events")
    for table in ("streamscope_traces", "streamscope_fragments", *tables):
        missing = [c.name for c in db[table].columns if f"`{c.name}`" not in schema]
        assert missing == [], table
