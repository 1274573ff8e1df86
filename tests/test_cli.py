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


def test_json_leaves_standard_error_empty():
    # llm's empty line after each stream is no stray line on standard error
    for args in (("hi",), ("-T", "llm_time", "What time is it?")):
        result = run(*FAST, "-o", "max_tokens", "3", "--json", *args)
        assert result.exit_code == 0 and json.loads(result.stdout)["responses"]
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
        ((*FAST, "--cid", "01nope", "hi"), "No conversation found with id=01nope"),
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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--bogus", "hi"), "No such option '--bogus'"),
        (("--view", "nope", "hi"), "Invalid value for '--view'"),
        ((*FAST, "-a", "/no/such/file.png", "hi"), "/no/such/file.png"),
        ((*FAST, "--schema", "name, age nope", "hi"), "nope"),
    ],
)
def test_usage_errors_show_usage_as_llm_prompt_does(args, message):
    result = run(*args)
    assert result.exit_code == 2
    usage, try_help, blank, error = result.stderr.splitlines()
    assert usage.startswith("Usage: ") and usage.endswith("streamscope run [OPTIONS] [PROMPT]")
    assert try_help.startswith("Try '") and try_help.endswith("streamscope run --help' for help.")
    assert blank == "" and error.startswith("Error: ") and message in error


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


# --------------------------------------------------------------------------
# Every option of llm prompt, with llm's meaning


@pytest.fixture(scope="module")
def messages_server():
    from llm_streamscope.sim.server import SimServer

    with SimServer(defaults={"speed": 0, "seed": 4, "chunks": 12}) as server:
        yield server


