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
