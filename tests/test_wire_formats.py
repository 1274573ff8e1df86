"""Provider formats: detection, one mapper per format, and the real recordings.

The real recordings live beside the repository (../shared/realstreams, with
PROVENANCE.md); they are data, never copied here, and their tests skip where
they are absent. Every other test uses a small hand-written body.
"""

from __future__ import annotations

import doctest
import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_streamscope.analysis.trace import KINDS
from llm_streamscope.wire import formats, framing, mappers
from llm_streamscope.wire.events import Read, WireError
from llm_streamscope.wire.formats import FORMATS, decode, format_of, rfc3339_ns


def _realstreams() -> Path | None:
    """../shared/realstreams beside the repository, else /work/shared/realstreams."""
    for place in (
        Path(__file__).resolve().parents[1].parent / "shared" / "realstreams",
        Path("/work/shared/realstreams"),
    ):
        if (place / "PROVENANCE.md").is_file():
            return place
    return None


REALSTREAMS = _realstreams()

# File-name prefix -> format; Groq copies OpenAI's chat.completions stream.
PREFIX_FORMATS = {
    "openai-chat": "openai-chat",
    "groq-chat": "openai-chat",
    "openai-responses": "openai-responses",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "ollama": "ollama",
}


def provenance_rows(folder: Path) -> list[dict[str, str]]:
    """The rows of PROVENANCE.md's table of streams: the one with a "content chunks" column."""
    rows: list[dict[str, str]] = []
    header: list[str] | None = None
    for line in (folder / "PROVENANCE.md").read_text().splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif not set(line) <= set("|-: ") and {"file", "data events", "content chunks"} <= set(
            header
        ):
            rows.append(dict(zip(header, cells)))
    return rows


def _recordings() -> list:
    if REALSTREAMS is None:
        return [pytest.param(None, marks=pytest.mark.skip(reason="../shared/realstreams absent"))]
    return [pytest.param(row, id=row["file"]) for row in provenance_rows(REALSTREAMS)]


def text_pieces(decoded) -> list:
    return [p for p in decoded.pieces if p.kind == "text"]


def reads_of(body: bytes, size: int, start_ns: int = 0, step_ns: int = 1000) -> list[Read]:
    """``body`` cut into reads of ``size`` bytes, the i-th arriving at start + i * step."""
    return [
        Read(start_ns + i * step_ns, body[offset : offset + size])
        for i, offset in enumerate(range(0, len(body), size))
    ]


def sse(*payloads, crlf: bool = False) -> bytes:
    """An SSE body: one ``data:`` event per payload (str as is, anything else as JSON)."""
    end = "\r\n" if crlf else "\n"
    lines = []
    for payload in payloads:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        lines.append(f"data: {data}{end}{end}")
    return "".join(lines).encode()


def anthropic_sse(*payloads) -> bytes:
    return "".join(
        f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n" for payload in payloads
    ).encode()


def chunk(delta: dict | None = None, *, index: int = 0, finish=None, **extra) -> dict:
    choices = [] if delta is None else [{"index": index, "delta": delta, "finish_reason": finish}]
    return {"object": "chat.completion.chunk", "model": "gpt-4o-mini", "choices": choices, **extra}


def test_doctests():
    assert doctest.testmod(formats).failed == 0
    assert doctest.testmod(mappers).failed == 0
    assert doctest.testmod(framing, optionflags=doctest.ELLIPSIS).failed == 0


# ====================
# Real recordings (part 5)
# ====================


@pytest.mark.parametrize("row", _recordings())
def test_real_recording_decodes_to_provenance_counts(row):
    """Each real stream decodes without error into PROVENANCE's number of content chunks."""
    assert REALSTREAMS is not None
    name = row["file"]
    body = (REALSTREAMS / name).read_bytes()
    decoded = decode([Read(None, body)])
    assert decoded.error is None, decoded.error
    assert decoded.format == PREFIX_FORMATS[name.split("_")[0]]
    assert len(text_pieces(decoded)) == int(row["content chunks"])
    data_events = [e for e in decoded.events if not e.comment]
    assert len(data_events) == int(row["data events"])
    assert decoded.model == row["model"]
    assert decoded.body_bytes == len(body)


