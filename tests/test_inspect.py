"""`llm streamscope inspect`: captured streams through the real llm CLI, as a run shows them."""

import json
import os
import threading
import time

import pytest
import yaml
from click.testing import CliRunner
from llm.cli import cli


def inspect(*args, input=None):
    return CliRunner().invoke(cli, ["streamscope", "inspect", *args], input=input)


def inspect_json(*args, input=None):
    """The run document of an inspection, and its result."""
    result = inspect(*args, "--json", input=input)
    return result, json.loads(result.stdout) if result.stdout.strip() else None


def sse(*events, event_types=None):
    """An SSE body: one data event per JSON value (strings as they are)."""
    out = []
    for i, value in enumerate(events):
        data = value if isinstance(value, str) else json.dumps(value)
        kind = f"event: {event_types[i]}\n" if event_types else ""
        out.append(f"{kind}data: {data}\n\n")
    return "".join(out).encode()


def chunk(delta, index=0, **extra):
    return {
        "id": "c1",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": index, "delta": delta, "finish_reason": None}],
        **extra,
    }


TEXTS = ["Hello", " world", ", streaming", " is", " here", "."]
OPENAI = sse(
    chunk({"role": "assistant", "content": ""}),
    *(chunk({"content": t}) for t in TEXTS),
    {"id": "c1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7}},
    "[DONE]",
)


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def fragments(doc, response=0):
    return doc["responses"][response]["fragments"]


def test_a_file_shows_the_views_of_a_run_and_says_it_has_no_timing(tmp_path):
    path = write(tmp_path, "capture.sse", OPENAI)
    result = inspect(path)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"{path}: no timing in this file\n")
    assert "no timing in this file" in out.split("─ stats ─")[1]  # the stats say so too
    assert "source       openai-chat (sse) · file" in out.split("─ wire ─")[1]
    assert "in order     role → text ×6 → usage → done" in out
    assert "─ alignment ─" in out and "Hello│ world│," in out
    assert "model           gpt-4o-mini-2024-07-18" in out and "(o200k_base)" in out
    assert "usage reports 7 output tokens" in out
    assert result.stderr == ""
    _, doc = inspect_json(path)
    (response,) = doc["responses"]
    assert [f["text"] for f in response["fragments"]] == TEXTS
    assert {f["t_ms"] for f in response["fragments"]} == {None}  # no times, not 0
    stats = response["stats"]
    assert stats["chunks"] == 6 and stats["tokens"] == 7
    for key in ("ttft_ms", "ttst_ms", "total_ms", "tokens_per_s", "chars_per_s"):
        assert stats[key] is None
    assert stats["gap_ms"]["count"] == 0 and stats["itl_ms"]["count"] == 0
    assert response["encoding"] == "o200k_base" and response["encoding_exact"] is True
    assert response["options"] == {"inspected": path, "format": "openai-chat"}
    wire = response["wire"]
    assert (wire["source"], wire["format"], wire["framing"]) == ("file", "openai-chat", "sse")
    assert wire["reads"] == [{"t_ms": None, "bytes": len(OPENAI)}]
    assert [e["label"] for e in wire["events"]] == ["role", *["text"] * 6, "usage", "done"]


