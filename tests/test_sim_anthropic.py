"""The simulator's Anthropic Messages route, end to end through the real llm-anthropic plugin.

The anthropic SDK reads ``ANTHROPIC_BASE_URL`` (llm-anthropic passes ``base_url=None``)
and ``ANTHROPIC_API_KEY``, so the plugin talks to the loopback server without a key.
llm-anthropic sends only Anthropic's parameters: the simulator options come from
the server's defaults (``speed 0`` here, except where timing is the point).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import llm
import pytest
from click.testing import CliRunner
from llm.cli import cli
from test_sim import dechunk, raw_request

from llm_streamscope.capture.timing import capture, new_trace
from llm_streamscope.sim.options import InvalidOption
from llm_streamscope.sim.profiles import PROFILES
from llm_streamscope.sim.server import SimServer
from llm_streamscope.sim.texts import count_tokens, sample_text

HAIKU = "claude-haiku-4.5"  # llm-anthropic: -o thinking 1 sends budget_tokens 1024


@pytest.fixture(scope="module")
def server() -> Iterator[SimServer]:
    with SimServer(defaults={"speed": 0, "seed": 4}) as srv:
        yield srv


@pytest.fixture
def anthropic_at(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point the anthropic SDK at a server, with a dummy key."""

    def point(srv: SimServer) -> SimServer:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-dummy")
        return srv

    return point


def streamscope_json(*args: str) -> tuple[Any, dict[str, Any] | None]:
    result = CliRunner().invoke(cli, ["streamscope", *args, "--json"], catch_exceptions=False)
    if not result.stdout.strip():
        return result, None
    (doc,) = json.loads(result.stdout)["responses"]
    return result, doc


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


# --------------------------------------------------------------------------
# Through llm-anthropic


# The anthropic SDK warns that claude-3-5-haiku is deprecated.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_streamscope_run_equals_the_send_log(server: SimServer, anthropic_at: Any) -> None:
    anthropic_at(server)
    result, doc = streamscope_json("-m", "claude-3.5-haiku", "Why does streaming feel fast?")
    assert result.exit_code == 0, result.output
    assert doc is not None and doc["status"] == "complete"
    log = server.send_log(server.last_completion_id or "")
    assert log.api == "messages" and log.id.startswith("msg_01")
    fragments = doc["fragments"]
    assert [f["text"] for f in fragments] == log.chunks
    assert [f["kind"] for f in fragments] == log.kinds == ["text"] * len(log.chunks)
    assert log.content() == sample_text("prose")
    # claude-haiku's chunking, by the seed the server defaults to
    assert log.chunks == PROFILES["claude-haiku"].cut(sample_text("prose"), seed=4)
    stats = doc["stats"]
    assert stats["usage_output_tokens"] == log.completion_tokens == count_tokens(log.content())
    assert stats["usage_input_tokens"] == count_tokens("Why does streaming feel fast?")


def test_thinking_streams_reasoning_then_text(server: SimServer, anthropic_at: Any) -> None:
    anthropic_at(server)
    result, doc = streamscope_json("-m", HAIKU, "-o", "thinking", "1", "hi")
    assert result.exit_code == 0, result.output
    assert doc is not None
    log = server.send_log(server.last_completion_id or "")
    sent = list(zip(log.kinds, log.chunks))
    thinking = [c for k, c in sent if k == "reasoning"]
    text = [c for k, c in sent if k == "text"]
    assert sent == [("reasoning", c) for c in thinking] + [("text", c) for c in text]
    assert "".join(thinking) == sample_text("thinking") and "".join(text)
    # llm-anthropic turns the signature_delta into one empty reasoning event.
    got = [(f["kind"], f["text"]) for f in doc["fragments"]]
    assert got == [*sent[: len(thinking)], ("reasoning", ""), *sent[len(thinking) :]]
    tokens = count_tokens("".join(thinking)) + count_tokens("".join(text))
    assert doc["stats"]["usage_output_tokens"] == log.completion_tokens == tokens


