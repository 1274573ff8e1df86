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
        "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest"
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