@pytest.fixture
def claude(messages_server, monkeypatch):
    """llm-anthropic pointed at the simulator's Anthropic route, with a dummy key."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", messages_server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-dummy")
    return messages_server


HAIKU = ("-m", "claude-haiku-4.5")


def run_document(*args, **kwargs):
    result = run(*args, "--json", **kwargs)
    assert result.stdout.strip(), result.output
    return result, json.loads(result.stdout)


def llm_turns(user_path):
    return list(sqlite_utils.Database(user_path / "logs.db")["turns"].rows)


def stored(user_path):
    db = sqlite_utils.Database(user_path / "logs.db")
    return list(db.query("select * from streamscope_traces order by started_utc"))


def test_a_tool_chain_is_one_run_of_two_responses(claude, isolated_env):
    result, document = run_document(*HAIKU, "-T", "llm_time", "--td", "What time is it?")
    assert result.exit_code == 0, result.output
    first, second = document["responses"]
    assert first["run_id"] == second["run_id"] == document["run_id"]
    assert [first["run_index"], second["run_index"]] == [0, 1]
    # the tool call's name and arguments streamed, and are aligned like text
    kinds = {s["kind"]: s for s in first["streams"]}
    assert "".join(f["text"] for f in first["fragments"] if f["kind"] == "tool_call_name") == (
        "llm_time"
    )
    assert kinds["tool_call_args"]["tokens"]
    assert "".join(f["text"] for f in second["fragments"]) and second["stats"]["ttft_ms"] > 0
    # the second request left after the first stream ended and the tool ran
    assert second["run_offset_ms"] > first["stats"]["total_ms"]
    totals = document["totals"]
    assert totals["responses"] == 2 and totals["between_ms"][0] > 0
    assert totals["tokens"] == sum(
        len(s["tokens"]) for r in document["responses"] for s in r["streams"]
    )
    assert "Tool call: llm_time({})" in result.stderr  # --td, as llm prints it
    # one trace per response, each beside llm's own record of it
    rows = stored(isolated_env)
    assert [r["id"] for r in rows] == [first["trace_id"], second["trace_id"]]
    assert {t["id"] for t in llm_turns(isolated_env)} == {r["turn_id"] for r in rows}


def test_a_tool_chain_on_the_simulator_in_openai_format(isolated_env):
    result, document = run_document(*FAST, "-T", "llm_time", "What time is it?")
    assert result.exit_code == 0, result.output
    call, answer = document["responses"]
    server = get_server()
    assert [f["text"] for f in answer["fragments"]] == server.send_log(
        server.last_completion_id
    ).chunks
    args = [f for f in call["fragments"] if f["kind"] == "tool_call_args"]
    assert "".join(f["text"] for f in args) == "{}"
    assert all(f["token_start"] is not None for f in args)  # aligned like text
    assert answer["stats"]["ttft_ms"] > 0
    assert len(stored(isolated_env)) == 2


def test_a_tool_call_is_measured_as_the_responses_output(isolated_env):
    _, document = run_document(*FAST, "-T", "llm_time", "What time is it?")
    call, _ = document["responses"]
    stats = call["stats"]
    # The tool call is the response's output: its first chunk is the TTFT (the name's)
    first = call["fragments"][0]
    assert first["kind"] == "tool_call_name" and stats["ttft_ms"] == first["t_ms"] > 0
    assert stats["measured"] == "tool calls"
    assert stats["chunks"] == 2
    assert stats["tokens"] == sum(len(s["tokens"]) for s in call["streams"])
    assert stats["ttst_ms"] is not None and stats["itl_ms"]["mean"] is not None
    # the run's TTFT is the first response's
    assert document["totals"]["ttft_ms"] == stats["ttft_ms"]
    # the simulator's usage counts what it streamed: the name and the arguments
    assert stats["usage_output_tokens"] == stats["streamed_compared_tokens"] == 4
    assert stats["tokens_minus_usage"] == 0
    # the table shows the figures that apply, and says what they count
    out = run(*FAST, "-T", "llm_time", "What time is it?").stdout
    table = out.split("─ stats ─")[1].split("between the two responses")[0]
    assert "no text: the figures below count the tool calls" in table
    rows = {line[:16].strip(): line[16:].strip() for line in table.splitlines()}
    assert rows["TTFT"].endswith("(instant)") and rows["chunks"] == "2 · 10 chars · 10 bytes"
    assert "usage reports 4 output tokens · streamed tool calls 4 (+0)" in table
    run_table = out.split("─ run ─")[1]
    assert "TTFT       -" not in run_table and "(the first response's)" in run_table


def test_a_chain_shows_each_response_the_time_between_and_totals(claude):
    result = run(*HAIKU, "-T", "llm_time", "What time is it?")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert (
        "response 1 of 2: tool call llm_time" in out or "response 1 of 2: text + tool call" in out
    )
    assert "response 2 of 2: text" in out
    assert out.count("─ stats ─") == 2
    assert "between the two responses: the tools running, and llm" in out
    assert "─ run ─" in out and "from the first request to the last token" in out


def test_functions_and_a_chain_limit(claude, isolated_env):
    code = "def multiply(a: int, b: int) -> int:\n    return a * b\n"
    result, document = run_document(*HAIKU, "--functions", code, "--cl", "1", "3 times 3?")
    # llm stops the chain after one response, with its own words; what streamed is kept
    assert result.exit_code == 1
    assert result.stderr == "Error: Chain limit of 1 exceeded.\n"
    (only,) = document["responses"]
    assert only["status"] == "complete"
    assert "".join(f["text"] for f in only["fragments"] if f["kind"] == "tool_call_args") == (
        '{"a": 3, "b": 3}'
    )
    assert len(stored(isolated_env)) == 1


def test_async_is_captured_like_sync(claude):
    result, sync = run_json(*HAIKU, "hi")
    sent = claude.send_log(claude.last_completion_id).chunks
    result, doc = run_json(*HAIKU, "--async", "hi")
    assert result.exit_code == 0, result.output
    assert [f["text"] for f in doc["fragments"]] == sent == [f["text"] for f in sync["fragments"]]
    assert doc["stats"]["ttft_ms"] > 0 and doc["stats"]["setup_ms"] > 0


def test_reasoning_hidden_with_R_and_usage_with_u(claude):
    shown = run(*HAIKU, "-o", "thinking", "1", "-u", "hi")
    assert shown.exit_code == 0, shown.output
    assert "Token usage: " in shown.stderr
    hidden = run(*HAIKU, "-o", "thinking", "1", "-R", "hi")
    thinking = shown.stderr.split("Token usage")[0].strip()
    assert thinking and thinking not in hidden.stderr
    assert hidden.exit_code == 0 and "─ stats ─" in hidden.stdout


def test_conversation_continues_with_c_and_cid(isolated_env):
    result, first = run_json(*FAST, "-o", "max_tokens", "3", "first")
    assert result.exit_code == 0
    result, second = run_json(*FAST, "-o", "max_tokens", "3", "-c", "second")
    assert result.exit_code == 0
    turns = {t["id"]: t for t in llm_turns(isolated_env)}
    thread = turns[first["turn_id"]]["thread_id"]
    assert turns[second["turn_id"]]["thread_id"] == thread
    result, _ = run_json(*FAST, "-o", "max_tokens", "3", "--cid", thread, "third")
    assert result.exit_code == 0
    assert {t["thread_id"] for t in llm_turns(isolated_env)} == {thread}


def test_fragments_system_fragments_and_templates(isolated_env, tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("Fragment text.")
    style = tmp_path / "style.md"
    style.write_text("Be terse.")
    result, doc = run_json(
        *FAST, "-o", "max_tokens", "3", "-f", str(notes), "--sf", str(style), "q"
    )
    assert result.exit_code == 0, result.output
    # the prompt as llm sends it: fragments first
    assert doc["prompt"] == "Fragment text.\nq" and "Be terse." in doc["system"]
    logged = json.loads(CliRunner().invoke(cli, ["logs", "-n", "1", "--json"]).stdout)[0]
    assert "Fragment text." in json.dumps(logged)
    templates = isolated_env / "templates"
    templates.mkdir()
    (templates / "summarize.yaml").write_text(
        "model: streamscope-sim\nsystem: 'Summarize in $lang'\nprompt: 'Text: $input'\n"
    )
    result, doc = run_json("-o", "speed", "0", "-t", "summarize", "-p", "lang", "French", "abc")
    assert result.exit_code == 0, result.output
    assert doc["model"] == "streamscope-sim"
    assert doc["prompt"] == "Text: abc" and doc["system"] == "Summarize in French"


def test_attachments(claude, tmp_path):
    image = tmp_path / "pixel.png"
    image.write_bytes(
        bytes.fromhex(
            "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
            "0000000d4944415478da63f8ffff3f0005fe02fea7d6a4e30000000049454e44ae426082"
        )
    )
    result, doc = run_json(*HAIKU, "-a", str(image), "describe")
    assert result.exit_code == 0, result.output
    assert doc["status"] == "complete" and doc["fragments"]
    result, doc = run_json(*HAIKU, "--at", str(image), "image/png", "describe")
    assert result.exit_code == 0, result.output


def test_schema(claude):
    result, doc = run_json(*HAIKU, "--schema", "name, age int", "invent a dog")
    assert result.exit_code == 0, result.output
    assert doc["status"] == "complete"
    result, doc = run_json(*HAIKU, "--schema-multi", "name, age int", "invent dogs")
    assert result.exit_code == 0, result.output


def test_query_picks_the_model():
    result, doc = run_json("-q", "streamscope", "-o", "speed", "0", "-o", "max_tokens", "2", "hi")
    assert result.exit_code == 0, result.output
    assert doc["model"] == "streamscope-sim"


def test_model_options_are_llms_listing():
    result = run(*FAST, "--options")
    assert result.exit_code == 0
    assert result.stdout == CliRunner().invoke(cli, ["prompt", *FAST, "--options"]).stdout
    assert "speed" in result.stdout


def test_extract_shows_the_code_block_and_still_traces_the_stream(register_models):
    import llm
    from llm.parts import StreamEvent

    answer = ["Here:\n```py", "thon\nprint(1)\n", "```\nand\n```js\nx()\n```\n"]

    class Coder(llm.Model):
        model_id = "coder"
        can_stream = True

        def execute(self, prompt, stream, response, conversation=None):
            for chunk in answer:
                yield StreamEvent(type="text", chunk=chunk)

    register_models(Coder())
    first = run("-m", "coder", "-x", "code")
    assert first.exit_code == 0, first.output
    # llm prints the block and a newline, as llm prompt -x does
    assert first.stdout.startswith("print(1)\n\n")
    assert "```" not in first.stdout.split("─ alignment ─")[0]
    last = run("-m", "coder", "--xl", "code")
    assert last.stdout.startswith("x()\n")
    _, doc = run_json("-m", "coder", "-x", "code")
    assert [f["text"] for f in doc["fragments"]] == answer


def test_show_replay_export_and_logs_of_a_whole_run(claude):
    import csv
    import io

    _, document = run_document(*HAIKU, "-T", "llm_time", "What time is it?")
    run_id = document["run_id"]
    first, second = (r["trace_id"] for r in document["responses"])
    # the run read back is the run as it was shown: by run id, and as the latest run
    assert json.loads(run("show", run_id, "--json").stdout) == document
    assert json.loads(run("show", "--latest", "--json").stdout) == document
    # a trace id (or llm's id for it) is that response alone
    alone = json.loads(run("show", second, "--json").stdout)
    assert alone["responses"] == [document["responses"][1]]
    replayed = run("replay", run_id, "--speed", "0")
    assert replayed.exit_code == 0
    assert "response 1 of 2" in replayed.stdout and "─ run ─" in replayed.stdout
    table = list(csv.DictReader(io.StringIO(run("export", run_id, "-F", "csv").stdout)))
    assert [r["trace_id"] for r in table] == [
        r["trace_id"] for r in document["responses"] for _ in r["fragments"]
    ]
    lines = run("export", run_id, "-F", "jsonl").stdout.splitlines()
    assert [json.loads(line)["text"] for line in lines] == [r["text"] for r in table]
    listed = run("logs").stdout.splitlines()
    assert listed[0].startswith(second) and f"response 2/2 of run {run_id}" in listed[0]
    assert listed[1].startswith(first) and f"response 1/2 of run {run_id}" in listed[1]


def test_a_zero_gap_threshold_is_kept_not_taken_for_the_default():
    result, doc = run_json(*FAST, "-o", "max_tokens", "5", "--gap-ms", "0", "hi")
    assert result.exit_code == 0
    assert doc["stats"]["stall_threshold_ms"] == 0
    shown = json.loads(run("show", doc["trace_id"], "--json").stdout)["responses"][0]
    assert shown["stats"]["stall_threshold_ms"] == 0


def test_one_letter_means_what_it_means_in_llm():
    """A short option of streamscope's means what it means in llm prompt or llm logs."""
    import click

    def letters(command):
        found = {}
        for param in command.get_params(click.Context(command)):
            longs = [o for o in param.opts if o.startswith("--")]
            for short in [o for o in param.opts if len(o) == 2 and o != "-h"]:
                found[short] = longs[0] if longs else param.name
        return found

    llm_meanings = {}
    for command in (cli.commands["prompt"], cli.commands["logs"].commands["list"]):
        for short, long in letters(command).items():
            llm_meanings.setdefault(short, set()).add(long)
    group = cli.commands["streamscope"]
    for name, command in group.commands.items():
        for short, long in letters(command).items():
            if short in llm_meanings:
                assert long in llm_meanings[short], f"{name}: {short} {long}"
    assert letters(group.commands["compare"])["-N"] == "--runs"
    assert letters(group.commands["export"])["-F"] == "--format"


def test_help_shows_each_commands_summary_whole():
    from llm_streamscope.cli.types import summary

    text = run("--help").stdout
    commands = " ".join(text.split("Commands:")[1].split())
    assert "..." not in commands
    for name, command in cli.commands["streamscope"].commands.items():
        assert summary(command.help) in commands, name


def test_llm_builds_no_schema_in_the_database_it_neither_reads_nor_writes(
    isolated_env, monkeypatch
):
    """llm's prompt command gets a database in memory when it does not read its log:
    building llm's schema there (every migration, each run) would only delay the
    request. Where llm reads its log (-c), its database is migrated as llm does."""
    import llm.cli

    migrated = []
    real = llm.cli.migrate
    monkeypatch.setattr(llm.cli, "migrate", lambda db: migrated.append(db) or real(db))
    assert run(*FAST, "-o", "max_tokens", "3", "hi").exit_code == 0
    assert run(*FAST, "-n", "-o", "max_tokens", "3", "hi").exit_code == 0
    assert migrated == []
    assert run(*FAST, "-c", "-o", "max_tokens", "3", "and then?").exit_code == 0
    assert migrated
    assert llm.cli.migrate.__name__ == "<lambda>"  # put back as it was given