@pytest.mark.parametrize("row", _recordings())
def test_real_recording_read_in_pieces_maps_the_same(row):
    """Cut into timed reads, a recording gives the same pieces; events carry read times."""
    assert REALSTREAMS is not None
    body = (REALSTREAMS / row["file"]).read_bytes()
    whole = decode([Read(None, body)])
    cut = decode(reads_of(body, 997))
    assert cut.pieces == whole.pieces and cut.labels == whole.labels
    times = [e.t_ns for e in cut.events]
    assert times == sorted(times) and None not in times
    # An event's time is that of the read carrying its last byte.
    assert all(e.t_ns == ((e.byte_end - 1) // 997) * 1000 for e in cut.events)


def test_every_recording_is_in_provenance():
    if REALSTREAMS is None:
        pytest.skip("../shared/realstreams absent")
    listed = {row["file"] for row in provenance_rows(REALSTREAMS)}
    streams = {
        p.name
        for p in REALSTREAMS.iterdir()
        if p.name != "PROVENANCE.md" and not p.name.startswith("timing_")
    }
    assert streams == listed
    assert {name.split("_")[0] for name in listed} <= set(PREFIX_FORMATS)


# ====================
# OpenAI chat.completions
# ====================


def test_openai_chat_labels_every_event():
    body = sse(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, finish="stop"),
        {
            "choices": [],
            "model": "gpt-4o-mini",
            "usage": {
                "prompt_tokens": 9,
                "completion_tokens": 2,
                "total_tokens": 11,
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
        },
        "[DONE]",
    )
    body = b": keep-alive\n\n" + body
    decoded = decode([Read(None, body)])
    assert decoded.format == "openai-chat" and decoded.framing == "sse"
    assert decoded.labels == ("keep-alive", "role", "text", "text", "finish", "usage", "done")
    assert [(p.event_index, p.text) for p in decoded.pieces] == [(2, "Hel"), (3, "lo")]
    assert decoded.model == "gpt-4o-mini"
    assert (decoded.usage_input, decoded.usage_output) == (9, 2)
    assert decoded.usage_details == {"completion_tokens_details": {"reasoning_tokens": 0}}
    assert decoded.error is None and decoded.choices == (0,)


def test_openai_chat_reasoning_fields():
    decoded = decode(
        [
            Read(
                None,
                sse(
                    chunk({"reasoning_content": "Think"}),
                    chunk({"reasoning": "ing"}),
                    chunk({"content": "Done"}),
                ),
            )
        ]
    )
    assert [(p.kind, p.text) for p in decoded.pieces] == [
        ("reasoning", "Think"),
        ("reasoning", "ing"),
        ("text", "Done"),
    ]
    assert decoded.labels == ("reasoning", "reasoning", "text")


def test_openai_chat_tool_calls_keep_their_ids():
    """Later argument deltas carry only the call's index: its id is the one seen first."""

    def call(index, arguments, **first):
        function = {"arguments": arguments, **({"name": first["name"]} if first else {})}
        return {"index": index, **({"id": first["id"]} if first else {}), "function": function}

    decoded = decode(
        [
            Read(
                None,
                sse(
                    chunk(
                        {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [call(0, "", id="call_a", name="get_weather")],
                        }
                    ),
                    chunk({"tool_calls": [call(0, '{"city":')]}),
                    chunk({"tool_calls": [call(1, "", id="call_b", name="get_time")]}),
                    chunk({"tool_calls": [call(1, '{"tz":"UTC"}')]}),
                    chunk({"tool_calls": [call(0, '"Paris"}')]}),
                    chunk({}, finish="tool_calls"),
                    "[DONE]",
                ),
            )
        ]
    )
    assert [(p.kind, p.text, p.tool_call_id) for p in decoded.pieces] == [
        ("tool_call_name", "get_weather", "call_a"),
        ("tool_call_args", '{"city":', "call_a"),
        ("tool_call_name", "get_time", "call_b"),
        ("tool_call_args", '{"tz":"UTC"}', "call_b"),
        ("tool_call_args", '"Paris"}', "call_a"),
    ]
    assert decoded.labels[0] == "tool_call_name" and decoded.labels[-2:] == ("finish", "done")


def test_openai_chat_n2_choices_kept_apart():
    decoded = decode(
        [
            Read(
                None,
                sse(
                    chunk({"role": "assistant", "content": ""}, index=0),
                    chunk({"role": "assistant", "content": ""}, index=1),
                    chunk({"content": "A"}, index=0),
                    chunk({"content": "B"}, index=1),
                    chunk({"content": "a"}, index=0),
                    "[DONE]",
                ),
            )
        ]
    )
    assert decoded.choices == (0, 1)
    assert [(p.choice, p.text) for p in decoded.pieces] == [(0, "A"), (1, "B"), (0, "a")]


def test_openai_chat_chunk_lines_without_sse():
    """vercel/ai's ``.chunks.jsonl``: the same chunk objects, one per line."""
    body = "\n".join(json.dumps(c) for c in (chunk({"content": "Hi"}), chunk({}, finish="stop")))
    decoded = decode([Read(None, body.encode())])
    assert (decoded.format, decoded.framing) == ("openai-chat", "ndjson")
    assert decoded.labels == ("text", "finish")


# ====================
# OpenAI Responses
# ====================


def test_openai_responses_text_reasoning_tool_call_and_usage():
    events = [
        {"type": "response.created", "response": {"model": "gpt-4.1-2025-04-14", "usage": None}},
        {"type": "response.reasoning_summary_text.delta", "delta": "Plan"},
        {"type": "response.reasoning_text.delta", "delta": "ned"},
        {
            "type": "response.output_item.added",
            "item": {"id": "fc_1", "type": "function_call", "name": "lookup", "arguments": ""},
        },
        {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": '{"q":1}'},
        {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "Hi"},
        {"type": "response.output_text.done", "text": "Hi"},
        {
            "type": "response.completed",
            "response": {
                "model": "gpt-4.1-2025-04-14",
                "usage": {
                    "input_tokens": 5,
                    "output_tokens": 7,
                    "total_tokens": 12,
                    "output_tokens_details": {"reasoning_tokens": 2},
                },
            },
        },
    ]
    body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()
    decoded = decode([Read(None, body)])
    assert decoded.format == "openai-responses"
    assert decoded.labels == (
        "start",
        "reasoning",
        "reasoning",
        "tool_call_name",
        "tool_call_args",
        "text",
        "other",
        "usage",
    )
    assert [(p.kind, p.text, p.tool_call_id) for p in decoded.pieces] == [
        ("reasoning", "Plan", None),
        ("reasoning", "ned", None),
        ("tool_call_name", "lookup", "fc_1"),
        ("tool_call_args", '{"q":1}', "fc_1"),
        ("text", "Hi", None),
    ]
    assert decoded.model == "gpt-4.1-2025-04-14"
    assert (decoded.usage_input, decoded.usage_output) == (5, 7)
    assert decoded.usage_details == {"output_tokens_details": {"reasoning_tokens": 2}}


# ====================
# Anthropic
# ====================

ANTHROPIC_TOOL_STREAM = (
    {
        "type": "message_start",
        "message": {
            "model": "claude-sonnet-4-20250514",
            "usage": {"input_tokens": 12, "output_tokens": 1},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking"}},
    {"type": "ping"},
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "Hmm"},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "signature_delta", "signature": "c2ln"},
    },
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_1", "name": "search", "input": {}},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": ""},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"q": "x"}'},
    },
    {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Yes"}},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 30}},
    {"type": "message_stop"},
)