def test_plain_llm_shows_the_thinking_stream(anthropic_at: Any) -> None:
    # No key, no streamscope: llm prints llm-anthropic's reasoning events on stderr.
    with SimServer(defaults={"speed": 0, "chunks": 5}) as brief:
        anthropic_at(brief)
        result = CliRunner().invoke(cli, ["-m", HAIKU, "-o", "thinking", "1", "hi"])
        assert result.exit_code == 0, result.output
        log = brief.send_log(brief.last_completion_id or "")
    thinking = "".join(c for k, c in zip(log.kinds, log.chunks) if k == "reasoning")
    text = "".join(c for k, c in zip(log.kinds, log.chunks) if k == "text")
    assert thinking == sample_text("thinking") and text
    assert result.stdout == text + "\n"
    assert thinking in result.stderr


def test_tool_use_fragments_and_a_chain(server: SimServer, anthropic_at: Any) -> None:
    anthropic_at(server)
    model = llm.get_model(HAIKU)
    response = model.prompt("What is 3 times 4?", tools=[multiply])
    trace = capture(
        response,
        new_trace(model_id=model.model_id, encoding_name="o200k_base", encoding_exact=False),
    )
    assert trace.status == "complete", trace.error
    log = server.send_log(server.last_completion_id or "")
    assert log.finish_reason == "tool_use" and set(log.kinds) == {"tool_call_args"}
    (name,) = [f for f in trace.fragments if f.kind == "tool_call_name"]
    args = [f for f in trace.fragments if f.kind == "tool_call_args"]
    assert name.text == "multiply" and name.tool_call_id.startswith("toolu_01")
    assert {f.tool_call_id for f in args} == {name.tool_call_id}
    assert [f.text for f in args] == log.chunks and log.chunks[0] == ""
    assert (
        json.loads("".join(f.text for f in args)) == json.loads(log.content()) == {"a": 3, "b": 3}
    )
    # usage counts what streamed: the name's tokens and the arguments'
    assert trace.usage_output == log.completion_tokens
    assert log.completion_tokens == count_tokens("multiply") + count_tokens(log.content())

    calls: list[tuple[int, int]] = []

    def multiply_logged(a: int, b: int) -> int:
        """Multiply two integers."""
        calls.append((a, b))
        return a * b

    chain = model.chain("What is 3 times 4?", tools=[llm.Tool.function(multiply_logged)])
    responses = list(chain.responses())
    assert calls == [(3, 3)]
    assert len(responses) == 2
    assert [c.name for c in responses[0].tool_calls()] == ["multiply_logged"]
    assert responses[1].text() == sample_text("prose")  # the tool result came back: text
    assert server.send_log(server.last_completion_id or "").finish_reason == "end_turn"


def test_an_error_status_is_one_line_from_the_plugin(anthropic_at: Any) -> None:
    with SimServer(defaults={"speed": 0, "error": 429}) as failing:
        anthropic_at(failing)
        result, doc = streamscope_json("-m", HAIKU, "hi")
        assert failing.post_count == 3  # the SDK's two retries, 1 ms apart
    assert result.exit_code == 1
    assert doc is not None and doc["status"] == "error" and doc["fragments"] == []
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert "rate_limit_error" in result.stderr and "simulated by streamscope-sim" in result.stderr


# --------------------------------------------------------------------------
# The wire, over raw HTTP


def events_of(raw: bytes) -> list[tuple[str, str]]:
    """(event type, data line) per SSE event, checking one event per HTTP chunk."""
    headers, chunks = dechunk(raw)
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["request-id"].startswith("req_")
    events = []
    for payload in chunks:
        event, data, *rest = payload.decode("utf-8").split("\n")
        assert event.startswith("event: ") and data.startswith("data: ") and rest == ["", ""]
        events.append((event[len("event: ") :], data[len("data: ") :]))
    return events


def messages_body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 1000,
        "stream": True,
        "messages": [{"role": "user", "content": "Say something"}],
        **extra,
    }


