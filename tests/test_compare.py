"""`llm streamscope compare`: models side by side, through the real llm CLI and the
simulator over loopback HTTP, logged into a real logs.db."""

import doctest
import json
from html.parser import HTMLParser

import pytest
import sqlite_utils
from click.testing import CliRunner
from llm.cli import cli

from llm_streamscope import comparison
from llm_streamscope.analysis.stats import percentile

# Both models are the simulator, each with its own profile (the -o after its -m);
# the -o before the first -m goes to both.
TWO_PROFILES = (
    *("-o", "speed", "0", "-o", "max_tokens", "24"),
    *("-m", "streamscope-sim", "-o", "profile", "gpt-4o-mini"),
    *("-m", "streamscope-sim", "-o", "profile", "claude-haiku"),
)
PROMPT = "<script>alert(1)</script> Why does streaming feel fast?"
LABELS = ["streamscope-sim profile=gpt-4o-mini", "streamscope-sim profile=claude-haiku"]


def compare(*args):
    return CliRunner().invoke(cli, ["streamscope", "compare", *args], catch_exceptions=False)


def compare_json(*args):
    result = compare(*args, "--json")
    assert result.exit_code == 0, result.output
    return result, json.loads(result.stdout)


def traces(isolated_env):
    return list(sqlite_utils.Database(isolated_env / "logs.db")["streamscope_traces"].rows)


def test_doctests():
    assert doctest.testmod(comparison).failed == 0


@pytest.fixture(scope="module")
def compared(tmp_path_factory, tiktoken_cache):
    """One compare of the two profiles, two runs each, and its log (shared by the tests
    that only read them)."""
    user = tmp_path_factory.mktemp("compare-user")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LLM_USER_PATH", str(user))
        env.setenv("TIKTOKEN_CACHE_DIR", str(tiktoken_cache))
        report = user / "compare.html"
        result, document = compare_json(*TWO_PROFILES, "-N", "2", "--html", str(report), PROMPT)
    return user, result, document


def test_two_profiles_show_their_tokens_per_chunk(compared):
    _, result, document = compared
    assert set(document) == {"source", "prompt", "system", "parallel", "aggregation", "models"}
    assert set(document["aggregation"]) >= {"ttft_ms", "itl_ms", "tokens_per_chunk"}
    assert document["prompt"] == PROMPT and document["parallel"] is False
    assert set(document["models"][0]) == {
        *("label", "model", "options", "run_ids", "trace_ids", "runs", "complete"),
        *("encoding", "encoding_exact", "ttft_ms", "itl_ms", "tokens_per_s", "chunks"),
        *("tokens", "tokens_per_chunk", "whole_token_chunks_pct", "stalls"),
        *("stall_threshold_ms", "usage_output_tokens", "tiktoken_tokens", "tokens_minus_usage"),
    }
    openai, anthropic = document["models"]
    assert [m["label"] for m in document["models"]] == LABELS
    assert openai["options"] == {"profile": "gpt-4o-mini"}
    # OpenAI's chunking: one token per chunk; Anthropic's: two to three
    assert openai["tokens_per_chunk"] == 1.0 and openai["whole_token_chunks_pct"] == 100.0
    assert 1.8 <= anthropic["tokens_per_chunk"] <= 3.5
    assert anthropic["whole_token_chunks_pct"] < 60
    for model in document["models"]:
        assert model["runs"] == model["complete"] == 2
        assert model["tokens"] == 48  # 24 a run (max_tokens)
        assert model["usage_output_tokens"] == model["tiktoken_tokens"] == 48
        assert model["tokens_minus_usage"] == 0
        assert model["ttft_ms"]["count"] == model["itl_ms"]["count"] == 2
    # a progress line per run on standard error, in rounds
    lines = result.stderr.splitlines()
    assert len(lines) == 4
    assert [line.split(":")[0] for line in lines] == LABELS * 2
    assert all("run " in line and "complete" in line for line in lines)


def test_every_run_is_logged_as_a_normal_run(compared):
    user, _, document = compared
    rows = traces(user)
    assert len(rows) == 4
    assert {r["status"] for r in rows} == {"complete"}
    by_run = {r["run_id"]: r for r in rows}
    for model in document["models"]:
        assert len(model["run_ids"]) == 2
        for run_id in model["run_ids"]:
            assert (
                json.loads(by_run[run_id]["options_json"])["profile"] == model["options"]["profile"]
            )
    # llm's own record is written with each trace
    llm_rows = sqlite_utils.Database(user / "logs.db").execute("select count(*) from turns")
    assert llm_rows.fetchone()[0] == 4


