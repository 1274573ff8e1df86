"""What does not fit its format is said: a warning naming the event, or an error when
nothing of the format is in the body. Nothing is dropped in silence."""

from __future__ import annotations

import json

import pytest
from test_inspect import OPENAI, inspect, write
from test_wire_formats import anthropic_sse, chunk, sse

from llm_streamscope.wire.events import Read, WireError
from llm_streamscope.wire.formats import decode

GOOD_OLLAMA = {"model": "m", "created_at": "2025-08-20T13:47:54Z", "message": {"content": "ok"}}


def gemini(text) -> dict:
    return {"candidates": [{"content": {"parts": [{"text": text}]}}], "modelVersion": "g"}


def responses(delta) -> dict:
    return {"type": "response.output_text.delta", "delta": delta}


def anthropic(text) -> dict:
    return {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": text},
    }


def ndjson(*lines: dict) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


@pytest.mark.parametrize(
    ("body", "field", "kind"),
    [
        (sse(chunk({"content": ["a", "b"]}), chunk({"content": "ok"})), "delta.content", "list"),
        (sse(chunk({"content": {"text": "a"}}), chunk({"content": "ok"})), "delta.content", "dict"),
        (sse(chunk({"content": 7}), chunk({"content": "ok"})), "delta.content", "int"),
        (anthropic_sse(anthropic(42), anthropic("ok")), "delta.text", "int"),
        (ndjson({**GOOD_OLLAMA, "message": {"content": 1.5}}, GOOD_OLLAMA), "message.content",
         "float"),
        (sse(responses(3), responses("ok")), "delta", "int"),
        (sse(gemini(12), gemini("ok")), "parts[].text", "int"),
    ],
)  # fmt: skip
def test_an_odd_type_where_text_belongs_is_a_warning_naming_the_event(body, field, kind):
    decoded = decode([Read(None, body)])
    assert decoded.error is None
    assert [p.text for p in decoded.pieces] == ["ok"]  # decoding went on past it
    assert decoded.warnings == (f"event 0: {field} is a {kind}, not text: skipped",)


def test_many_odd_fields_are_one_warning():
    decoded = decode([Read(None, sse(*(chunk({"content": [i]}) for i in range(4))))])
    assert decoded.warnings == (
        "event 0: delta.content is a list, not text: skipped (and 3 more such fields)",
    )


def test_events_of_another_format_are_a_warning_listing_them():
    body = sse(chunk({"content": "a"}), *([anthropic("x")] * 7), chunk({"content": "b"}))
    decoded = decode([Read(None, body)], format="openai-chat")
    assert [p.text for p in decoded.pieces] == ["a", "b"]
    assert decoded.warnings == (
        "events 1, 2, 3, 4, 5, … (7 in all) do not fit the openai-chat format "
        "(they look like anthropic): they carried nothing",
    )


@pytest.mark.parametrize(
    ("body", "format", "looks"),
    [
        (OPENAI, "anthropic", "openai-chat"),
        (OPENAI, "gemini", "openai-chat"),
        (OPENAI, "ollama", "openai-chat"),
        (OPENAI, "openai-responses", "openai-chat"),
        (anthropic_sse(anthropic("x")), "openai-chat", "anthropic"),
        (ndjson(GOOD_OLLAMA), "gemini", "ollama"),
    ],
)
def test_a_body_with_no_event_of_the_given_format_is_an_error(body, format, looks):
    with pytest.raises(WireError, match=f"fits the {format} format .they look like {looks}"):
        decode([Read(None, body)], format=format)


def test_inspect_says_the_wrong_format_in_one_error_line(tmp_path):
    path = write(tmp_path, "capture.sse", OPENAI)
    result = inspect(path, "--format", "anthropic")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"Error: {path}: not one of its 8 data events fits the ")
    assert result.stderr.count("\n") == 1


def test_inspect_warns_of_an_odd_type_and_shows_the_rest(tmp_path):
    path = write(tmp_path, "odd.sse", sse(chunk({"content": ["a"]}), chunk({"content": "ok"})))
    result = inspect(path)
    assert result.exit_code == 0, result.output
    assert "Warning: event 0: delta.content is a list, not text: skipped\n" in result.stderr
    assert "text: 1 token, 1 chunk" in result.stdout