def test_text_stream_has_the_real_shape(server: SimServer) -> None:
    body = messages_body(system="Be brief", streamscope={"text": "multilingual"})
    events = events_of(raw_request(server.port, body, "/v1/messages"))
    types = [t for t, _ in events]
    n = len(types) - 6
    assert types == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * n,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[2][1] == '{"type": "ping"}'
    data = [json.loads(d) for _, d in events]
    assert all(d["type"] == t for (t, _), d in zip(events, data))
    # Anthropic pads each object with spaces before its closing brace (0-15).
    pads = {len(d) - len(d.rstrip("}").rstrip()) - 1 for t, d in events if t != "ping"}
    assert pads <= set(range(16)) and len(pads) > 3
    message = data[0]["message"]
    assert message["id"].startswith("msg_01") and len(message["id"]) == 28
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["model"] == "claude-3-5-haiku-latest" and message["content"] == []
    assert message["stop_reason"] is None and message["stop_sequence"] is None
    assert message["usage"]["input_tokens"] == count_tokens("Be briefSay something")
    assert data[1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    deltas = [d["delta"] for d in data[3:-3]]
    assert all(d["type"] == "text_delta" for d in deltas)
    text = "".join(d["text"] for d in deltas)
    assert text == sample_text("multilingual")
    assert data[-3] == {"type": "content_block_stop", "index": 0}
    assert data[-2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert data[-2]["usage"]["output_tokens"] == count_tokens(text)
    assert data[-1] == {"type": "message_stop"}
    log = server.send_log(message["id"])
    assert log.chunks == [d["text"] for d in deltas] and len(log.sent_ns) == len(deltas)
    wire = "".join(d for _, d in events)
    assert "語" in wire and "\\u" not in wire  # raw UTF-8, as Anthropic sends it


def test_thinking_then_tool_use_stream(server: SimServer) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer"},
            "note": {"type": "string"},
        },
        "required": ["city", "unit", "days"],
    }
    body = messages_body(
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[{"name": "forecast", "input_schema": schema}, {"name": "other", "input_schema": {}}],
    )
    events = events_of(raw_request(server.port, body, "/v1/messages"))
    data = [json.loads(d) for _, d in events]
    starts = [d for d in data if d["type"] == "content_block_start"]
    assert [s["content_block"]["type"] for s in starts] == ["thinking", "tool_use"]
    assert starts[0]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    tool = starts[1]["content_block"]
    assert tool["name"] == "forecast" and tool["id"].startswith("toolu_01") and tool["input"] == {}
    deltas = [(d["index"], d["delta"]) for d in data if d["type"] == "content_block_delta"]
    kinds = [delta["type"] for _, delta in deltas]
    n_thinking = kinds.count("thinking_delta")
    assert kinds == (
        ["thinking_delta"] * n_thinking
        + ["signature_delta"]
        + ["input_json_delta"] * (len(kinds) - n_thinking - 1)
    )
    assert all(i == 0 for i, _ in deltas[: n_thinking + 1]) and all(
        i == 1 for i, _ in deltas[n_thinking + 1 :]
    )
    assert "".join(d["thinking"] for _, d in deltas[:n_thinking]) == sample_text("thinking")
    assert len(deltas[n_thinking][1]["signature"]) > 100
    partial = [d["partial_json"] for _, d in deltas[n_thinking + 1 :]]
    assert partial[0] == "" and len(partial) > 3
    assert json.loads("".join(partial)) == {"city": "example city", "unit": "celsius", "days": 3}
    assert data[-2]["delta"]["stop_reason"] == "tool_use"
    log = server.send_log(data[0]["message"]["id"])
    assert log.kinds == ["reasoning"] * n_thinking + ["tool_call_args"] * len(partial)
    assert (
        data[-2]["usage"]["output_tokens"]
        == log.completion_tokens
        == count_tokens(sample_text("thinking"))
        + count_tokens("forecast")  # the tool's name streams too
        + count_tokens("".join(partial))
    )