def test_the_json_document_has_the_shape_of_a_run(tmp_path):
    _, inspected = inspect_json(write(tmp_path, "capture.sse", OPENAI))
    result = CliRunner().invoke(
        cli, ["streamscope", "-m", "streamscope-sim", "-o", "speed", "0", "--json", "Hi"]
    )
    run = json.loads(result.stdout)

    def shape(value, key=None):
        """The keys all the way down: the stats' by name alone, the options not at all
        (a run's are its prompt options; an inspection's say what it read), the wire
        not here (a run has one only with --wire)."""
        if key in ("options", "wire"):
            return None
        if isinstance(value, dict):
            if key == "stats":
                return sorted(value)
            return {k: shape(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [shape(value[0])] if value else []
        return None

    assert shape(inspected) == shape(run)


ANTHROPIC = sse(
    {
        "type": "message_start",
        "message": {
            "model": "claude-3-haiku-20240307",
            "usage": {"input_tokens": 9, "output_tokens": 1},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": " there, friend"},
    },
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}},
    {"type": "message_stop"},
    event_types=[
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ],
)
RESPONSES = sse(
    {"type": "response.created", "response": {"model": "gpt-4.1-2025-04-14"}},
    {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "Hi"},
    {"type": "response.output_text.delta", "item_id": "msg_1", "delta": " there"},
    {
        "type": "response.completed",
        "response": {
            "model": "gpt-4.1-2025-04-14",
            "usage": {"input_tokens": 3, "output_tokens": 2},
        },
    },
    event_types=[
        "response.created",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.completed",
    ],
)
GEMINI_CHUNKS = [
    {
        "candidates": [{"content": {"parts": [{"text": "Hi there"}], "role": "model"}}],
        "modelVersion": "gemini-2.5-flash",
    },
    {
        "candidates": [{"content": {"parts": [{"text": ", friend"}], "role": "model"}}],
        "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 3},
        "modelVersion": "gemini-2.5-flash",
    },
]
GEMINI_SSE = b"".join(b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in GEMINI_CHUNKS)
GEMINI_ARRAY = ("[" + ",\r\n".join(json.dumps(c) for c in GEMINI_CHUNKS) + "]").encode()


@pytest.mark.parametrize(
    ("body", "fmt", "framing", "model", "text"),
    [
        (ANTHROPIC, "anthropic", "sse", "claude-3-haiku-20240307", "Hi there, friend"),
        (RESPONSES, "openai-responses", "sse", "gpt-4.1-2025-04-14", "Hi there"),
        (GEMINI_SSE, "gemini", "sse", "gemini-2.5-flash", "Hi there, friend"),
        (GEMINI_ARRAY, "gemini", "json-array", "gemini-2.5-flash", "Hi there, friend"),
    ],
)
def test_each_format_is_detected_and_analysed(tmp_path, body, fmt, framing, model, text):
    path = write(tmp_path, "capture", body)
    result = inspect(path)
    assert result.exit_code == 0, result.output
    assert f"source       {fmt} ({framing}) · file" in result.stdout
    _, doc = inspect_json(path)
    (response,) = doc["responses"]
    assert response["model"] == model
    assert "".join(f["text"] for f in response["fragments"]) == text
    assert response["status"] == "complete" and response["stats"]["ttft_ms"] is None


def ollama(content, at, **extra):
    line = {
        "model": "llama3",
        "created_at": at,
        "message": {"role": "assistant", "content": content},
    }
    return json.dumps(line | extra)


def test_ollama_is_timed_by_its_created_at(tmp_path):
    body = (
        "\n".join(
            [
                ollama("Hi", "2025-08-20T13:47:54.000000001Z", done=False),
                ollama(" there", "2025-08-20T13:47:54.012500001Z", done=False),
                ollama(" friend", "2025-08-20T13:47:54.100000001Z", done=False),
                ollama(
                    "", "2025-08-20T13:47:54.1100000Z", done=True, eval_count=3, prompt_eval_count=4
                ),
            ]
        )
        + "\n"
    )
    path = write(tmp_path, "ollama.ndjson", body.encode())
    result = inspect(path, "--encoding", "cl100k_base")
    assert result.exit_code == 0, result.output
    assert "times from the server's created_at" in result.stdout
    assert "no timing" not in result.stdout
    _, doc = inspect_json(path, "--encoding", "cl100k_base")
    response = doc["responses"][0]
    assert response["encoding"] == "cl100k_base" and response["encoding_exact"] is True
    assert [f["t_ms"] for f in response["fragments"]] == [0.0, 12.5, 100.0]
    stats = response["stats"]
    assert stats["ttst_ms"] == 12.5 and stats["gap_ms"]["max"] == 87.5
    # t=0 is the server's first event, not a request start: no TTFT
    assert stats["clock"] == "server" and stats["ttft_ms"] is None
    assert "(created_at): no request" in result.stdout
    assert stats["stalls"] == 1 and stats["total_ms"] == pytest.approx(109.999999)


def test_stdin_is_timed_as_it_arrives():
    read_fd, write_fd = os.pipe()
    events = OPENAI.split(b"\n\n")[:-1]

    def writer():
        time.sleep(0.5)  # inspect is reading by now (even on a busy machine)
        for event in events:
            os.write(write_fd, event + b"\n\n")
            time.sleep(0.03)
        os.close(write_fd)

    thread = threading.Thread(target=writer)
    thread.start()
    with os.fdopen(read_fd, "rb") as stream:
        result, doc = inspect_json("-", input=stream)
    thread.join()
    assert result.exit_code == 0, result.output
    response = doc["responses"][0]
    times = [f["t_ms"] for f in response["fragments"]]
    # Each text went into the pipe 30 ms after the one before; on a busy machine
    # two can still be read together, so the spread is checked, not every gap.
    assert times[0] > 0  # counted from when inspect began reading, before it arrived
    assert times == sorted(times) and times[-1] - times[0] >= 5 * 30 * 0.9, times
    stats = response["stats"]
    assert stats["ttft_ms"] == times[0] and stats["gap_ms"]["count"] == 5
    assert stats["total_ms"] >= times[-1]  # the last read: the usage and [DONE] came after
    assert stats["tokens_per_s"] is not None
    # The times are the arrivals of the events' bytes: the wire's clock, with no
    # client in between to delay them.
    assert [f["wire_t_ms"] for f in response["fragments"]] == times
    assert stats["clock"] == "wire" and stats["wire"]["client_delay_ms"]["count"] == 0
    assert response["wire"]["source"] == "stdin"
    assert 0 < stats["wire"]["first_event_ms"] <= times[0]


def test_stdin_bytes_that_waited_are_said_to(tmp_path):
    read_fd, write_fd = os.pipe()
    os.write(write_fd, OPENAI)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as stream:
        result = inspect("-", input=stream)
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"Warning: {len(OPENAI):,} bytes had arrived before")
    assert "times from stdin: when inspect began reading" in " ".join(result.stdout.split())


