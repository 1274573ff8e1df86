"""`llm streamscope serve`: the simulator as a real server process, and real clients against it.

One `llm streamscope serve` process serves the module. llm's OpenAI client reaches it
through the extra-openai-models.yaml lines it prints, llm-anthropic through the
ANTHROPIC_BASE_URL line, and `llm streamscope -m streamscope-sim` (STREAMSCOPE_SIM_URL)
sends each request's own network conditions, whose results `llm streamscope` reports.
"""

import http.client
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner
from llm.cli import cli

LLM = str(pathlib.Path(sys.executable).with_name("llm"))
SERVER_SEED = 5


class Served:
    """A server process: its first stdout line (the base URL) and its instructions."""

    def __init__(self, args, env, meanwhile=None):
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        if meanwhile is not None:
            meanwhile()  # while the process starts
        self.url = self.proc.stdout.readline().strip()
        self.root = self.url.removesuffix("/v1")
        self.port = int(self.root.rsplit(":", 1)[1]) if self.root else 0
        self.instructions = []
        for line in self.proc.stderr:
            self.instructions.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C stops"):
                break

    def interrupt(self):
        """SIGINT, as Ctrl-C sends it: the exit code and what was left on stderr."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=20)
        return code, self.proc.stderr.read()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def process_env(tmp_path_factory, tiktoken_cache):
    user = tmp_path_factory.mktemp("serve-user")
    keep = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    # Only this plugin in the server process: the real plugins are this test's clients.
    return keep | {
        "LLM_USER_PATH": str(user),
        "TIKTOKEN_CACHE_DIR": str(tiktoken_cache),
        "LLM_LOAD_PLUGINS": "llm-streamscope",
    }


def load_encoding_here(tiktoken_cache):
    """o200k loaded in this process, as the in-process simulator of other modules loads it:
    the runs here tokenize in place instead of starting a tokenizer process each."""
    from llm_streamscope.analysis import encodings

    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(tiktoken_cache))
    encodings.get_encoding("o200k_base")


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiktoken_cache):
    args = [LLM, "streamscope", "serve", "--port", "0", "--speed", "0"]
    server = Served(
        [*args, "--seed", str(SERVER_SEED)],
        process_env(tmp_path_factory, tiktoken_cache),
        meanwhile=lambda: load_encoding_here(tiktoken_cache),
    )
    try:
        yield server
        # Ctrl-C stops it cleanly: exit 0, no traceback, click's "Aborted!" neither.
        code, err = server.interrupt()
        assert code == 0 and "Traceback" not in err and "Aborted" not in err, err
    finally:
        server.kill()


def run(*args, env=None):
    return CliRunner().invoke(cli, ["streamscope", *args], env=env, catch_exceptions=False)


def run_doc(*args):
    result = run(*args, "--json")
    assert result.stdout.strip(), result.output
    (doc,) = json.loads(result.stdout)["responses"]
    return result, doc


def post(port, path, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def send_log(port, response_id):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", f"/v1/streamscope/sendlog/{response_id}")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def chat(**streamscope):
    return {
        "model": "gpt-4o-mini",
        "stream": True,
        "max_tokens": 6,
        "messages": [{"role": "user", "content": "hi"}],
        "streamscope": streamscope,
    }


# --------------------------------------------------------------------------
# Real clients, pointed at it by the lines it prints


def test_prints_its_url_then_lines_the_openai_client_works_with(served, isolated_env):
    assert served.url.startswith("http://127.0.0.1:") and served.url.endswith("/v1")
    text = "\n".join(served.instructions)
    assert f"openai-chat format, profile gpt-4o-mini: {served.url}" in text
    # The printed YAML, as printed, is the user's extra-openai-models.yaml.
    start = served.instructions.index("- model_id: streamscope-serve")
    yaml = "\n".join(served.instructions[start : start + 3]) + "\n"
    assert f"api_base: {served.url}" in yaml
    (isolated_env / "extra-openai-models.yaml").write_text(yaml)
    result, doc = run_doc("-m", "streamscope-serve", "-o", "max_tokens", "12", "hi")
    assert result.exit_code == 0, result.output
    assert doc["status"] == "complete" and doc["encoding_exact"]  # model_name: gpt-4o-mini
    stats = doc["stats"]
    assert stats["chunks"] == stats["tokens"] == 12 and stats["one_token_chunks_pct"] == 100


def test_llm_anthropic_through_the_printed_environment_line(served, monkeypatch):
    line = next(x for x in served.instructions if "ANTHROPIC_BASE_URL=" in x)
    assert f"ANTHROPIC_BASE_URL={served.root} " in line
    monkeypatch.setenv("ANTHROPIC_BASE_URL", served.root)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-dummy")
    result, doc = run_doc("-m", "claude-haiku-4.5", "-o", "max_tokens", "30", "hi")
    assert result.exit_code == 0, result.output
    assert doc["status"] == "complete" and doc["stats"]["tokens"] == 30
    # The Anthropic route keeps its own profile: several tokens per delta.
    assert doc["stats"]["tokens_per_chunk"]["mean"] > 1.5


def test_llms_responses_client_through_the_responses_format_lines(served, isolated_env):
    from types import SimpleNamespace

    from llm_streamscope.serving import SERVE_FORMATS, Serving, instructions

    lines = instructions(
        Serving(SimpleNamespace(url=served.root), SERVE_FORMATS["openai-responses"], "gpt-4o-mini")
    )
    assert lines[0] == f"openai-responses format, profile gpt-4o-mini: {served.url}"
    yaml = lines[1].split("\n", 1)[1].rsplit("\nthen:", 1)[0] + "\n"
    assert "  responses: true\n" in yaml
    (isolated_env / "extra-openai-models.yaml").write_text(yaml)
    result, doc = run_doc("-m", "streamscope-serve", "-o", "max_tokens", "20", "hi")
    assert result.exit_code == 0, result.output
    assert doc["status"] == "complete" and doc["stats"]["chunks"] == doc["stats"]["tokens"] == 20


# --------------------------------------------------------------------------
# Network conditions: what `llm streamscope` reports for each


@pytest.fixture
def sim(served, monkeypatch):
    """`-m streamscope-sim` sends its -o options to the serve process."""
    monkeypatch.setenv("STREAMSCOPE_SIM_URL", served.url)
    return ("-m", "streamscope-sim", "-o", "max_tokens", "8")


def test_latency_and_ttft_delay_the_first_token(sim):
    _, doc = run_doc(*sim, "-o", "latency_ms", "60", "-o", "ttft_ms", "90", "--wire", "hi")
    assert doc["status"] == "complete" and doc["stats"]["ttft_ms"] >= 150
    assert doc["wire"]["headers_ms"] >= 60  # the headers come late too
    assert doc["stats"]["gap_ms"]["max"] < 60 + 90  # every chunk shifted, not spread


def test_a_stall_is_counted(sim):
    _, doc = run_doc(*sim, "-o", "stall_after", "3", "-o", "stall_s", "0.2", "hi")
    stats = doc["stats"]
    assert doc["status"] == "complete" and stats["chunks"] == 8
    # One stall, before the fourth chunk (less whatever the client lagged on the third).
    assert stats["stalls"] == 1 and stats["gap_ms"]["max"] >= 150


def test_a_drop_is_an_error_and_keeps_the_fragments(sim):
    result, doc = run_doc(*sim, "-o", "drop_after", "3", "hi")
    assert result.exit_code == 1
    assert doc["status"] == "error" and len(doc["fragments"]) == 3
    assert result.stderr.count("\n") == 1 and "stream error after 3 fragments" in result.stderr


def test_an_error_status_is_one_clear_line(sim):
    result = run(*sim, "-o", "error", "503", "hi")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "503" in result.stderr, result.stderr
    assert "overloaded" in result.stderr  # the provider's error body, read by the client


def test_keepalives_are_seen_on_the_wire(sim):
    args = ("-o", "ttft_ms", "130", "-o", "keepalive_ms", "25", "--wire")
    _, doc = run_doc(*sim, *args, "hi")
    assert doc["status"] == "complete"
    comments = doc["stats"]["wire"]["events_by_label"].get("keep-alive", 0)
    assert 2 <= comments <= 5  # 130 ms of silence, one every 25 ms (or a little more)
    first_text = next(e for e in doc["wire"]["events"] if e["label"] == "text")
    keepalives = [e for e in doc["wire"]["events"] if e["label"] == "keep-alive"]
    assert all(e["t_ms"] <= first_text["t_ms"] for e in keepalives)  # a read can hold both


def test_a_bandwidth_cap_paces_the_bytes(sim):
    cap = 20_000  # bytes/s: the ~2.5 kB of this stream take over 100 ms
    _, doc = run_doc(*sim, "-o", "bandwidth", str(cap), "--wire", "hi")
    assert doc["status"] == "complete"
    last = [e for e in doc["wire"]["events"] if e["label"] == "text"][-1]
    assert last["byte_end"] > 1500
    assert last["t_ms"] >= last["byte_end"] / cap * 1000


def test_the_server_seed_fixes_chunking_and_timing(served):
    def sent(**options):
        status, body = post(
            served.port, "/v1/chat/completions", chat(speed=4, jitter_ms=3, **options)
        )
        assert status == 200
        first = json.loads(body.split(b"\n", 1)[0].removeprefix(b"data: "))
        log = send_log(served.port, first["id"])
        assert log["seed"] == options.get("seed", SERVER_SEED)
        return log["chunks"], log["due_ns"]

    chunks, due = sent()
    assert len(due) == len(chunks) == 6 and due[0] > 0
    assert sent() == (chunks, due)  # the same seed: the same chunks, due at the same times
    assert sent(seed=SERVER_SEED + 1)[1] != due


def test_gemini_sse_gets_keepalives_too(served):
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    body["streamscope"] = {"chunks": 2, "ttft_ms": 60, "keepalive_ms": 25}
    path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    status, raw = post(served.port, path, body)
    assert status == 200 and raw.count(b": keep-alive\r\n\r\n") == 2
    assert raw.count(b"data: ") == 2


# --------------------------------------------------------------------------
# --replay


@pytest.fixture(scope="module")
def capture(served, tmp_path_factory):
    """An Anthropic stream as the serve process sent it, and a times file for it."""
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
        "streamscope": {"chunks": 6, "text": "multilingual"},
    }
    status, raw = post(served.port, "/v1/messages", body)
    assert status == 200
    folder = tmp_path_factory.mktemp("capture")
    path = folder / "capture.sse"
    path.write_bytes(raw)
    # The bytes up to the second delta arrive at 80 ms, the rest at 200 ms.
    second = raw.index(b"event: content_block_delta", raw.index(b"content_block_delta") + 1)
    times = folder / "arrivals.txt"
    times.write_text(f"0.080\t{second}\n0.200\t{len(raw)}\n")
    return path, times


def fragment_texts(doc):
    return [f["text"] for f in doc["fragments"]]


def test_replay_serves_the_capture_as_inspect_reads_it(
    capture, tmp_path_factory, tiktoken_cache, monkeypatch
):
    path, times = capture
    _, inspected = run_doc("inspect", str(path))
    args = [
        sys.executable,
        "-m",
        "llm_streamscope.sim",
        "--replay",
        str(path),
        "--timing",
        str(times),
    ]
    replaying = Served(args, process_env(tmp_path_factory, tiktoken_cache))
    try:
        # Served where its format is served: the Anthropic root, printed first.
        assert replaying.url.startswith("http://127.0.0.1:") and not replaying.url.endswith("/v1")
        assert (
            f"Replaying {path} (2 pieces, its own timing) on POST /v1/messages"
            in (replaying.instructions[0])
        )
        monkeypatch.setenv("ANTHROPIC_BASE_URL", replaying.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-dummy")
        result, doc = run_doc("-m", "claude-haiku-4.5", "hi")
        assert result.exit_code == 0, result.output
        assert fragment_texts(doc) == fragment_texts(inspected) and len(fragment_texts(doc)) == 6
        # The first delta came with the first piece, at 80 ms; the others at 200 ms.
        arrived = [f["t_ms"] for f in doc["fragments"]]
        assert arrived[0] >= 80 and arrived[1] >= 200
        code, err = replaying.interrupt()
        assert code == 0 and "Traceback" not in err
    finally:
        replaying.kill()


def test_replay_without_times_is_cut_per_event_and_timed_by_the_profile(capture, monkeypatch):
    from llm_streamscope.serving import recording_from
    from llm_streamscope.sim.server import SimServer

    path, _ = capture
    recording, wire_format, _ = recording_from(path)
    assert wire_format == "anthropic" and recording.times_ns is None
    assert recording.profile == "claude-haiku"  # the format's, to time it
    assert len(recording.pieces) == 6 and b"message_stop" in recording.closing
    assert b"".join(recording.pieces) + recording.closing == path.read_bytes()
    _, inspected = run_doc("inspect", str(path))
    with SimServer(defaults={"speed": 0}, replay=recording) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-dummy")
        _, doc = run_doc("-m", "claude-haiku-4.5", "hi")
        assert fragment_texts(doc) == fragment_texts(inspected)
        # Other routes still simulate.
        status, _ = post(server.port, "/v1/chat/completions", chat(speed=0))
        assert status == 200


def test_an_ollama_capture_replays_on_its_own_created_at_times(served, tmp_path, monkeypatch):
    from llm_streamscope.serving import recording_from
    from llm_streamscope.sim.server import SimServer

    body = {"model": "llama3", "messages": [{"role": "user", "content": "hi"}]}
    body["streamscope"] = {"chunks": 4, "speed": 2, "keepalive_ms": 5}
    status, raw = post(served.port, "/api/chat", body)
    assert status == 200 and raw.count(b"\n") == 5  # 4 lines and the done line: no keep-alives
    path = tmp_path / "chat.ndjson"
    path.write_bytes(raw)
    recording, wire_format, _ = recording_from(path)
    assert wire_format == "ollama" and recording.route == "/api/(chat|generate)"
    assert recording.pieces == tuple(line + b"\n" for line in raw.splitlines())
    times = recording.times_ns
    assert times is not None and times[0] == 0 and times == tuple(sorted(times)) and times[-2] > 0
    with SimServer(defaults={"speed": 1}, replay=recording) as server:
        status, replayed = post(server.port, "/api/generate", {"model": "x", "prompt": "hi"})
        log = server.send_log(server.last_completion_id)
    assert status == 200 and replayed == raw  # byte for byte
    assert [abs(a - b) < 1000 for a, b in zip(log.due_ns, times)] == [True] * len(times)
    _, inspected = run_doc("inspect", str(path))
    replay_path = tmp_path / "replayed.ndjson"
    replay_path.write_bytes(replayed)
    assert fragment_texts(run_doc("inspect", str(replay_path))[1]) == fragment_texts(inspected)


def test_responses_streams_get_keepalives(served):
    body = {"model": "gpt-4o-mini", "input": "hi", "stream": True}
    body["streamscope"] = {"chunks": 2, "ttft_ms": 60, "keepalive_ms": 25}
    status, raw = post(served.port, "/v1/responses", body)
    assert status == 200 and raw.count(b": keep-alive\n\n") == 2
    assert raw.count(b"event: response.output_text.delta") == 2


# --------------------------------------------------------------------------
# Bad input: one line, non-zero, before anything listens


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--stall-after", "-2"), 2, "Invalid value for '--stall-after': -2 is not in the range"),
        (("--profile", "nope"), 2, "Invalid value for '--profile': 'nope' is not one of"),
        (("--timing", "x.times"), 1, "--timing goes with --replay FILE"),
        (("--replay", "/no/such.sse"), 1, "/no/such.sse: No such file or directory"),
    ],
)
def test_bad_options_are_one_line(args, code, message):
    result = run("serve", "--port", "0", *args)
    assert result.exit_code == code
    *usage, error = result.output.splitlines()
    assert error.startswith("Error: ") and message in error, result.output
    if code == 2:  # a usage error: click's Usage: and Try lines first, as for llm's commands
        assert usage[0].startswith("Usage: ") and "streamscope serve [OPTIONS]" in usage[0]
        assert usage[1].startswith("Try '") and usage[1].endswith(" serve --help' for help.")
    else:
        assert usage == []


def test_a_port_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--port", str(port))
    assert result.exit_code == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in result.output
    assert result.output.count("\n") == 1


def test_a_replay_that_is_no_stream_is_one_line(tmp_path):
    path = tmp_path / "error.json"
    path.write_text('{"error": {"message": "Invalid API key"}}')
    result = run("serve", "--port", "0", "--replay", str(path))
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "an error response, not a stream: Invalid API key" in result.output


def test_openai_sdk_environment_line_works_for_llms_own_openai_models(served, monkeypatch):
    line = next(x for x in served.instructions if x.startswith("environment: OPENAI_BASE_URL="))
    assert f"OPENAI_BASE_URL={served.url} " in line
    monkeypatch.setenv("OPENAI_BASE_URL", served.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-dummy")
    result, doc = run_doc("-m", "gpt-4o-mini", "-o", "max_tokens", "5", "hi")
    assert result.exit_code == 0, result.output
    assert doc["status"] == "complete" and doc["stats"]["chunks"] == 5


def test_format_names_are_the_same_in_every_command():
    import doctest

    import click
    from llm.cli import cli

    from llm_streamscope.cli import types as clitypes
    from llm_streamscope.wire import FORMATS

    assert doctest.testmod(clitypes).failed == 0  # openai, responses: the older spellings
    group = cli.commands["streamscope"]
    for name in ("inspect", "whatif", "serve"):
        command = group.commands[name]
        (option,) = [p for p in command.get_params(click.Context(command)) if "--format" in p.opts]
        assert tuple(option.type.choices) == FORMATS, name


def test_the_format_list_agrees_with_the_routes():
    import re

    from llm_streamscope.serving import SERVE_FORMATS
    from llm_streamscope.sim import anthropic, gemini, ollama, profiles, responses, server
    from llm_streamscope.wire import FORMATS

    assert sorted(SERVE_FORMATS) == sorted(FORMATS)  # one set of names
    routes = {
        "openai-chat": (profiles.DEFAULT_PROFILE, server.COMPLETIONS_PATH),
        "anthropic": (anthropic.DEFAULT_PROFILE, anthropic.MESSAGES_PATH),
        "gemini": (gemini.DEFAULT_PROFILE, "/v1beta/models/gemini-2.5-flash:streamGenerateContent"),
        "openai-responses": (profiles.DEFAULT_PROFILE, responses.PATHS[0]),
        "ollama": (profiles.DEFAULT_PROFILE, ollama.GENERATE_PATH),
    }
    for path in (*responses.PATHS, *ollama.PATHS, "/chat/completions"):
        assert any(re.fullmatch(f.route, path) for f in SERVE_FORMATS.values()), path
    for name, (profile, path) in routes.items():
        assert SERVE_FORMATS[name].default_profile == profile
        assert re.fullmatch(SERVE_FORMATS[name].route, path)
    assert gemini.PATH.match("/v1beta/models/gemini-2.5-flash:streamGenerateContent")


def test_listening_beyond_loopback_warns_and_a_signal_stops_it_cleanly(monkeypatch):
    import threading

    from llm_streamscope import serving

    started = []
    real_start = serving.start
    monkeypatch.setattr(
        serving, "start", lambda settings: started.append(real_start(settings)) or started[0]
    )

    def interrupt_once_serving():
        while not started:
            threading.Event().wait(0.02)
        conn = http.client.HTTPConnection("127.0.0.1", started[0].server.port, timeout=10)
        conn.request("GET", "/v1/models")
        if conn.getresponse().status == 200:  # it is serving: the signal is its to handle
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=interrupt_once_serving, daemon=True)
    thread.start()
    result = run("serve", "--host", "0.0.0.0", "--port", "0", "--speed", "0")
    thread.join()
    port = started[0].server.port
    assert result.exit_code == 0, result.output
    assert result.stdout == f"http://0.0.0.0:{port}/v1\n"
    assert "Warning: listening on 0.0.0.0: other machines can reach" in result.stderr
    assert signal.getsignal(signal.SIGTERM) == before  # put back as it was


def test_help_follows_clicks_conventions():
    """Metavars are click's (INTEGER RANGE, a choice's [a|b]) and every default is
    shown as click shows one ([default: ...]), never in the help's own words."""
    from llm_streamscope.sim.profiles import PROFILES

    text = run("serve", "--help").output
    options = " ".join(text.split("Options:")[1].split())
    assert "(default" not in options
    assert "--seed INTEGER RANGE " in options and "--stall-after INTEGER RANGE " in options
    assert "--speed FLOAT RANGE " in options and "[default: 1; 0<=x<=1000]" in options
    assert "--stall-s FLOAT RANGE " in options and "[default: 60; 0<=x<=86400]" in options
    assert f"--profile [{'|'.join(PROFILES)}]" in options
    assert "[default: the --format's own]" in options
    assert "--format [openai-chat|" in options and "[default: openai-chat]" in options
    assert "--port INTEGER RANGE " in options and "[default: 8000; 0<=x<=65535]" in options
    for metavar in ("SEED", "SPEED", "STALL_AFTER", "TTFT_MS"):
        assert f" {metavar} " not in options