def test_anthropic_thinking_tool_use_text_and_usage():
    decoded = decode([Read(None, anthropic_sse(*ANTHROPIC_TOOL_STREAM))])
    assert decoded.format == "anthropic"
    assert decoded.labels == (
        "start",
        "other",
        "ping",
        "reasoning",
        "signature",
        "other",
        "tool_call_name",
        "empty",
        "tool_call_args",
        "other",
        "text",
        "usage",
        "stop",
    )
    assert [(p.kind, p.text, p.tool_call_id) for p in decoded.pieces] == [
        ("reasoning", "Hmm", None),
        ("tool_call_name", "search", "toolu_1"),
        ("tool_call_args", '{"q": "x"}', "toolu_1"),
        ("text", "Yes", None),
    ]
    assert decoded.model == "claude-sonnet-4-20250514"
    assert (decoded.usage_input, decoded.usage_output) == (12, 30)


def test_anthropic_padding_inside_data_lines_is_kept_valid():
    """The real API pads some data lines with spaces before the last brace: still JSON."""
    body = (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"Hi"}       }\n\n'
    )
    decoded = decode([Read(None, body)])
    assert decoded.error is None and [p.text for p in decoded.pieces] == ["Hi"]


def test_anthropic_error_event_ends_decoding_and_is_labelled():
    stream = [*ANTHROPIC_TOOL_STREAM[:3]]
    stream.append({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    stream.append(ANTHROPIC_TOOL_STREAM[10])
    body = anthropic_sse(*stream)
    decoded = decode([Read(None, body)])
    assert decoded.labels == ("start", "other", "ping", "error")
    assert decoded.pieces == ()
    assert decoded.error is not None
    assert "Overloaded (overloaded_error)" in str(decoded.error)
    assert decoded.error.offset == decoded.events[3].byte_start
    assert decoded.error.line == body[: decoded.error.offset].count(b"\n") + 1


# ====================
# Gemini
# ====================

GEMINI_CHUNKS = (
    {
        "candidates": [
            {"content": {"parts": [{"text": "Let me think", "thought": True}], "role": "model"}}
        ],
        "usageMetadata": {"promptTokenCount": 4, "thoughtsTokenCount": 20},
        "modelVersion": "gemini-2.5-flash",
    },
    {
        "candidates": [
            {"content": {"parts": [{"text": "Answer "}, {"text": "here"}], "role": "model"}}
        ],
        "usageMetadata": {
            "promptTokenCount": 4,
            "thoughtsTokenCount": 20,
            "candidatesTokenCount": 2,
        },
        "modelVersion": "gemini-2.5-flash",
    },
    {
        "candidates": [
            {
                "content": {
                    "parts": [{"functionCall": {"name": "f", "args": {"x": 1}}}],
                    "role": "model",
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 4,
            "thoughtsTokenCount": 20,
            "candidatesTokenCount": 9,
            "totalTokenCount": 33,
        },
        "modelVersion": "gemini-2.5-flash",
    },
)


def check_gemini(decoded):
    assert decoded.format == "gemini"
    assert decoded.labels == ("reasoning", "text", "tool_call_name")
    assert [(p.event_index, p.kind, p.text) for p in decoded.pieces] == [
        (0, "reasoning", "Let me think"),
        (1, "text", "Answer "),
        (1, "text", "here"),
        (2, "tool_call_name", "f"),
        (2, "tool_call_args", '{"x": 1}'),
    ]
    # Output is candidates + thoughts, as llm-gemini counts it.
    assert (decoded.usage_input, decoded.usage_output) == (4, 29)
    assert decoded.usage_details == {"thoughtsTokenCount": 20, "candidatesTokenCount": 9}
    assert decoded.model == "gemini-2.5-flash"


def test_gemini_sse_with_crlf():
    decoded = decode([Read(None, sse(*GEMINI_CHUNKS, crlf=True))])
    assert decoded.framing == "sse"
    check_gemini(decoded)


def test_gemini_json_array_stream():
    """llm-gemini reads the stream without alt=sse: one JSON array, element by element."""
    body = ("[" + ",\r\n".join(json.dumps(c) for c in GEMINI_CHUNKS) + "]").encode()
    decoded = decode(reads_of(body, 50))
    assert decoded.framing == "json-array"
    check_gemini(decoded)


def test_gemini_error_element():
    body = json.dumps(
        [
            GEMINI_CHUNKS[0],
            {"error": {"code": 429, "message": "Quota", "status": "RESOURCE_EXHAUSTED"}},
        ]
    )
    decoded = decode([Read(None, body.encode())])
    assert decoded.labels == ("reasoning", "error")
    assert "Quota (RESOURCE_EXHAUSTED)" in str(decoded.error)


# ====================
# Ollama
# ====================


def ollama_line(content: str, at: str, *, thinking: str | None = None, **extra) -> str:
    message = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    return json.dumps({"model": "gemma3:1b", "created_at": at, "message": message, **extra})


def test_ollama_content_thinking_usage_and_server_times():
    lines = [
        ollama_line("", "2025-08-20T13:47:54.490267123Z", thinking="Hm"),
        ollama_line("Okay", "2025-08-20T13:47:54.495433Z"),
        ollama_line("!", "2025-08-20T13:47:55.000000001Z"),
        ollama_line(
            "",
            "2025-08-20T13:47:55.1Z",
            done=True,
            done_reason="stop",
            prompt_eval_count=18,
            eval_count=3,
            eval_duration=99,
        ),
    ]
    decoded = decode([Read(None, ("\r\n".join(lines) + "\r\n").encode())])
    assert (decoded.format, decoded.framing) == ("ollama", "ndjson")
    assert decoded.labels == ("reasoning", "text", "text", "usage")
    assert [(p.kind, p.text) for p in decoded.pieces] == [
        ("reasoning", "Hm"),
        ("text", "Okay"),
        ("text", "!"),
    ]
    # Nanoseconds, which datetime would have cut to microseconds.
    assert decoded.server_times_ns == (0, 5_165_877, 509_732_878, 609_732_877)
    assert (decoded.usage_input, decoded.usage_output) == (18, 3)
    assert decoded.usage_details == {"eval_duration": 99}
    assert decoded.model == "gemma3:1b"


def test_ollama_tool_calls():
    line = json.dumps(
        {
            "model": "llama3",
            "created_at": "2025-01-01T00:00:00Z",
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "add", "arguments": {"a": 1}}}],
            },
            "done": False,
        }
    )
    decoded = decode([Read(None, line.encode() + b"\n")])
    assert [(p.kind, p.text) for p in decoded.pieces] == [
        ("tool_call_name", "add"),
        ("tool_call_args", '{"a": 1}'),
    ]
    assert decoded.pieces[0].tool_call_id == decoded.pieces[1].tool_call_id


