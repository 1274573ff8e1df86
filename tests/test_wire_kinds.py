"""Every kind of event named for what it is, and every byte of a body in one event.

Bodies here are small hand-written copies of the shapes real providers send
(OpenRouter, DeepSeek, OpenAI Responses with reasoning, Gemini's thought
signatures); the real recordings beside the repository are read where present.
"""

from __future__ import annotations

import json
from itertools import pairwise

import pytest
from test_wire_formats import REALSTREAMS, _recordings, anthropic_sse, chunk, reads_of, sse

from llm_streamscope.wire.events import Read
from llm_streamscope.wire.formats import decode


def covered_end_to_end(decoded) -> bool:
    """Whether the events tile the body: each byte in exactly one event."""
    events = decoded.events
    return (
        events[0].byte_start == 0
        and events[-1].byte_end == decoded.body_bytes
        and all(a.byte_end == b.byte_start for a, b in pairwise(events))
    )


@pytest.mark.parametrize("row", _recordings())
@pytest.mark.parametrize("read_size", [None, 997, 7])
def test_every_byte_of_every_real_body_belongs_to_one_event(row, read_size):
    assert REALSTREAMS is not None
    body = (REALSTREAMS / row["file"]).read_bytes()
    reads = [Read(None, body)] if read_size is None else reads_of(body, read_size)
    decoded = decode(reads)
    assert covered_end_to_end(decoded)
    if read_size is not None:  # an event's time is still that of its last byte's read
        assert all(e.t_ns == ((e.byte_end - 1) // read_size) * 1000 for e in decoded.events)
        assert all(e.first_read == e.byte_start // read_size for e in decoded.events)


OPENROUTER_BODY = b": OPENROUTER PROCESSING\n\n" + sse(
    {
        "id": "gen-1",
        "model": "openai/o3",
        "object": "chat.completion.chunk",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "role": "assistant",
                    "content": "",
                    "reasoning": None,
                    "reasoning_details": [
                        {"type": "reasoning.encrypted", "data": "gAAAA", "index": 0}
                    ],
                },
            }
        ],
    },
    chunk({"role": "assistant", "content": "Hi"}),
    "[DONE]",
)


def test_openrouter_comment_owns_its_blank_line_and_encrypted_reasoning_is_named():
    decoded = decode([Read(None, OPENROUTER_BODY)])
    assert decoded.labels == ("keep-alive", "encrypted-reasoning", "text", "done")
    comment = decoded.events[0]
    assert (comment.byte_start, comment.byte_end) == (0, len(b": OPENROUTER PROCESSING\n\n"))
    assert covered_end_to_end(decoded)


@pytest.mark.parametrize(
    ("gaps", "framing"),
    [
        (b"\xef\xbb\xbf\n\n" + sse(chunk({"content": "a"})) + b"\n\n" + sse(chunk({})), "sse"),
        (b'[{"candidates": []},\r\n {"candidates": []}\r\n]\r\n', "json-array"),
        (
            b'\n{"model":"m","created_at":"t","message":{}}\n\n\n{"model":"m","created_at":"t"'
            b',"message":{}}\n\n',
            "ndjson",
        ),
    ],
)
def test_bytes_between_events_belong_to_one_of_them(gaps, framing):
    decoded = decode(reads_of(gaps, 3))
    assert decoded.framing == framing and decoded.error is None
    assert covered_end_to_end(decoded)


def test_usage_counts_wherever_it_rides():
    """DeepSeek puts usage in the last choice chunk, beside the finish."""
    last = chunk({"content": ""}, finish="stop", usage={"prompt_tokens": 5, "completion_tokens": 2})
    decoded = decode([Read(None, sse(chunk({"content": "Hi"}), last, "[DONE]"))])
    assert decoded.labels == ("text", "finish", "done")
    assert decoded.carried(1) == ("finish", "usage")
    assert decoded.label_counts() == {"text": 1, "finish": 1, "usage": 1, "done": 1}
    assert decoded.usage_output == 2


def test_anthropic_signature_and_citations_are_named():
    body = anthropic_sse(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking"}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "thinking_delta", "thinking": "Hmm."}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "citations_delta", "citation": {"cited_text": "x"}}},
        {"type": "content_block_start", "index": 2,
         "content_block": {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va"}},
    )  # fmt: skip
    decoded = decode([Read(None, body)])
    assert decoded.labels == ("other", "reasoning", "signature", "citation", "encrypted-reasoning")


def test_gemini_thought_signature_is_named_beside_the_finish():
    last = {
        "candidates": [
            {"content": {"parts": [{"text": "", "thoughtSignature": "CiIB0e2K"}]},
             "finishReason": "STOP"}
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4},
        "modelVersion": "gemini-2.5-pro",
    }  # fmt: skip
    first = {"candidates": [{"content": {"parts": [{"text": "Hi", "thoughtSignature": "Ci"}]}}]}
    decoded = decode([Read(None, sse(first, last))])
    assert decoded.labels == ("text", "signature")
    assert decoded.carried(0) == ("text", "signature")
    assert decoded.carried(1) == ("signature", "finish", "usage")


def responses(*events: dict) -> bytes:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


def test_responses_summary_parts_stay_apart_and_encrypted_reasoning_is_named():
    parts = [("**Crossing**\n\nLook both ways.", 0), ("**Explaining**\n\nWalk.", 1)]
    body = responses(
        {"type": "response.created", "response": {"model": "o3"}},
        {"type": "response.output_item.added",
         "item": {"id": "rs_1", "type": "reasoning", "encrypted_content": "gAAAAB"}},
        *(
            {"type": "response.reasoning_summary_text.delta", "item_id": "rs_1",
             "summary_index": k, "delta": piece}
            for text, k in parts
            for piece in (text[:10], text[10:])
        ),
        {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "Go."},
    )  # fmt: skip
    decoded = decode([Read(None, body)])
    assert decoded.labels[:2] == ("start", "encrypted-reasoning")
    reasoning = [p for p in decoded.pieces if p.kind == "reasoning"]
    streams: dict = {}
    for p in reasoning:
        streams[p.tool_call_id] = streams.get(p.tool_call_id, "") + p.text
    # Each part its own text, as the provider keeps them: no title runs into a sentence.
    assert list(streams.values()) == [text for text, _ in parts]
    assert list(streams) == ["summary 1", "summary 2"]
