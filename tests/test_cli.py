"""`llm streamscope` end to end: the real llm CLI, the simulator over loopback HTTP."""

import json

import pytest
import sqlite_utils
from click.testing import CliRunner
from llm.cli import cli

from llm_streamscope.sim.model import SimChat
from llm_streamscope.sim.server import get_server


def run(*args, input=None, env=None):
    runner = CliRunner()
    return runner.invoke(cli, ["streamscope", *args], input=input, env=env, catch_exceptions=False)


def run_json(*args, **kwargs):
    """The run's result, and its one response's document."""
    result = run(*args, "--json", **kwargs)
    if not result.stdout.strip():
        return result, None
    document = json.loads(result.stdout)
    assert len(document["responses"]) == 1
    return result, document["responses"][0]


FAST = ("-m", "streamscope-sim", "-o", "speed", "0")


def test_run_shows_live_text_alignment_and_stats():
    result = run(*FAST, "-o", "seed", "1", "Why does streaming feel fast?")
    assert result.exit_code == 0, result.output
    out = result.stdout
    _, doc_text = run_json(*FAST, "-o", "seed", "1", "again")
    text = "".join(f["text"] for f in doc_text["fragments"])
    assert out.startswith(text)  # the live text, exactly as streamed
    assert "─ alignment ─" in out and "─ stats ─" in out
    # plain output (not a terminal): one-token chunks show a │ between every token
    assert "│" in out.split("─ alignment ─")[1]
    for label in (
        "TTFT",
        "TTST",
        "tokens/chunk",
        "1-token chunks",
        "gap",
        "gaps > 50 ms",
        "ITL",
        "tokens/s",
    ):
        assert label in out
    assert "100.0% are exactly one whole token" in out
    assert result.stderr == ""


def test_json_matches_the_send_log_and_the_schema():
    result, doc = run_json(*FAST, "-o", "seed", "3", "Explain SSE")
    assert result.exit_code == 0
    server = get_server()
    sent = server.send_log(server.last_completion_id).sent_ns
    assert doc["model"] == "streamscope-sim"
    assert doc["encoding"] == "o200k_base" and doc["encoding_exact"] is True
    assert doc["status"] == "complete" and doc["error"] is None
    fragments = doc["fragments"]
    assert len(fragments) == len(sent)
    assert [f["index"] for f in fragments] == list(range(len(fragments)))
    assert all(f["kind"] == "text" for f in fragments)
    times = [f["t_ms"] for f in fragments]
    assert times == sorted(times) and times[0] > 0
    stats = doc["stats"]
    # gpt-4o-mini profile: one o200k token per chunk, and usage agrees
    assert stats["chunks"] == stats["tokens"] == stats["usage_output_tokens"] == len(sent)
    assert stats["tokens_minus_usage"] == 0
    assert stats["one_token_chunks_pct"] == 100.0
    assert all(f["token_end"] - f["token_start"] == 1 for f in fragments)
    assert stats["ttft_ms"] == times[0]
    # times count from the request leaving; llm's client set-up before it is apart
    assert stats["setup_ms"] > 0
    assert set(stats["gap_ms"]) >= {"mean", "p50", "p90", "p99", "max"}
    assert doc["prompt"] == "Explain SSE"


def test_prompt_from_stdin_system_prompt_and_options():
    result, doc = run_json(*FAST, "-s", "Be brief", "-o", "text", "code", input="Show code\n")
    assert result.exit_code == 0, result.output
    assert doc["prompt"] == "Show code\n" and doc["system"] == "Be brief"
    assert doc["options"]["text"] == "code"
    assert "def " in "".join(f["text"] for f in doc["fragments"])


def test_options_are_those_given_and_llms_saved_defaults():
    result, doc = run_json(*FAST, "-o", "seed", "3", "-o", "max_tokens", "2", "hi")
    assert result.exit_code == 0
    assert doc["options"] == {"speed": 0.0, "seed": 3, "max_tokens": 2}
    # llm's saved per-model defaults apply, as in `llm prompt`; -o wins over them
    saved = CliRunner().invoke(cli, ["models", "options", "set", "streamscope-sim", "text", "code"])
    assert saved.exit_code == 0, saved.output
    _, doc = run_json(*FAST, "-o", "max_tokens", "2", "hi")
    assert doc["options"] == {"speed": 0.0, "max_tokens": 2, "text": "code"}
    _, doc = run_json(*FAST, "-o", "text", "prose", "-o", "max_tokens", "2", "hi")
    assert doc["options"]["text"] == "prose"