def test_aggregates_across_runs_as_aiperf_does(compared, monkeypatch):
    """TTFT and ITL percentiles are over the runs' own values (one per request)."""
    user, _, document = compared
    monkeypatch.setenv("LLM_USER_PATH", str(user))
    for model in document["models"]:
        runs = []
        for trace_id in model["trace_ids"]:
            shown = CliRunner().invoke(cli, ["streamscope", "show", trace_id, "--json"])
            runs.append(json.loads(shown.stdout)["responses"][0]["stats"])
        ttfts = sorted(r["ttft_ms"] for r in runs)
        itls = sorted(r["itl_ms"]["mean"] for r in runs)
        assert model["ttft_ms"]["p50"] == pytest.approx(percentile(ttfts, 50))
        assert model["ttft_ms"]["p90"] == pytest.approx(percentile(ttfts, 90))
        assert model["itl_ms"]["p50"] == pytest.approx(percentile(itls, 50))
        assert model["itl_ms"]["p99"] == pytest.approx(percentile(itls, 99))
        rates = [r["tokens_per_s"] for r in runs]
        assert model["tokens_per_s"]["mean"] == pytest.approx(sum(rates) / len(rates))
        chunks = sum(r["chunks"] for r in runs)
        assert model["chunks"] == chunks
        assert model["tokens_per_chunk"] == pytest.approx(model["tokens"] / chunks)


def test_from_logs_gives_the_same_numbers(compared, monkeypatch):
    user, _, document = compared
    monkeypatch.setenv("LLM_USER_PATH", str(user))
    _, again = compare_json("--from-logs", *TWO_PROFILES)
    assert again["source"] == "logs" and document["source"] == "runs"
    assert again["models"] == document["models"]
    # the table from the log is the table of the runs
    assert compare(*TWO_PROFILES, "--from-logs").stdout == compare_table_of(document)
    # the latest one of each
    _, latest = compare_json("--from-logs", *TWO_PROFILES, "--limit", "1")
    for model, full in zip(latest["models"], document["models"]):
        assert model["runs"] == 1 and model["run_ids"] == full["run_ids"][-1:]
    # options select: only the runs made with them
    _, one = compare_json("--from-logs", "-m", "streamscope-sim", "-o", "profile", "claude-haiku")
    assert one["models"][0]["run_ids"] == document["models"][1]["run_ids"]
    assert len(traces(user)) == 4  # no request was made


def compare_table_of(document):
    """The plain table of a --json document's figures, as the command prints it."""
    import io

    from rich.console import Console

    from llm_streamscope.analysis.stats import Distribution
    from llm_streamscope.views.render import compare_table

    summaries = []
    for model in document["models"]:
        fields = dict(model)
        for name in ("ttft_ms", "itl_ms", "tokens_per_s"):
            fields[name] = Distribution(**fields[name])
        fields["run_ids"], fields["trace_ids"] = tuple(model["run_ids"]), tuple(model["trace_ids"])
        summaries.append(comparison.ModelSummary(**fields))
    console = Console(file=io.StringIO(), width=80, color_system=None, highlight=False)
    console.print(compare_table(summaries))
    return console.file.getvalue()


def test_plain_table_when_not_a_terminal(compared, monkeypatch):
    user, _, _ = compared
    monkeypatch.setenv("LLM_USER_PATH", str(user))
    out = compare(*TWO_PROFILES, "--from-logs").stdout
    assert "\x1b" not in out
    header = out.splitlines()[0]
    assert "streamscope-sim" in header
    for row in ("runs", "TTFT p50", "TTFT p90", "ITL p50", "ITL p99", "tokens/s", "tokens/chunk"):
        assert any(line.startswith(row) for line in out.splitlines()), row
    assert "1-token chunks  100.0%" in out
    assert "48 / 48 (+0)" in out  # usage against tiktoken, each model


class _Report(HTMLParser):
    def __init__(self):
        super().__init__()
        self.paths, self.tags, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "path":
            self.paths.append(dict(attrs))

    def handle_data(self, data):
        self.text.append(data)


def test_html_overlays_one_line_per_model(compared):
    user, _, _ = compared
    page = (user / "compare.html").read_text()
    parser = _Report()
    parser.feed(page)
    assert "script" not in parser.tags and "&lt;script&gt;" in page  # model text is data
    assert not any(tag in parser.tags for tag in ("link", "img", "iframe"))  # opens offline
    assert len(parser.paths) == 2
    assert len({p["stroke"] for p in parser.paths}) == 2  # one colour per model
    for path in parser.paths:
        assert path["d"].count("M") == 2  # a sub-path per run
    text = "".join(parser.text)
    for label in LABELS:
        assert text.count(label) >= 3  # the line's title, the legend and the table
    assert "TTFT p50" in text and "ITL p99" in text