def test_a_sidecar_times_the_file(tmp_path):
    path = write(tmp_path, "capture.sse", OPENAI)
    # The role event and the first text arrive at 0.1 s, each later text 20 ms on.
    event_ends = [i + 2 for i in range(len(OPENAI)) if OPENAI.startswith(b"\n\n", i)]
    lines = [f"{0.1 + 0.02 * i:.3f}\t{end}" for i, end in enumerate(event_ends[1:7])]
    lines.append(f"0.3\t{len(OPENAI)}")
    (tmp_path / "capture.sse.times").write_text("\n".join(lines) + "\n")
    result, doc = inspect_json(path)
    assert result.exit_code == 0, result.output
    response = doc["responses"][0]
    assert [f["t_ms"] for f in response["fragments"]] == pytest.approx(
        [100, 120, 140, 160, 180, 200]
    )
    assert response["stats"]["total_ms"] == pytest.approx(300)
    assert response["wire"]["source"] == "sidecar"
    out = " ".join(inspect(path).stdout.split())
    assert "times from capture.sse.times" in out
    assert "each chunk when its bytes were read from the .times file" in out


def test_a_cassette_gives_its_streamed_interaction(tmp_path):
    cassette = {
        "interactions": [
            {
                "request": {
                    "body": None,
                    "headers": {},
                    "method": "GET",
                    "uri": "https://api.openai.com/v1/models",
                },
                "response": {
                    "body": {"string": '{"data": []}'},
                    "headers": {"Content-Type": ["application/json"]},
                    "status": {"code": 200, "message": "OK"},
                },
            },
            {
                "request": {
                    "body": json.dumps({"model": "gpt-4o", "stream": True}),
                    "headers": {},
                    "method": "POST",
                    "uri": "https://api.openai.com/v1/chat/completions",
                },
                "response": {
                    "body": {"string": OPENAI.decode()},
                    "headers": {"Content-Type": ["text/event-stream"]},
                    "status": {"code": 200, "message": "OK"},
                },
            },
        ],
        "version": 1,
    }
    path = tmp_path / "test_stream.yaml"
    path.write_text(yaml.dump(cassette))
    result, doc = inspect_json(str(path))
    assert result.exit_code == 0, result.output
    assert [f["text"] for f in fragments(doc)] == TEXTS
    assert inspect(str(path)).stdout.startswith(f"{path} (interaction 2 of 2): no timing")
    wire = doc["responses"][0]["wire"]
    assert wire["source"] == "cassette" and wire["status"] == 200
    assert wire["url"] == "https://api.openai.com/v1/chat/completions"
    assert wire["headers"] == {"content-type": "text/event-stream"}
    bad = inspect(str(path), "--interaction", "1")
    assert bad.exit_code == 1 and bad.stderr.count("\n") == 1
    assert "not an event stream" in bad.stderr or "format" in bad.stderr
    missing = inspect(str(path), "--interaction", "3")
    assert missing.exit_code == 1
    assert missing.stderr == f"Error: {path}: no interaction 3: it holds 2 (1 to 2)\n"


