"""The simulator's Gemini route over a raw socket: the two framings, gzip, thoughts, usage, errors.

End to end through llm-gemini (which needs an https proxy) is in test_wire_tap.py.
"""

from __future__ import annotations

import json
import socket
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from test_sim import dechunk

from llm_streamscope.sim.profiles import PROFILES
from llm_streamscope.sim.server import SimServer
from llm_streamscope.sim.texts import count_tokens, sample_text

MODEL = "gemini-2.5-flash"
PATH = f"/v1beta/models/{MODEL}:streamGenerateContent"


@pytest.fixture(scope="module")
def server() -> Iterator[SimServer]:
    with SimServer(defaults={"speed": 0, "seed": 2}) as srv:
        yield srv


def post(port: int, body: Any, query: str = "", gzip: bool = False) -> bytes:
    """One request over a plain socket; the raw response bytes."""
    data = json.dumps(body).encode()
    extra = b"Accept-Encoding: gzip, deflate\r\n" if gzip else b""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST %s%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (PATH.encode(), query.encode(), extra, len(data), data)
        )
        parts = []
        while chunk := sock.recv(65536):
            parts.append(chunk)
    return b"".join(parts)


def request(text: str = "hi", **config: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    if config:
        body["generationConfig"] = config
    return body


def parts_of(elements: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        ("reasoning" if p.get("thought") else "text", p["text"])
        for e in elements
        for p in e["candidates"][0]["content"]["parts"]
    ]


def test_json_array_stream_has_the_real_shape(server: SimServer) -> None:
    headers, chunks = dechunk(post(server.port, request("Why?")))
    assert headers["content-type"] == "application/json; charset=UTF-8"
    assert "content-encoding" not in headers
    log = server.send_log(server.last_completion_id or "")
    assert log.api == "generateContent" and len(log.id) == 23
    # one element per HTTP chunk: "[" first, ",\r\n" before the others, "\n" after each, "]"
    assert chunks[0].startswith(b'[{\n  "candidates": [\n') and chunks[-1] == b"]"
    assert all(c.startswith(b",\r\n{\n") and c.endswith(b"}\n") for c in chunks[1:-1])
    elements = json.loads(b"".join(chunks))
    assert len(elements) == len(chunks) - 1 == len(log.chunks)
    assert parts_of(elements) == [("text", c) for c in log.chunks]
    assert log.chunks == PROFILES["gemini-flash"].cut(sample_text("prose"), seed=2)
    last = elements[-1]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert all("finishReason" not in e["candidates"][0] for e in elements[:-1])
    assert {e["modelVersion"] for e in elements} == {MODEL}
    assert {e["responseId"] for e in elements} == {log.id}
    usage = last["usageMetadata"]
    assert usage["promptTokenCount"] == count_tokens("Why?")
    assert usage["candidatesTokenCount"] == count_tokens(log.content()) == log.completion_tokens
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]


def test_alt_sse_is_crlf_framed_one_event_per_chunk(server: SimServer) -> None:
    headers, chunks = dechunk(post(server.port, request(), "?alt=sse"))
    assert headers["content-type"] == "text/event-stream"
    assert all(c.startswith(b"data: {") and c.endswith(b"}\r\n\r\n") for c in chunks)
    assert b'"candidates": [{"content": {"parts": [{"text": ' in chunks[0]
    elements = [json.loads(c[6:]) for c in chunks]
    log = server.send_log(server.last_completion_id or "")
    assert parts_of(elements) == [("text", c) for c in log.chunks]


def test_gzip_chunks_decompress_as_they_arrive(server: SimServer) -> None:
    headers, chunks = dechunk(post(server.port, request(), gzip=True))
    assert headers["content-encoding"] == "gzip"
    z = zlib.decompressobj(16 + zlib.MAX_WBITS)
    pieces = [z.decompress(c) for c in chunks]
    # every element is whole as soon as its chunk is in: nothing waits in the compressor
    assert pieces[0].startswith(b"[{") and pieces[0].endswith(b"}\n")
    assert z.eof and b"".join(pieces).endswith(b"}\n]")
    log = server.send_log(server.last_completion_id or "")
    assert parts_of(json.loads(b"".join(pieces))) == [("text", c) for c in log.chunks]


def test_thoughts_stream_first_and_count_as_thoughts(server: SimServer) -> None:
    thinking = {"thinkingConfig": {"includeThoughts": True}}
    _, chunks = dechunk(post(server.port, request(**thinking)))
    elements = json.loads(b"".join(chunks))
    got = parts_of(elements)
    thoughts = [t for k, t in got if k == "reasoning"]
    assert "".join(thoughts) == sample_text("thinking")
    assert got == [("reasoning", t) for t in thoughts] + [
        ("text", t) for k, t in got[len(thoughts) :]
    ]
    usage = elements[-1]["usageMetadata"]
    assert usage["thoughtsTokenCount"] == count_tokens(sample_text("thinking"))
    # thinkingBudget 0 turns thinking off
    off = {"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 0}}
    _, chunks = dechunk(post(server.port, request(**off)))
    assert {k for k, _ in parts_of(json.loads(b"".join(chunks)))} == {"text"}


def test_max_output_tokens_ends_with_max_tokens(server: SimServer) -> None:
    _, chunks = dechunk(post(server.port, request(maxOutputTokens=30)))
    elements = json.loads(b"".join(chunks))
    assert elements[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert elements[-1]["usageMetadata"]["candidatesTokenCount"] == 30


@pytest.mark.parametrize(
    ("body", "query", "message"),
    [
        ({"contents": []}, "", "contents is not specified"),
        (request(maxOutputTokens=0), "?alt=sse", "max_output_tokens"),
        ({**request(), "streamscope": {"error": 503}}, "", "error 503"),
    ],
)
def test_errors_are_google_shaped(server: SimServer, body: Any, query: str, message: str) -> None:
    raw = post(server.port, body, query)
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    decoded = json.loads(payload)
    # llm-gemini reads the JSON array's one element; alt=sse gets the bare object
    error = (decoded if query else decoded[0])["error"]
    assert error["code"] == status and message in error["message"]
    assert error["status"] == {400: "INVALID_ARGUMENT", 503: "UNAVAILABLE"}[status]
