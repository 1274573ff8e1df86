"""The simulator's Ollama routes over plain http.client: NDJSON lines, counters, errors, inspect.

(llm-ollama is not used: it lists models from ``/api/tags`` and ``/api/show`` at every
``llm`` start, which would add a network round trip to every test of the suite.)
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
from test_sim import dechunk, decode_and_inspect, raw_request

from llm_streamscope.sim.ollama import created_at
from llm_streamscope.sim.profiles import PROFILES
from llm_streamscope.sim.server import SimServer
from llm_streamscope.sim.texts import count_tokens, sample_text
from llm_streamscope.wire.formats import rfc3339_ns

CHAT = "/api/chat"
GENERATE = "/api/generate"


@pytest.fixture(scope="module")
def server() -> Iterator[SimServer]:
    with SimServer(defaults={"speed": 0, "seed": 5}) as srv:
        yield srv


def chat(text: str = "Why?", **extra: Any) -> dict[str, Any]:
    return {"model": "llama3", "messages": [{"role": "user", "content": text}], **extra}


def post(server: SimServer, path: str, body: Any) -> tuple[int, str, list[dict[str, Any]]]:
    """One request through http.client: the status, the content type and the JSON lines."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("POST", path, json.dumps(body))
        response = connection.getresponse()
        data = response.read().decode()
        content_type = response.getheader("Content-Type") or ""
    finally:
        connection.close()
    return response.status, content_type, [json.loads(line) for line in data.splitlines()]


def test_chat_streams_one_line_per_chunk_with_the_counters_last(server: SimServer) -> None:
    status, content_type, lines = post(server, CHAT, chat("Why does streaming feel fast?"))
    assert status == 200 and content_type == "application/x-ndjson"
    log = server.send_log(server.last_completion_id or "")
    assert log.api == "ollama-chat"
    *chunks, last = lines
    assert [line["message"]["content"] for line in chunks] == log.chunks
    assert log.chunks == PROFILES["gpt-4o-mini"].cut(sample_text("prose"))
    assert all(line["done"] is False and line["model"] == "llama3" for line in chunks)
    assert {line["message"]["role"] for line in lines} == {"assistant"}
    assert last["done"] is True and last["done_reason"] == "stop"
    assert last["message"]["content"] == ""
    assert last["eval_count"] == count_tokens(log.content()) == log.completion_tokens
    assert last["prompt_eval_count"] == count_tokens("Why does streaming feel fast?")
    durations = [last[k] for k in ("total_duration", "prompt_eval_duration", "eval_duration")]
    assert all(isinstance(d, int) and d >= 0 for d in durations)
    assert last["prompt_eval_duration"] + last["eval_duration"] == last["total_duration"]
    # created_at is the server's clock at each send, with nanoseconds: never backwards
    times = [rfc3339_ns(line["created_at"]) for line in lines]
    assert None not in times and times == sorted(times)  # type: ignore[type-var]


def test_each_line_is_one_http_chunk(server: SimServer) -> None:
    _, chunks = dechunk(raw_request(server.port, chat(streamscope={"chunks": 9}), CHAT))
    assert len(chunks) == 10
    assert all(c.startswith(b'{"model":"llama3","created_at":"') for c in chunks)
    assert all(c.endswith(b"}\n") and c.count(b"\n") == 1 for c in chunks)


def test_created_at_is_written_as_go_writes_it() -> None:
    assert created_at(1_755_697_674_511_620_000) == "2025-08-20T13:47:54.51162Z"
    assert rfc3339_ns(created_at(1_755_697_674_000_000_001)) == 1_755_697_674_000_000_001


def test_generate_streams_response_fields(server: SimServer) -> None:
    body = {"model": "gemma3:1b", "prompt": "hi", "system": "Be brief", "stream": True}
    status, _, lines = post(server, GENERATE, {**body, "streamscope": {"chunks": 4}})
    assert status == 200
    log = server.send_log(server.last_completion_id or "")
    assert log.api == "ollama-generate"
    assert [line["response"] for line in lines[:-1]] == log.chunks and len(log.chunks) == 4
    assert "message" not in lines[0]
    assert lines[-1]["prompt_eval_count"] == count_tokens("Be briefhi")


def test_think_streams_thinking_first(server: SimServer) -> None:
    _, _, lines = post(server, CHAT, chat(think=True, streamscope={"chunks": 3}))
    thinking = [line["message"]["thinking"] for line in lines if "thinking" in line["message"]]
    assert "".join(thinking) == sample_text("thinking")
    assert all(lines[i]["message"]["content"] == "" for i in range(len(thinking)))
    text = [line["message"]["content"] for line in lines[len(thinking) : -1]]
    assert len(text) == 3
    log = server.send_log(server.last_completion_id or "")
    assert log.kinds == ["reasoning"] * len(thinking) + ["text"] * 3
    assert lines[-1]["eval_count"] == count_tokens(sample_text("thinking")) + count_tokens(
        "".join(text)
    )


def test_num_predict_ends_with_length_and_seed_picks_the_chunks(server: SimServer) -> None:
    options = {"num_predict": 25, "seed": 11}
    _, _, lines = post(server, CHAT, chat(options=options, streamscope={"profile": "claude-haiku"}))
    assert lines[-1]["done_reason"] == "length" and lines[-1]["eval_count"] == 25
    content = [line["message"]["content"] for line in lines[:-1]]
    expected = PROFILES["claude-haiku"].cut(sample_text("prose"), seed=11)
    assert content[:-1] == expected[: len(content) - 1]


def test_not_streamed_is_one_object(server: SimServer) -> None:
    status, content_type, lines = post(server, CHAT, chat(stream=False))
    assert status == 200 and content_type.startswith("application/json")
    (whole,) = lines
    assert whole["done"] is True and whole["message"]["content"] == sample_text("prose")
    assert whole["eval_count"] == count_tokens(sample_text("prose"))


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"messages": []}, 400, "model is required"),
        (chat(options={"num_predict": "many"}), 400, "num_predict"),
        (chat(streamscope={"profile": "nope"}), 400, "Unknown profile"),
        (chat(streamscope={"error": 503}), 503, "simulated by streamscope-sim"),
    ],
)
def test_errors_are_ollama_shaped(
    server: SimServer, body: dict[str, Any], status: int, message: str
) -> None:
    got, content_type, lines = post(server, CHAT, body)
    assert got == status and content_type == "application/json"
    (error,) = lines
    assert list(error) == ["error"] and message in error["error"]


def test_our_decoder_and_inspect_read_what_the_route_sends(
    server: SimServer, tmp_path: Any
) -> None:
    body = chat(think=True, streamscope={"chunks": 15, "text": "multilingual"})
    _, chunks = dechunk(raw_request(server.port, body, CHAT))
    log = server.send_log(server.last_completion_id or "")
    decoded, doc = decode_and_inspect(chunks, tmp_path / "ollama.ndjson")
    assert decoded.format == "ollama" and decoded.framing == "ndjson" and decoded.error is None
    assert [(p.kind, p.text) for p in decoded.pieces] == list(zip(log.kinds, log.chunks))
    assert decoded.usage_output == log.completion_tokens
    assert decoded.server_times_ns is not None and decoded.server_times_ns[0] == 0
    text = [f["text"] for f in doc["fragments"] if f["kind"] == "text"]
    assert text == log.chunks[-15:]
    assert doc["stats"]["clock"] == "server"  # timed by the route's own created_at
