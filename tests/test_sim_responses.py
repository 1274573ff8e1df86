"""The simulator's OpenAI Responses route, through the real openai SDK and our own wire decoder.

The openai client (installed with llm) streams ``client.responses.create(stream=True)``
from the loopback server and parses every event into its typed models, so an event of
the wrong shape fails here. Simulator options travel in ``extra_body``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from test_sim import dechunk, decode_and_inspect, raw_request

from llm_streamscope.sim.profiles import PROFILES
from llm_streamscope.sim.server import SimServer
from llm_streamscope.sim.texts import count_tokens, sample_text

PATH = "/v1/responses"


@pytest.fixture(scope="module")
def server() -> Iterator[SimServer]:
    with SimServer(defaults={"speed": 0, "seed": 3}) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: SimServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="sk-dummy", max_retries=0)


def stream(client: openai.OpenAI, **kwargs: Any) -> list[Any]:
    """Every event of one streamed response, as the SDK parsed it."""
    args = {"model": "gpt-4o-mini", "input": "Why does streaming feel fast?", **kwargs}
    with client.responses.create(stream=True, **args) as events:
        return list(events)


def test_the_sdk_streams_the_send_log_in_the_real_shape(
    server: SimServer, client: openai.OpenAI
) -> None:
    events = stream(client)
    log = server.send_log(server.last_completion_id or "")
    assert log.api == "responses" and log.id.startswith("resp_")
    types = [e.type for e in events]
    n = len(log.chunks)
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * n,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    expected = PROFILES["gpt-4o-mini"].cut(sample_text("prose"))
    assert [d.delta for d in deltas] == log.chunks == expected
    item_id = events[2].item.id
    assert item_id.startswith("msg_")
    assert {(d.item_id, d.output_index, d.content_index) for d in deltas} == {(item_id, 0, 0)}
    done = events[-1].response
    assert done.id == log.id and done.status == "completed" and done.model == "gpt-4o-mini"
    assert done.output_text == sample_text("prose") == events[-4].text
    assert done.usage is not None
    assert done.usage.input_tokens == count_tokens("Why does streaming feel fast?")
    assert done.usage.output_tokens == count_tokens(log.content()) == log.completion_tokens


def test_obfuscation_pads_each_delta_to_sixteen(server: SimServer) -> None:
    body = {"model": "m", "input": "hi", "stream": True, "streamscope": {"chunks": 40}}
    _, chunks = dechunk(raw_request(server.port, body, PATH))
    deltas = [json.loads(c.split(b"data: ", 1)[1]) for c in chunks if b"text.delta" in c]
    assert len(deltas) == 40
    for delta in deltas:
        escaped = json.dumps(delta["delta"], ensure_ascii=False)
        assert (len(escaped) - 2 + len(delta["obfuscation"])) % 16 == 0
    # one SSE event per HTTP chunk
    assert all(c.startswith(b"event: response.") and c.endswith(b"}\n\n") for c in chunks)


def test_reasoning_summary_streams_before_the_message(
    server: SimServer, client: openai.OpenAI
) -> None:
    events = stream(
        client,
        reasoning={"effort": "low", "summary": "auto"},
        extra_body={"streamscope": {"reasoning": 7, "chunks": 3}},
    )
    summary = [e for e in events if e.type == "response.reasoning_summary_text.delta"]
    text = [e for e in events if e.type == "response.output_text.delta"]
    assert "".join(e.delta for e in summary) == sample_text("thinking")
    assert len(text) == 3
    assert {e.output_index for e in summary} == {0} and {e.output_index for e in text} == {1}
    assert events.index(summary[-1]) < events.index(text[0])
    log = server.send_log(server.last_completion_id or "")
    assert log.kinds == ["reasoning"] * len(summary) + ["text"] * 3
    done = events[-1].response
    assert [item.type for item in done.output] == ["reasoning", "message"]
    assert done.output[0].summary[0].text == sample_text("thinking")
    usage = done.usage
    assert usage.output_tokens_details.reasoning_tokens == 7
    assert usage.output_tokens == 7 + count_tokens("".join(e.delta for e in text))


def test_reasoning_without_a_summary_is_an_empty_item(client: openai.OpenAI) -> None:
    events = stream(client, extra_body={"streamscope": {"reasoning": 5, "chunks": 2}})
    assert not [e for e in events if "reasoning_summary" in e.type]
    added = [e.item.type for e in events if e.type == "response.output_item.added"]
    assert added == ["reasoning", "message"]
    assert events[-1].response.output[0].summary == []


def test_a_function_tool_is_called_then_answered(server: SimServer, client: openai.OpenAI) -> None:
    tool = {
        "type": "function",
        "name": "multiply",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    }
    events = stream(client, tools=[tool])
    deltas = [e for e in events if e.type == "response.function_call_arguments.delta"]
    call = events[-1].response.output[0]
    assert call.type == "function_call" and call.name == "multiply"
    arguments = json.loads("".join(d.delta for d in deltas))
    assert arguments == json.loads(call.arguments) == {"a": 3, "b": 3}
    assert {d.item_id for d in deltas} == {call.id}
    log = server.send_log(server.last_completion_id or "")
    assert set(log.kinds) == {"tool_call_args"}
    # usage counts what streams as output: the name's tokens and the arguments'
    usage = events[-1].response.usage
    assert usage.output_tokens == count_tokens("multiply") + count_tokens(call.arguments)
    # the tool's output, sent back, gets a text answer
    answer = [
        {"type": "function_call", "call_id": call.call_id, "name": "multiply", "arguments": "{}"},
        {"type": "function_call_output", "call_id": call.call_id, "output": "9"},
    ]
    events = stream(client, input=answer, tools=[tool], extra_body={"streamscope": {"chunks": 2}})
    assert [e.item.type for e in events if e.type == "response.output_item.added"] == ["message"]


def test_max_output_tokens_ends_incomplete(client: openai.OpenAI) -> None:
    events = stream(client, max_output_tokens=20)
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.status == "incomplete"
    assert last.response.incomplete_details.reason == "max_output_tokens"
    assert last.response.usage.output_tokens == 20
    with pytest.raises(openai.BadRequestError, match="max_output_tokens"):
        stream(client, max_output_tokens=5)


def test_not_streamed_is_the_whole_response(server: SimServer, client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="gpt-4o-mini", input="hi", extra_body={"streamscope": {"chunks": 6}}
    )
    log = server.send_log(response.id)
    assert response.output_text == log.content() and len(log.chunks) == 1
    assert response.usage is not None and response.usage.output_tokens == count_tokens(
        log.content()
    )


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        ({"input": "hi"}, openai.BadRequestError, "'model'"),
        ({"model": "m"}, openai.BadRequestError, "'input'"),
        (
            {"model": "m", "input": "hi", "streamscope": {"speed": -1}},
            openai.BadRequestError,
            "streamscope.speed",
        ),
        (
            {"model": "m", "input": "hi", "streamscope": {"error": 429}},
            openai.RateLimitError,
            "simulated",
        ),
    ],
)
def test_errors_are_openai_shaped(
    client: openai.OpenAI, body: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        client.post("/responses", body=body, cast_to=object)


def test_our_decoder_and_inspect_read_what_the_route_sends(
    server: SimServer, tmp_path: Any
) -> None:
    body = {
        "model": "gpt-4o-mini",
        "input": "hi",
        "stream": True,
        "reasoning": {"summary": "auto"},
        "streamscope": {"reasoning": 4, "chunks": 12, "text": "multilingual"},
    }
    _, chunks = dechunk(raw_request(server.port, body, PATH))
    log = server.send_log(server.last_completion_id or "")
    decoded, doc = decode_and_inspect(chunks, tmp_path / "responses.sse")
    assert decoded.format == "openai-responses" and decoded.error is None
    assert [(p.kind, p.text) for p in decoded.pieces] == list(zip(log.kinds, log.chunks))
    assert decoded.usage_output == log.completion_tokens and decoded.model == "gpt-4o-mini"
    text = [f["text"] for f in doc["fragments"] if f["kind"] == "text"]
    assert text == [c for k, c in zip(log.kinds, log.chunks) if k == "text"]
    assert doc["stats"]["usage_output_tokens"] == log.completion_tokens


def test_drop_after_closes_the_connection_mid_body(server: SimServer) -> None:
    body = {"model": "m", "input": "hi", "stream": True, "streamscope": {"drop_after": 3}}
    raw = raw_request(server.port, body, PATH)
    _, _, rest = raw.partition(b"\r\n\r\n")
    assert not rest.endswith(b"0\r\n\r\n")
    log = server.send_log(server.last_completion_id or "")
    assert log.status == "dropped" and len(log.chunks) == 3