def test_profile_with_sub_token_chunks():
    result, doc = run_json(
        *FAST, "-o", "profile", "gemini-flash", "-o", "text", "multilingual", "hi"
    )
    assert result.exit_code == 0
    stats = doc["stats"]
    assert stats["chars_per_chunk"]["mean"] > 50
    assert stats["split_tokens"] > 0
    assert any(f["ends_mid_token"] for f in doc["fragments"])


def test_views_can_be_chosen():
    tokens = run(*FAST, "-o", "max_tokens", "5", "--view", "tokens", "x").stdout
    view = tokens.split("─ alignment ─")[1].split("─ stats ─")[0]
    assert "¦" in view and "│" not in view.replace("¦ token boundary", "")


def test_colour_when_forced_and_plain_with_no_color():
    colour = run(*FAST, "-o", "max_tokens", "5", "x", env={"FORCE_COLOR": "1"}).stdout
    assert "\x1b[" in colour
    plain = run(*FAST, "-o", "max_tokens", "5", "x", env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert "\x1b[" not in plain.stdout


def test_encoding_override_and_unknown_encoding():
    result, doc = run_json(*FAST, "--encoding", "cl100k_base", "hi")
    assert doc["encoding"] == "cl100k_base"
    result = run(*FAST, "--encoding", "nope", "hi")
    assert result.exit_code != 0
    assert result.stderr.count("\n") == 1
    assert "Unknown encoding 'nope'" in result.stderr and "o200k_base" in result.stderr


def test_any_openai_compatible_model_gets_an_approximate_encoding(isolated_env):
    # An llm model configured in extra-openai-models.yaml, served by the simulator's
    # server: tiktoken does not know it, so the counts are approximate.
    server = get_server()
    (isolated_env / "extra-openai-models.yaml").write_text(
        f"- model_id: my-local\n  model_name: my-local\n  api_base: {server.url}/v1\n"
    )
    result = run("-m", "my-local", "-o", "max_tokens", "20", "hi")
    assert result.exit_code == 0, result.output
    assert "approximate" in result.stdout
    result, doc = run_json("-m", "my-local", "-o", "max_tokens", "20", "hi")
    assert doc["encoding"] == "o200k_base" and doc["encoding_exact"] is False


@pytest.mark.parametrize(
    "args,message",
    [
        (("-m", "no-such-model", "hi"), "Unknown model: no-such-model"),
        (("-m", "gpt-4o-mini", "hi"), "No key found"),
        (("-m", "streamscope-sim", "-o", "profile", "nope", "hi"), "profile"),
        (("-m", "streamscope-sim", "-o", "speed", "-1", "hi"), "speed"),
        ((*FAST, "-T", "nope", "hi"), "nope"),
        ((*FAST, "-t", "nope", "hi"), "Invalid template: nope"),
        ((*FAST, "-a", "/no/such/file.png", "hi"), "/no/such/file.png"),
        ((*FAST, "--cid", "01nope", "hi"), "No conversation found with id=01nope"),
        ((*FAST, "--schema", "name, age int", "hi"), "schema"),
        ((*FAST, "--log", "--no-log", "hi"), "--log and --no-log are mutually exclusive"),
        ((*FAST, "--no-stream", "hi"), "--no-stream cannot apply"),
        ((*FAST, "--save", "mine", "hi"), "--save saves a template and runs no prompt"),
    ],
)
def test_bad_input_is_one_clear_line_and_nothing_is_logged(args, message, isolated_env):
    result = run(*args)
    assert result.exit_code != 0
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert not (isolated_env / "templates" / "mine.yaml").exists()
    logs = isolated_env / "logs.db"
    if logs.exists():  # llm prompt creates (and migrates) it before it checks its input
        db = sqlite_utils.Database(logs)
        assert db["turns"].count == 0
        assert not db["streamscope_traces"].exists() or db["streamscope_traces"].count == 0


def test_model_that_cannot_stream(register_models):
    class NoStream(SimChat):
        model_id = "no-stream"
        can_stream = False

    register_models(NoStream())
    result = run("-m", "no-stream", "hi")
    assert result.exit_code != 0 and "cannot stream" in result.stderr
    assert result.stderr.count("\n") == 1


def test_http_error_from_the_provider():
    result, doc = run_json(*FAST, "-o", "error", "400", "hi")
    assert result.exit_code == 1
    assert doc["status"] == "error" and doc["fragments"] == []
    assert result.stderr.startswith("Error: stream error: ") and result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "option,code,status",
    [(("chunks", "0"), 0, "complete"), (("error", "429"), 1, "error: Error code: 429")],
)
def test_a_response_without_text_still_shows_its_status_and_stats(option, code, status):
    result = run(*FAST, "-o", *option, "hi")
    assert result.exit_code == code, result.output
    out = result.stdout
    assert "no fragments arrived" in out.split("─ alignment ─")[1]
    table = [line.rstrip() for line in out.split("─ stats ─")[1].splitlines()]
    assert any(line.startswith(f"status          {status}") for line in table)
    for label in ("TTFT", "TTST", "gap", "ITL"):
        assert f"{label:<16}-" in table
    assert any(line.startswith("chunks          0 ") for line in table)
    result, doc = run_json(*FAST, "-o", *option, "hi")
    assert result.exit_code == code
    assert doc["fragments"] == [] and doc["streams"] == []
    assert doc["stats"]["ttft_ms"] is None and doc["stats"]["chunks"] == 0