def test_rfc3339_ns_rejects_what_is_not_a_time():
    assert rfc3339_ns("yesterday") is None and rfc3339_ns(None) is None
    assert rfc3339_ns("2025-13-40T00:00:00Z") is None
    assert rfc3339_ns("2025-08-20T13:47:54.1234567891Z") == rfc3339_ns(
        "2025-08-20T13:47:54.123456789Z"
    )


# ====================
# Detection, override and bad input
# ====================


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (chunk({"content": "x"}), "openai-chat"),
        ({"type": "response.created", "response": {}}, "openai-responses"),
        ({"type": "content_block_delta"}, "anthropic"),
        (GEMINI_CHUNKS[0], "gemini"),
        ({"model": "m", "created_at": "t", "message": {}}, "ollama"),
        ({"hello": 1}, None),
        ([1, 2], None),
    ],
)
def test_format_of(payload, expected):
    assert format_of(payload) == expected


def test_sse_event_type_tells_the_format():
    assert format_of({}, "message_start") == "anthropic"
    assert format_of({}, "response.output_text.delta") == "openai-responses"


def test_given_format_overrides_detection():
    body = sse({"choices": [{"index": 0, "delta": {"content": "x"}}]})
    assert decode([Read(None, body)], format="openai-chat").format == "openai-chat"
    # Read as the wrong format, not one event is of it: there is nothing to analyse.
    with pytest.raises(WireError, match=re.escape("they look like openai-chat")):
        decode([Read(None, body)], format="anthropic")
    with pytest.raises(WireError, match="unknown format 'sse'"):
        decode([Read(None, body)], format="sse")