def test_n2_choices_are_two_responses(tmp_path):
    body = sse(
        chunk({"role": "assistant", "content": ""}, 0),
        chunk({"role": "assistant", "content": ""}, 1),
        chunk({"content": "Red"}, 0),
        chunk({"content": "Blue"}, 1),
        chunk({"content": " sky"}, 0),
        chunk({"content": " sea"}, 1),
        {"id": "c1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 4}},
        "[DONE]",
    )
    path = write(tmp_path, "n2.sse", body)
    result, doc = inspect_json(path)
    assert result.exit_code == 0, result.output
    assert [[f["text"] for f in r["fragments"]] for r in doc["responses"]] == [
        ["Red", " sky"],
        ["Blue", " sea"],
    ]
    assert [r["run_index"] for r in doc["responses"]] == [0, 1]
    assert {r["run_id"] for r in doc["responses"]} == {doc["run_id"]}
    assert all(r["stats"]["usage_output_tokens"] is None for r in doc["responses"])
    assert "counts all 2 choices together" in result.stderr
    out = inspect(path).stdout
    assert "response 1 of 2" in out and "response 2 of 2" in out
    assert "between the two responses" not in out  # side by side, not one after another


def test_log_then_show_gives_the_same_document(tmp_path):
    path = write(tmp_path, "capture.sse", OPENAI)
    db = tmp_path / "logs.db"
    assert inspect(path, "-d", str(db)).exit_code == 0
    assert not db.exists()  # not logged unless --log
    result, doc = inspect_json(path, "--log", "-d", str(db))
    assert result.exit_code == 0, result.output
    trace_id = doc["responses"][0]["trace_id"]
    shown = CliRunner().invoke(cli, ["streamscope", "show", trace_id, "-d", str(db), "--json"])
    assert shown.exit_code == 0, shown.output
    again = json.loads(shown.stdout)
    assert again["responses"][0] == doc["responses"][0]  # untimed still, every number
    out = CliRunner().invoke(cli, ["streamscope", "show", "--latest", "-d", str(db)]).stdout
    assert "no timing in this file" in out


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the body is empty"),
        (b"\x00\x9f\x92garbage\xff" * 3, "not an event stream"),
        (
            b'{"error": {"message": "Invalid API key", "type": "invalid_request_error"}}',
            "Invalid API key",
        ),
        (b'data: {"hello": "world"}\n\n', "format"),
    ],
)
def test_nothing_to_analyse_is_one_error_line(tmp_path, body, message):
    path = write(tmp_path, "bad.sse", body)
    result = inspect(path)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"Error: {path}: ") and result.stderr.count("\n") == 1
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (b'data: {"choices": [ \n\n', "line 13"),  # invalid JSON in one event
        (b'data: {"choices": [{"index": 0, "delta": {"content": "cu', "ended inside an event"),
        (b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n', "overloaded"),
    ],
)
def test_a_stream_that_breaks_shows_what_came_before_and_fails(tmp_path, tail, message):
    good = sse(*(chunk({"content": t}) for t in TEXTS))
    path = write(tmp_path, "broken.sse", good + tail)
    result = inspect(path)
    assert result.exit_code == 1
    assert "Hello│ world" in result.stdout  # what decoded before it is analysed
    assert "status          error: " in result.stdout
    assert result.stderr.startswith(f"Error: {path}: ") and result.stderr.count("\n") == 1
    assert message in result.stderr and "byte " in result.stderr, result.stderr
    result, doc = inspect_json(path)
    assert result.exit_code == 1 and [f["text"] for f in fragments(doc)] == TEXTS
    assert doc["responses"][0]["status"] == "error"