def test_a_failed_run_is_shown_and_fails_the_command():
    result = compare(
        *("-o", "speed", "0", "-o", "max_tokens", "8", "-N", "1"),
        *("-m", "streamscope-sim", "-m", "streamscope-sim", "-o", "error", "503", "hi"),
    )
    assert result.exit_code == 1
    assert "runs  " in result.stdout and "0 of 1 complete" in result.stdout
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert "streamscope-sim error=503 run 1: stream error" in error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-m", "nope", "hi"), "Unknown model: nope"),
        (("-m", "streamscope-sim", "-o", "speed", "-1", "hi"), "speed"),
        (("-m", "streamscope-sim", "-m", "streamscope-sim", "hi"), "named twice"),
        (("hi",), "at least one model"),
        (("-m", "streamscope-sim"), "Give a prompt"),
        (("--from-logs", "-m", "streamscope-sim"), "No log"),
        (("--from-logs", "-m", "streamscope-sim", "hi"), "it takes no prompt"),
        (("--from-logs", "-m", "streamscope-sim", "-N", "2"), "it takes no -N"),
    ],
)
def test_bad_input_is_one_line_and_runs_nothing(isolated_env, args, message):
    result = compare(*args)
    assert result.exit_code == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: ") and message in line
    db = isolated_env / "logs.db"
    assert not db.exists() or not traces(isolated_env)


def test_parallel_runs_each_model_in_its_own_process(isolated_env, monkeypatch):
    # Each run is an `llm streamscope run` process: without the other plugins it
    # starts in half the time.
    monkeypatch.setenv("LLM_LOAD_PLUGINS", "llm-streamscope")
    result, document = compare_json(*TWO_PROFILES, "-N", "1", "--parallel", "hi")
    assert document["parallel"] is True
    assert "disturbed" in result.stderr  # the note: timings of parallel runs disturb each other
    openai, anthropic = document["models"]
    assert openai["tokens_per_chunk"] == 1.0 and anthropic["tokens_per_chunk"] > 1.5
    assert len(traces(isolated_env)) == 2  # logged like any run


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK: claude-3-5-haiku is old
def test_the_issues_example_with_the_real_plugins(monkeypatch):
    """llm's own gpt-4o-mini and llm-anthropic's claude-3.5-haiku, each pointed at the
    simulator's route of its provider (chunked as that provider chunks)."""
    from llm_streamscope.sim.server import SimServer

    with SimServer(defaults={"speed": 0, "seed": 4}) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-dummy")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-dummy")
        _, document = compare_json(
            *("-o", "max_tokens", "20", "-m", "gpt-4o-mini", "-m", "claude-3.5-haiku", "-N", "1"),
            "hi",
        )
    openai, anthropic = document["models"]
    assert (openai["model"], openai["encoding_exact"]) == ("gpt-4o-mini", True)
    assert anthropic["encoding"] == "o200k_base" and anthropic["encoding_exact"] is False
    assert openai["tokens_per_chunk"] == 1.0 and anthropic["tokens_per_chunk"] > 1.5
    assert openai["tokens_minus_usage"] == 0


def test_from_logs_counts_runs_not_traces(isolated_env):
    # Two tool-chain runs: each logs two traces, the tool call's and the answer's
    chain = ("streamscope", "-m", "streamscope-sim", "-o", "speed", "0", "-T", "llm_time", "--json")
    documents = []
    for _ in range(2):
        result = CliRunner().invoke(cli, [*chain, "What time is it?"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        documents.append(json.loads(result.stdout))
    assert len(traces(isolated_env)) == 4
    _, document = compare_json("--from-logs", "-m", "streamscope-sim")
    (model,) = document["models"]
    assert model["runs"] == model["complete"] == 2
    assert model["run_ids"] == [d["run_id"] for d in documents]
    assert len(model["trace_ids"]) == 4
    # a run's TTFT is its first response's: the tool call's first chunk
    ttfts = sorted(d["responses"][0]["stats"]["ttft_ms"] for d in documents)
    assert model["ttft_ms"]["count"] == 2 and model["ttft_ms"]["max"] == ttfts[-1]
    # usage against tiktoken counts the text answers only, not the text-less tool calls
    answers = [d["responses"][1]["stats"] for d in documents]
    assert model["tiktoken_tokens"] == sum(s["streamed_compared_tokens"] for s in answers)
    assert model["usage_output_tokens"] == sum(s["usage_compared_tokens"] for s in answers)
    assert model["tokens"] == sum(s["tokens"] for s in answers)
    # --limit counts runs too: the latest run, whole
    _, latest = compare_json("--from-logs", "-m", "streamscope-sim", "--limit", "1")
    (model,) = latest["models"]
    assert model["run_ids"] == [documents[-1]["run_id"]] and len(model["trace_ids"]) == 2