def test_formats_are_the_documented_five():
    assert FORMATS == ("openai-chat", "openai-responses", "anthropic", "gemini", "ollama")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the body is empty"),
        (
            b'{"error": {"message": "Wrong API key", "type": "invalid_request_error"}}',
            "an error response, not a stream: Wrong API key (invalid_request_error)",
        ),
        (b'data: {"hello": "world"}\n\n', "unknown stream format"),
        (b"data: not json\n\n", "not a stream of JSON events"),
        (b": ping\n\n: ping\n\n", "no data events"),
    ],
)
def test_nothing_to_analyse_raises_one_clear_error(body, message):
    with pytest.raises(WireError, match=re.escape(message)) as raised:
        decode([Read(None, body)])
    assert "\n" not in str(raised.value)


def test_invalid_json_midway_keeps_what_came_before():
    body = sse(chunk({"content": "Hi"}), chunk({"content": " there"}))
    bad = b'data: {"choices": [ \n\n'
    decoded = decode([Read(None, body + bad + sse(chunk({"content": "lost"})))])
    assert [p.text for p in decoded.pieces] == ["Hi", " there"]
    assert decoded.labels == ("text", "text", "error")
    assert decoded.error is not None
    assert decoded.error.offset == len(body)
    assert decoded.error.line == 5
    assert str(decoded.error).startswith("event 2: invalid JSON")
    assert "(at line 5, byte " in str(decoded.error)