def test_connection_dropped_mid_stream_keeps_what_arrived():
    result = run(*FAST, "-o", "drop_after", "7", "hi")
    assert result.exit_code == 1
    assert "─ stats ─" in result.stdout  # the views of what was received
    assert result.stderr.startswith("Error: stream error after 7 fragments: ")
    assert result.stderr.count("\n") == 1
    result, doc = run_json(*FAST, "-o", "drop_after", "7", "hi")
    assert doc["status"] == "error" and len(doc["fragments"]) == 7
    assert doc["stats"]["chunks"] == 7


def test_simulator_in_another_process_via_its_url(monkeypatch):
    # STREAMSCOPE_SIM_URL points the model at a running simulator (the benchmarks
    # run it in its own process; here a second server object stands in for it).
    from llm_streamscope.sim.server import SimServer

    with SimServer() as other:
        monkeypatch.setenv("STREAMSCOPE_SIM_URL", other.base_url)
        result, doc = run_json(*FAST, "-o", "max_tokens", "9", "hi")
        assert result.exit_code == 0
        sent = other.send_log(other.last_completion_id)
        assert len(sent.sent_ns) == len(doc["fragments"]) == 9


def test_lone_surrogates_from_a_provider_are_shown_stored_and_aligned(register_models):
    # Half of a surrogate pair sent as a JSON escape reaches Python as a code point
    # with no UTF-8 form; streamscope keeps everything else and shows U+FFFD.
    import llm
    from llm.parts import StreamEvent

    class Surrogates(llm.Model):
        model_id = "surrogates"
        can_stream = True

        def execute(self, prompt, stream, response, conversation=None):
            yield StreamEvent(type="text", chunk="smile \ud83d")
            yield StreamEvent(type="text", chunk="\ude00 done")

    register_models(Surrogates())
    result = run("-m", "surrogates", "hi")
    assert result.stdout.startswith("smile \ufffd\ufffd done\n")
    assert result.exit_code == 0, result.output
    # llm's own logging cannot store such text; the trace is kept all the same
    assert result.stderr.startswith("Warning: llm could not log the response itself: ")
    result, doc = run_json("-m", "surrogates", "hi")
    assert [f["text"] for f in doc["fragments"]] == ["smile \ufffd", "\ufffd done"]
    shown = json.loads(run("show", doc["trace_id"], "--json").stdout)["responses"][0]
    assert shown["fragments"] == doc["fragments"]