def test_blocks_without_deltas_still_open_and_close(server: SimServer) -> None:
    # Thinking with display "omitted" (llm -R) and an answer of zero chunks.
    body = messages_body(
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024, "display": "omitted"},
        streamscope={"chunks": 0},
    )
    data = [json.loads(d) for _, d in events_of(raw_request(server.port, body, "/v1/messages"))]
    assert [(d["type"], d.get("index")) for d in data] == [
        ("message_start", None),
        ("content_block_start", 0),
        ("ping", None),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_stop", 1),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert data[3]["delta"]["type"] == "signature_delta"
    assert data[-2]["usage"]["output_tokens"] == 0


def test_a_dropped_connection_keeps_what_arrived(anthropic_at: Any) -> None:
    with SimServer(defaults={"speed": 0, "drop_after": 5}) as dropping:
        anthropic_at(dropping)
        result, doc = streamscope_json("-m", HAIKU, "hi")
        log = dropping.send_log(dropping.last_completion_id or "")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert log.status == "dropped" and len(log.chunks) == 5
    assert doc is not None and [f["text"] for f in doc["fragments"]] == log.chunks


def test_a_tool_result_gets_a_text_answer(server: SimServer) -> None:
    messages = [
        {"role": "user", "content": "What is 3 times 3?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "multiply", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "9"}],
        },
    ]
    body = messages_body(messages=messages, tools=[{"name": "multiply", "input_schema": {}}])
    data = [json.loads(d) for _, d in events_of(raw_request(server.port, body, "/v1/messages"))]
    assert data[1]["content_block"]["type"] == "text"
    assert data[-2]["delta"]["stop_reason"] == "end_turn"
    assert data[0]["message"]["usage"]["input_tokens"] == count_tokens("What is 3 times 3?9")


def test_non_streamed_answer_is_one_message(server: SimServer) -> None:
    # max_tokens covers thinking and text, as on Anthropic's API: the (cycled) text is cut.
    body = messages_body(
        stream=False,
        max_tokens=1030,
        thinking={"type": "enabled", "budget_tokens": 1024},
        streamscope={"chunks": 2000},
    )
    _, _, raw = raw_request(server.port, body, "/v1/messages").partition(b"\r\n\r\n")
    message = json.loads(raw)
    assert message["type"] == "message" and message["id"].startswith("msg_01")
    thinking, text = message["content"]
    assert thinking["type"] == "thinking" and thinking["signature"]
    assert text["type"] == "text"
    assert message["stop_reason"] == "max_tokens"
    assert count_tokens(thinking["thinking"]) + count_tokens(text["text"]) == 1030
    assert message["usage"]["output_tokens"] == 1030
    log = server.send_log(message["id"])
    assert log.stream is False and log.chunks == [thinking["thinking"], text["text"]]


def post(
    server: SimServer, body: Any, path: str = "/v1/messages"
) -> tuple[int, dict[str, str], Any]:
    raw = raw_request(server.port, body, path)
    head, _, payload = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(payload)


def test_hidden_reasoning_counts_as_output(server: SimServer) -> None:
    body = messages_body(max_tokens=6, stream=False, streamscope={"reasoning": 30})
    code, _, message = post(server, body)
    assert code == 200 and count_tokens(message["content"][0]["text"]) == 6
    assert message["usage"]["output_tokens"] == 36


@pytest.mark.parametrize(
    ("status", "type_"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
    ],
)
def test_error_bodies_are_anthropic_shaped(server: SimServer, status: int, type_: str) -> None:
    code, headers, body = post(server, messages_body(streamscope={"error": status}))
    assert code == status
    assert set(body) == {"type", "error", "request_id"} and body["type"] == "error"
    assert (
        body["error"]["type"] == type_
        and "simulated by streamscope-sim" in body["error"]["message"]
    )
    assert headers["request-id"] == body["request_id"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_tokens": None}, "max_tokens: Field required"),
        ({"messages": None}, "messages: Field required"),
        ({"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
        ({"thinking": {"type": "enabled", "budget_tokens": 100}}, "greater than or equal to 1024"),
        ({"thinking": {"type": "enabled", "budget_tokens": 2000}}, "`max_tokens` must be greater"),
        ({"streamscope": {"profile": "nope"}}, "known profiles: gpt-4o-mini"),
    ],
)
def test_invalid_requests_are_400(server: SimServer, change: dict[str, Any], message: str) -> None:
    body = messages_body(**change)
    body = {k: v for k, v in body.items() if v is not None}
    code, _, answer = post(server, body)
    assert code == 400 and answer["error"]["type"] == "invalid_request_error"
    assert message in answer["error"]["message"]


def test_count_tokens(server: SimServer) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}
    code, _, answer = post(server, body, "/v1/messages/count_tokens")
    assert code == 200 and answer == {"input_tokens": count_tokens("hello there")}


# --------------------------------------------------------------------------
# Server defaults


def test_defaults_apply_to_both_routes_and_the_body_wins() -> None:
    with pytest.raises(InvalidOption, match="known profiles"):
        SimServer(defaults={"profile": "nope"})
    with SimServer(defaults={"speed": 0, "profile": "gemini-flash", "seed": 2, "chunks": 3}) as srv:
        body: dict[str, Any] = {"model": "m", "messages": [], "stream": True}
        raw_request(srv.port, body)
        log = srv.send_log(srv.last_completion_id or "")
        assert log.profile == "gemini-flash" and len(log.chunks) == 3
        assert log.chunks == PROFILES["gemini-flash"].cut(sample_text("prose"), seed=2)[:3]
        body["streamscope"] = {"chunks": 5, "profile": "gpt-4o-mini"}
        raw_request(srv.port, body)
        log = srv.send_log(srv.last_completion_id or "")
        assert log.profile == "gpt-4o-mini" and len(log.chunks) == 5
        raw_request(srv.port, messages_body(), "/v1/messages")
        log = srv.send_log(srv.last_completion_id or "")
        assert log.api == "messages" and log.profile == "gemini-flash" and len(log.chunks) == 3


def test_streamscope_sim_model_leaves_unset_options_to_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with SimServer(defaults={"profile": "claude-haiku", "seed": 5}) as srv:
        monkeypatch.setenv("STREAMSCOPE_SIM_URL", srv.base_url)
        result, doc = streamscope_json("-m", "streamscope-sim", "-o", "speed", "0", "hi")
        assert result.exit_code == 0, result.output
        log = srv.send_log(srv.last_completion_id or "")
    assert log.profile == "claude-haiku" and log.speed == 0
    assert doc is not None and [f["text"] for f in doc["fragments"]] == PROFILES[
        "claude-haiku"
    ].cut(sample_text("prose"), seed=5)


# --------------------------------------------------------------------------
# The standalone simulator


def test_standalone_first_response_keeps_its_planned_ttft() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llm_streamscope.sim",
            "--profile",
            "claude-haiku",
            "--seed",
            "1",
            "--speed",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        root = url.removesuffix("/v1")
        port = int(root.rsplit(":", 1)[1])
        # The first request of this process: samples must be tokenized already.
        events = events_of(raw_request(port, messages_body(max_tokens=8), "/v1/messages"))
        message_id = json.loads(events[0][1])["message"]["id"]
        code, _, log = get_json(port, f"/v1/streamscope/sendlog/{message_id}")
        assert code == 200
        planned_ms = PROFILES["claude-haiku"].ttft(1) * 1000
        first_ms = (log["sent_ns"][0] - log["t0_ns"]) / 1e6
        assert planned_ms - 1 <= first_ms <= planned_ms + 100, (first_ms, planned_ms)  # bug: +600
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        err = proc.stderr.read()
        assert f"ANTHROPIC_BASE_URL={root}" in err and url in err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def get_json(port: int, path: str) -> tuple[int, dict[str, str], Any]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        conn.close()