def test_unexpected_shape_midway_is_a_warning_naming_the_event():
    body = sse(chunk({"content": "Hi"}), {"choices": ["not a choice"]}, chunk({"content": "x"}))
    decoded = decode([Read(None, body)])
    assert decoded.labels == ("text", "other", "text") and decoded.error is None
    assert [p.text for p in decoded.pieces] == ["Hi", "x"]
    assert decoded.warnings == ("event 1 does not fit the openai-chat format: it carried nothing",)


def test_error_chunk_in_an_openai_stream():
    body = sse(chunk({"content": "Hi"}), {"error": {"message": "server overloaded"}})
    decoded = decode([Read(None, body)])
    assert decoded.labels == ("text", "error")
    assert "the provider sent an error: server overloaded" in str(decoded.error)


def test_stream_cut_inside_an_event():
    body = sse(chunk({"content": "Hi"}))
    cut = b'data: {"choices": [{"index": 0, "delta": {"content": "th'
    decoded = decode([Read(None, body + cut)])
    assert [p.text for p in decoded.pieces] == ["Hi"] and decoded.labels == ("text",)
    assert decoded.error is not None and "ended inside an event" in str(decoded.error)
    assert decoded.error.offset == len(body)


def test_pieces_point_at_timed_events():
    body = sse(chunk({"content": "a"}), chunk({"content": "b"}), "[DONE]")
    reads = reads_of(body, 40, start_ns=5_000, step_ns=1_000)
    decoded = decode(reads)
    assert decoded.reads == len(reads) and decoded.body_bytes == len(body)
    for piece in decoded.pieces:
        event = decoded.events[piece.event_index]
        assert event.t_ns == 5_000 + ((event.byte_end - 1) // 40) * 1_000
    assert Counter(decoded.labels) == {"text": 2, "done": 1}


def test_realstreams_report_runs(capsys, monkeypatch):
    """benchmarks/realstreams.py, the table in docs/wire.md: one row per provider, and a total."""
    if REALSTREAMS is None:
        pytest.skip("../shared/realstreams absent")
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "realstreams.py"
    spec = importlib.util.spec_from_file_location("realstreams_report", path)
    assert spec is not None and spec.loader is not None
    report = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, report)  # dataclasses look their module up
    spec.loader.exec_module(report)
    assert report.main([str(REALSTREAMS)]) == 0
    lines = capsys.readouterr().out.splitlines()
    providers = {line.split(" | ")[0].lstrip("| ") for line in lines[2:] if line.startswith("|")}
    assert providers == set(PREFIX_FORMATS) | {"all"}
    openai = next(line for line in lines if line.startswith("| openai-chat |"))
    # OpenAI chat streams one token per chunk, every chunk ending on a token boundary.
    assert " | 1.00 | 100.0% | " in openai