def test_options_are_checked_before_reading(tmp_path):
    path = write(tmp_path, "capture.sse", OPENAI)
    result = inspect(path, "--encoding", "nope")
    assert result.exit_code == 1 and "Unknown encoding 'nope'" in result.stderr
    result = inspect(path, "--format", "nope")
    assert result.exit_code == 2 and "nope" in result.stderr
    # serve's older spelling of a format is taken for the name it stands for
    result, doc = inspect_json(path, "--format", "openai")
    assert result.exit_code == 0 and doc["responses"][0]["stats"]["wire"]["format"] == "openai-chat"
    result = inspect(str(tmp_path / "missing.sse"))
    assert result.exit_code == 1
    assert result.stderr == f"Error: {tmp_path / 'missing.sse'}: No such file or directory\n"


def test_format_overrides_detection(tmp_path):
    # Chunk lines without SSE framing (vercel/ai's .chunks.jsonl), named explicitly.
    body = b"".join(json.dumps(chunk({"content": t})).encode() + b"\n" for t in TEXTS)
    path = write(tmp_path, "chunks.jsonl", body)
    result, doc = inspect_json(path, "--format", "openai-chat")
    assert result.exit_code == 0, result.output
    assert [f["text"] for f in fragments(doc)] == TEXTS
    assert doc["responses"][0]["options"]["format"] == "openai-chat"


def test_model_text_is_never_markup_or_control(tmp_path):
    body = sse(chunk({"content": "[bold]x[/bold]\x1b[2J"}))
    result = inspect(write(tmp_path, "evil.sse", body))
    assert result.exit_code == 0, result.output
    view = result.stdout.replace("¦", "").replace("│", "")
    assert "[bold]x[/bold]␛[2J" in view and "\x1b" not in result.stdout


# One real recording per provider (../shared/realstreams: data beside the repository,
# never copied in), through the CLI: detected, decoded to the end, analysed.
REAL = {
    "openai-chat_gpt-4o-mini_crewai_include-usage.sse": ("openai-chat", 137),
    "openai-responses_gpt-4o-mini_mirascope.sse": ("openai-responses", 144),
    "anthropic_claude-3-haiku_openllmetry.sse": ("anthropic", 70),
    "gemini_gemini-2.5-pro_pydantic-ai.sse": ("gemini", 19),
    "ollama_llama3_openllmetry.ndjson": ("ollama", 49),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_recordings(name):
    from test_wire_formats import REALSTREAMS  # where the formats tests find them

    if REALSTREAMS is None or not (REALSTREAMS / name).is_file():
        pytest.skip("../shared/realstreams absent")
    result, doc = inspect_json(str(REALSTREAMS / name))
    assert result.exit_code == 0, result.output
    (response,) = doc["responses"]
    fmt, chunks = REAL[name]
    assert response["wire"]["format"] == fmt and response["stats"]["chunks"] == chunks
    assert response["status"] == "complete"
    assert (response["stats"]["ttst_ms"] is not None) == (fmt == "ollama")  # created_at
