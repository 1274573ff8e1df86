"""Every numeric option: a finite, documented range, enforced at parse time; no
document ever holds NaN or Infinity."""

import json

import click
import llm
import pytest
import sqlite_utils
from click.testing import CliRunner
from llm.cli import cli
from llm.cli import prompt as llm_prompt

from llm_streamscope.analysis.numbers import Bounded
from llm_streamscope.cli import streamscope as streamscope_group

FAST = ("-m", "streamscope-sim", "-o", "speed", "0")


def streamscope(*args):
    return CliRunner().invoke(cli, ["streamscope", *args], catch_exceptions=False)


def numeric_options():
    """(command, option) for every numeric option of ours (llm's own prompt options aside)."""
    llms = {p.name for p in llm_prompt.params}
    # Contexts as llm makes them: a command caches its help option (llm's -h) on first use.
    root = click.Context(cli, info_name="llm", **cli.context_settings)
    group = click.Context(streamscope_group, parent=root, info_name="streamscope")
    found = []
    for name, command in sorted(streamscope_group.commands.items()):
        for param in command.get_params(click.Context(command, parent=group, info_name=name)):
            if param.name in llms or not isinstance(param, click.Option):
                continue
            if isinstance(param.type, click.types._NumberParamTypeBase):
                found.append((name, param))
    return found


def test_every_numeric_option_has_a_finite_range_shown_in_its_help():
    found = numeric_options()
    assert {(name, p.opts[-1]) for name, p in found} >= {
        ("logs", "--count"),
        ("replay", "--speed"),
        ("run", "--timeout"),
        ("run", "--gap-ms"),
        ("compare", "--timeout"),
        ("compare", "--runs"),
    }
    for name, param in found:
        assert isinstance(param.type, Bounded), (name, param.opts)
        assert None not in (param.type.min, param.type.max), (name, param.opts)
        help_text = streamscope(name, "--help").stdout
        assert f"{param.type.min}<" in " ".join(help_text.split()), (name, param.opts)


BAD = ["nan", "inf", "-inf", "9223372036854775808", "1e307"]


@pytest.mark.parametrize(
    ("command", "param"), numeric_options(), ids=lambda x: getattr(x, "name", x)
)
def test_a_number_outside_its_range_is_a_usage_error(command, param):
    args = [] if command == "run" else [command]
    for bad in BAD:
        result = streamscope(*args, param.opts[-1], bad, *(["x"] if command == "run" else []))
        assert result.exit_code == 2, (command, param.opts, bad, result.output)
        assert f"Error: Invalid value for '{param.opts[0]}'" in result.stderr or (
            f"Error: Invalid value for '{param.opts[-1]}'" in result.stderr
        ), result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("whatif", "--latest", "--policy", "ms:1e307"),
        ("whatif", "--latest", "--policy", "ms:nan"),
        ("whatif", "--latest", "--policy", "tokens:9223372036854775808"),
        ("serve", "--speed", "nan"),
        ("serve", "--stall-s", "inf"),
    ],
)
def test_numbers_inside_other_values_have_ranges_too(args):
    result = streamscope(*args)
    assert result.exit_code == 2 and result.stderr.count("Error:") == 1, result.output
    assert "Traceback" not in result.output


def test_a_simulator_option_out_of_range_stops_the_run_before_its_request(isolated_env):
    result = streamscope(*FAST, "-o", "speed", "inf", "-o", "max_tokens", "2", "hi")
    assert result.exit_code == 1 and "less than or equal to 1000" in result.stderr
    assert not list(sqlite_utils.Database(isolated_env / "logs.db")["streamscope_traces"].rows)


def _not_json(constant):
    raise ValueError(f"{constant} is not JSON")


@pytest.fixture
def loose_model(register_models):
    """A model of another plugin whose float option takes any float, infinity too."""

    class Loose(llm.Model):
        model_id = "loose"
        can_stream = True

        class Options(llm.Options):
            temperature: float | None = None

        def execute(self, prompt, stream, response, conversation):
            yield from ("a", " b")

    register_models(Loose())


def test_no_document_holds_nan_or_infinity(isolated_env, loose_model):
    result = streamscope("-m", "loose", "-o", "temperature", "inf", "--json", "hi")
    assert result.exit_code == 0, result.output
    (doc,) = json.loads(result.stdout, parse_constant=_not_json)["responses"]
    assert doc["options"] == {"temperature": None}
    (row,) = sqlite_utils.Database(isolated_env / "logs.db")["streamscope_traces"].rows
    assert json.loads(row["options_json"], parse_constant=_not_json) == {"temperature": None}
    for args in (("show", "--latest", "--json"), ("logs", "--json"), ("export", "--latest")):
        shown = streamscope(*args)
        assert shown.exit_code == 0 and "Infinity" not in shown.stdout, args
        json.loads(shown.stdout, parse_constant=_not_json)


def test_the_worked_examples_in_the_docstrings_hold():
    import doctest

    from llm_streamscope.analysis import numbers
    from llm_streamscope.store import reading as stored
    from llm_streamscope.store import redaction

    for module in (numbers, redaction, stored):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