def test_json_array_never_closed_or_cut():
    element = json.dumps(GEMINI_CHUNKS[1])
    unclosed = decode([Read(None, f"[{element}".encode())])
    assert unclosed.labels == ("text",) and "never closed" in str(unclosed.error)
    cut = decode([Read(None, f"[{element},{element[:30]}".encode())])
    assert cut.labels == ("text",) and "ended inside an event" in str(cut.error)
    assert cut.error is not None and cut.error.offset == len(element) + 2


def test_trailing_whitespace_is_no_truncation():
    assert decode([Read(None, sse(chunk({"content": "a"})) + b"  ")]).error is None
    assert decode([Read(None, f"[{json.dumps(GEMINI_CHUNKS[1])}]\r\n".encode())]).error is None


def test_invalid_utf8_in_an_ndjson_line_keeps_the_lines_before():
    good = ollama_line("a", "2025-01-01T00:00:00Z").encode() + b"\n"
    bad = ollama_line("b", "2025-01-01T00:00:01Z").encode().replace(b'"b"', b'"\xff"') + b"\n"
    decoded = decode([Read(None, good + bad + good)])
    assert [p.text for p in decoded.pieces] == ["a"]
    assert decoded.error is not None and decoded.error.offset is not None
    assert decoded.error.line == 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Dicts built from the keys the mappers read, so that most examples reach deep into them.
KEYS = [
    "choices",
    "index",
    "delta",
    "content",
    "tool_calls",
    "function",
    "name",
    "arguments",
    "usage",
    "type",
    "item",
    "content_block",
    "candidates",
    "parts",
    "text",
    "thought",
    "functionCall",
    "message",
    "created_at",
    "done",
    "error",
    "model",
    "response",
    "id",
]
shaped = st.recursive(
    st.none() | st.integers(-2, 2) | st.sampled_from(["", "x", "text_delta", "[DONE]"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)
    ),
    max_leaves=16,
)


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(shaped | json_values, min_size=1, max_size=4),
    format=st.sampled_from([None, *FORMATS]),
)
def test_any_json_events_decode_or_fail_clearly(payloads, format):
    """Whatever JSON the events hold, decode returns or raises WireError, nothing else."""
    body = sse(*(json.dumps(p) for p in payloads))
    try:
        decoded = decode([Read(None, body)], format=format)
    except WireError as error:
        # A given format fails only when not one event is of it.
        assert format is None or "data events" in str(error)
        return
    assert len(decoded.labels) == len(decoded.events) <= len(payloads)
    # What carried nothing of the format says so, naming its events.
    assert len(decoded.warnings) <= 2 and all("event" in w for w in decoded.warnings)
    if decoded.error is None:
        assert len(decoded.events) == len(payloads) and "error" not in decoded.labels
    else:  # the event that stopped decoding is the last one kept
        assert decoded.labels.index("error") == len(decoded.labels) - 1
    for piece in decoded.pieces:
        assert piece.kind in KINDS and piece.text and isinstance(piece.text, str)
        assert type(piece.choice) is int and piece.choice in decoded.choices
