"""The simulator: profiles (pure), the loopback server (raw HTTP) and the llm model (real client).

Every request goes over real loopback HTTP with ``speed=0``: no sleeping, and no
assertion on wall-clock time. The timing test works on generated numbers.
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import subprocess
import sys
from typing import Any

import llm
import openai
import pydantic
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_streamscope.sim import profiles, server, texts
from llm_streamscope.sim.model import SimChat
from llm_streamscope.sim.profiles import PROFILES
from llm_streamscope.sim.server import SimServer, get_server
from llm_streamscope.sim.texts import count_tokens, sample_names, sample_text

SAMPLES = ("code", "multilingual", "prose")


@pytest.fixture(scope="module")
def model() -> llm.Model:
    return llm.get_model("streamscope-sim")


def completion_id(response: llm.Response) -> str:
    assert response.response_json is not None
    return str(response.response_json["id"])


# --------------------------------------------------------------------------
# Samples


def test_samples_load_from_the_package() -> None:
    assert set(SAMPLES) <= set(sample_names())
    sizes = {name: len(sample_text(name)) for name in SAMPLES}
    assert 2000 <= sizes["prose"] <= 2600
    assert 1800 <= sizes["code"] <= 2500
    assert 1300 <= sizes["multilingual"] <= 1700


def test_multilingual_sample_has_the_hard_cases() -> None:
    text = sample_text("multilingual")
    for needle in (
        "e\u0301",
        "👩\u200d💻",
        "👨\u200d👩\u200d👧\u200d👦",
        "🏳\ufe0f\u200d🌈",
        "👋🏽",
    ):
        assert needle in text
    assert any("\u4e00" <= c <= "\u9fff" for c in text)  # CJK
    assert any("\uac00" <= c <= "\ud7a3" for c in text)  # Hangul
    assert any("\u0590" <= c <= "\u06ff" for c in text)  # Hebrew / Arabic


# --------------------------------------------------------------------------
# Profiles (pure)


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("name", SAMPLES)
def test_every_profile_cuts_back_to_the_text(profile: str, name: str) -> None:
    text = sample_text(name)
    chunks = PROFILES[profile].cut(text, seed=7)
    assert "".join(chunks) == text
    assert all(chunks)


def test_gpt_4o_mini_sends_one_token_per_chunk_for_ascii_prose() -> None:
    text = sample_text("prose")
    chunks = PROFILES["gpt-4o-mini"].cut(text)
    assert len(chunks) == count_tokens(text)
    assert all(count_tokens(c) == 1 for c in chunks)


def test_gpt_4o_mini_merges_partial_characters_into_valid_utf8() -> None:
    text = sample_text("multilingual")
    chunks = PROFILES["gpt-4o-mini"].cut(text)
    tokens = count_tokens(text)
    # Some tokens are pieces of one character: they were merged, never split.
    assert len(chunks) < tokens
    assert sum(count_tokens(c) for c in chunks) >= tokens - 5
    for chunk in chunks:
        chunk.encode("utf-8")  # a str that round-trips: no lone surrogates
        assert "\ufffd" not in chunk
    # A chunk holds several tokens only when a character needed them.
    multi = [c for c in chunks if count_tokens(c) > 1]
    assert multi and all(any(ord(ch) > 0x7FF for ch in c) for c in multi)


def test_claude_haiku_groups_about_2_6_tokens_per_delta() -> None:
    text = sample_text("prose") * 4
    chunks = PROFILES["claude-haiku"].cut(text, seed=1)
    ratio = count_tokens(text) / len(chunks)
    assert 2.3 <= ratio <= 2.9


def test_gemini_flash_cuts_about_100_characters_mid_token() -> None:
    text = sample_text("prose") * 4
    profile = PROFILES["gemini-flash"]
    chunks = profile.cut(text, seed=1)
    assert 85 <= len(text) / len(chunks) <= 115
    # Cuts ignore token boundaries: many chunks end inside a token.
    tt = texts.tokenize(text)
    ends = set(tt.token_ends)
    lay = profiles.layout(text, profile, 1)
    inside = [p for p in lay.points[:-1] if p not in ends]
    assert len(inside) >= len(chunks) // 3


@pytest.mark.parametrize("name", SAMPLES)
def test_subtoken_cuts_inside_tokens_never_across_them(name: str) -> None:
    text = sample_text(name)
    profile = PROFILES["subtoken"]
    lay = profiles.layout(text, profile, 2)
    tt = lay.tokenized
    ends = set(tt.token_ends)
    inside = [p for p in lay.points if p not in ends]
    assert len(inside) >= len(lay.points) // 3  # most tokens arrive in pieces
    # every token end is a chunk end, unless o200k cut a character there
    for end in tt.token_ends:
        if texts._is_char_boundary(tt.data, end):
            assert end in lay.points
    assert all(1 <= len(c) <= 3 or count_tokens(c) > 1 for c in lay.chunks)


def test_subtoken_chunks_split_tokens_in_the_alignment() -> None:
    from llm.cli import cli

    args = ["-o", "profile", "subtoken", "-o", "speed", "0", "-o", "max_tokens", "40"]
    result = CliRunner().invoke(
        cli, ["streamscope", "-m", "streamscope-sim", *args, "--json", "hi"]
    )
    assert result.exit_code == 0, result.output
    (doc,) = json.loads(result.stdout)["responses"]
    stats = doc["stats"]
    assert stats["tokens"] == 40 and stats["chunks"] > 80
    assert stats["sub_token_chunks"] > 0 and stats["split_tokens"] > 20
    assert stats["tokens_per_chunk"]["max"] <= 1  # no chunk completes two tokens


@pytest.mark.parametrize("name", SAMPLES)
def test_words_sends_one_word_per_chunk(name: str) -> None:
    text = sample_text(name)
    chunks = PROFILES["words"].cut(text)
    assert all(len(c.split()) == 1 for c in chunks)
    assert len(chunks) == len(text.split())
    # spaces lead a word (" did"), line ends close one ("?\n\n"), as Ollama's lines do
    assert not any(c.startswith("\n") for c in chunks[1:])
    assert not any(c.endswith((" ", "\t")) for c in chunks[:-1])
    assert PROFILES["words"].cut("Why did\n\nit go? ") == ["Why", " did\n\n", "it", " go? "]


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=120), st.integers(0, 3))
def test_subtoken_and_words_cut_any_text(text: str, seed: int) -> None:
    """Any text, whitespace and emoji included: the chunks join back to it, and keep
    their shape (no subtoken chunk spans a token end, every words chunk holds one word)."""
    subtoken = profiles.layout(text, PROFILES["subtoken"], seed)
    assert "".join(subtoken.chunks) == text and all(subtoken.chunks)
    tt = subtoken.tokenized
    starts = (0, *subtoken.points[:-1])
    for start, end in zip(starts, subtoken.points):
        inside = [e for e in tt.token_ends if start < e < end]
        assert all(not texts._is_char_boundary(tt.data, e) for e in inside)
    words = PROFILES["words"].cut(text)
    assert "".join(words) == text and all(words)
    if text.split():
        assert all(len(c.split()) == 1 for c in words)


def test_same_seed_same_chunks_and_delays() -> None:
    text = sample_text("multilingual")
    for profile in PROFILES.values():
        assert profile.cut(text, seed=3) == profile.cut(text, seed=3)
        assert profile.gaps(500, seed=3) == profile.gaps(500, seed=3)
        assert profile.ttft(3) == profile.ttft(3)
        assert profile.gaps(500, seed=3) != profile.gaps(500, seed=4)
    for name in ("claude-haiku", "gemini-flash"):
        assert PROFILES[name].cut(text, seed=3) != PROFILES[name].cut(text, seed=4)


def test_gpt_4o_mini_timing_matches_published_figures() -> None:
    profile = PROFILES["gpt-4o-mini"]
    gaps_ms = [g * 1000 for g in profile.gaps(20_000, seed=2024)]
    mean = statistics.fmean(gaps_ms)
    slow = sum(g > 50 for g in gaps_ms) / len(gaps_ms)
    assert 12.0 <= mean <= 14.0, mean
    assert 0.05 <= slow <= 0.09, slow
    assert max(gaps_ms) <= 130.0
    assert min(gaps_ms) > 0
    ttfts_ms = [profile.ttft(seed) * 1000 for seed in range(2000)]
    assert max(ttfts_ms) < 100.0
    assert min(ttfts_ms) >= 40.0


@pytest.mark.parametrize(
    ("name", "ttft_range", "gap_range"),
    [
        ("claude-haiku", (400, 700), (25, 40)),
        ("gemini-flash", (500, 900), (100, 250)),
        ("subtoken", (40, 95), (4.0, 5.5)),  # gpt-4o-mini's 13 ms a token, at 0.35 a chunk
        ("words", (250, 400), (31.0, 33.0)),  # the llama3 recording's steady 32 ms
    ],
)
def test_other_profiles_timing(
    name: str, ttft_range: tuple[float, float], gap_range: tuple[float, float]
) -> None:
    profile = PROFILES[name]
    gaps_ms = [g * 1000 for g in profile.gaps(20_000, seed=5)]
    assert gap_range[0] <= statistics.fmean(gaps_ms) <= gap_range[1]
    ttfts_ms = [profile.ttft(seed) * 1000 for seed in range(500)]
    assert ttft_range[0] <= min(ttfts_ms) and max(ttfts_ms) <= ttft_range[1]


def test_plan_cycles_and_cuts_at_max_tokens() -> None:
    text = sample_text("prose")
    gpt = PROFILES["gpt-4o-mini"]
    n = count_tokens(text)
    p = profiles.plan(text, gpt, chunks=2 * n + 10)
    assert p.n_chunks == 2 * n + 10 and p.finish_reason == "stop"
    assert p.text().startswith(text + text) and p.completion_tokens == 2 * n + 10
    p = profiles.plan(text, gpt, max_tokens=10)
    assert p.n_chunks == 10 and p.finish_reason == "length" and p.completion_tokens == 10
    # Gemini's last chunk is shortened to end exactly after the 30th token.
    p = profiles.plan(text, PROFILES["gemini-flash"], seed=1, max_tokens=30)
    assert p.finish_reason == "length"
    assert count_tokens(p.text()) == 30 == p.completion_tokens
    assert profiles.plan(text, gpt, chunks=0).n_chunks == 0


# --------------------------------------------------------------------------
# The model, through llm's real OpenAI client


def test_stream_events_equal_the_sample_and_the_send_log(model: llm.Model) -> None:
    response = model.prompt("hi", speed=0)
    events = list(response.stream_events())
    assert all(e.type == "text" for e in events)
    assert "".join(e.chunk for e in events) == sample_text("prose")
    log = get_server().send_log(completion_id(response))
    assert len(events) == len(log.chunks) == len(log.sent_ns)
    assert [e.chunk for e in events] == log.chunks
    assert log.status == "complete" and log.finish_reason == "stop"
    assert log.sent_ns == sorted(log.sent_ns) and log.sent_ns[0] >= log.t0_ns


@pytest.mark.parametrize("name", SAMPLES)
def test_usage_is_the_o200k_token_count(model: llm.Model, name: str) -> None:
    prompt = "Count the tokens, please: <|endoftext|>"
    response = model.prompt(prompt, speed=0, text=name)
    assert response.text() == sample_text(name)
    usage = response.usage()
    assert usage.output == count_tokens(sample_text(name))
    assert usage.input == count_tokens(prompt)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_streams_through_llm(model: llm.Model, profile: str) -> None:
    response = model.prompt("hi", speed=0, profile=profile, text="multilingual", seed=9)
    chunks = [e.chunk for e in response.stream_events()]
    assert chunks == PROFILES[profile].cut(sample_text("multilingual"), seed=9)


def test_chunks_option_sends_exactly_n(model: llm.Model) -> None:
    n = 1234  # more than one pass over the prose (474 tokens)
    response = model.prompt("hi", speed=0, chunks=n)
    events = list(response.stream_events())
    assert len(events) == n
    assert response.usage().output == n
    log = get_server().send_log(completion_id(response))
    assert len(log.sent_ns) == n


def test_max_tokens_finishes_with_length(model: llm.Model) -> None:
    response = model.prompt("hi", speed=0, max_tokens=7)
    events = list(response.stream_events())
    assert len(events) == 7
    assert response.response_json is not None
    assert response.response_json["finish_reason"] == "length"
    assert response.usage().output == 7


def test_drop_after_raises_after_exactly_n_events(model: llm.Model) -> None:
    response = model.prompt("hi", speed=0, drop_after=5)
    seen = []
    with pytest.raises(openai.APIConnectionError):
        for event in response.stream_events():
            seen.append(event.chunk)
    assert len(seen) == 5
    log = get_server().send_log(get_server().last_completion_id or "")
    assert log.status == "dropped" and log.chunks == seen


def test_error_option_raises_the_openai_error(model: llm.Model) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        model.prompt("hi", speed=0, error=400).text()
    assert info.value.status_code == 400
    assert "simulated by streamscope-sim" in info.value.message
    assert isinstance(info.value.body, dict) and info.value.body["type"] == "invalid_request_error"


def test_retryable_errors_are_retried_quickly(model: llm.Model) -> None:
    srv = get_server()
    before = srv.post_count
    with pytest.raises(openai.RateLimitError):
        model.prompt("hi", speed=0, error=429).text()
    assert srv.post_count - before == 3  # the openai client's two retries, 1 ms apart


def test_non_streaming(model: llm.Model) -> None:
    response = model.prompt("hi", speed=0, stream=False, text="code")
    assert response.text() == sample_text("code")
    assert response.usage().output == count_tokens(sample_text("code"))
    log = get_server().send_log(completion_id(response))
    assert log.stream is False and log.chunks == [sample_text("code")]


def test_bad_option_values_are_rejected(model: llm.Model) -> None:
    with pytest.raises(pydantic.ValidationError, match="known profiles: gpt-4o-mini"):
        model.prompt("hi", profile="gpt-9")
    with pytest.raises(pydantic.ValidationError, match="known texts: code, multilingual"):
        model.prompt("hi", text="poetry")
    with pytest.raises(pydantic.ValidationError, match="greater than or equal to 0"):
        model.prompt("hi", speed=-1)
    with pytest.raises(pydantic.ValidationError):
        model.prompt("hi", error=200)


def test_model_declares_its_encoding_and_needs_no_key() -> None:
    assert SimChat.tiktoken_encoding == "o200k_base"
    chat = SimChat()
    assert chat.model_id == "streamscope-sim" and chat.needs_key is None and chat.can_stream


def test_prepare_starts_the_server_and_tokenizes_the_samples(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    SimChat().prepare()
    assert server.server_started()

    def no_tokenizer() -> None:
        raise AssertionError("tokenizer work before the first token")

    monkeypatch.setattr(texts, "encoding", no_tokenizer)
    for name in SAMPLES:
        for profile in PROFILES.values():
            plan = profiles.plan(sample_text(name), profile)  # seed None: fresh random layouts
            assert next(plan.chunks())


# --------------------------------------------------------------------------
# The CLI


def test_cli_prints_the_prose() -> None:
    from llm.cli import cli

    result = CliRunner().invoke(cli, ["-m", "streamscope-sim", "-o", "speed", "0", "hi"])
    assert result.exit_code == 0, result.output
    assert result.output == sample_text("prose") + "\n"


def test_cli_rejects_bad_options() -> None:
    from llm.cli import cli

    result = CliRunner().invoke(cli, ["-m", "streamscope-sim", "-o", "profile", "nope", "hi"])
    assert result.exit_code != 0
    assert "known profiles: gpt-4o-mini, claude-haiku, gemini-flash" in result.output


def test_llm_models_lists_the_model_without_starting_a_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from llm.cli import cli

    monkeypatch.setattr(server, "_shared", None)
    result = CliRunner().invoke(cli, ["models", "--options"])
    assert result.exit_code == 0, result.output
    assert "Streamscope simulator: streamscope-sim" in result.output
    assert not server.server_started()


# --------------------------------------------------------------------------
# The server over raw HTTP (no SDK)


def raw_request(port: int, body: dict[str, Any], path: str = "/v1/chat/completions") -> bytes:
    """Send one request over a plain socket and return the raw response bytes."""
    data = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (path.encode(), len(data), data)
        )
        parts = []
        while chunk := sock.recv(65536):
            parts.append(chunk)
    return b"".join(parts)


def dechunk(raw: bytes) -> tuple[dict[str, str], list[bytes]]:
    """Split a chunked HTTP response into its headers and its chunk payloads, checking framing."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    assert headers["transfer-encoding"] == "chunked"
    chunks: list[bytes] = []
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        payload, rest = rest[:size], rest[size:]
        assert rest[:2] == b"\r\n"
        rest = rest[2:]
        if size == 0:
            assert rest == b""
            return headers, chunks
        chunks.append(payload)


def decode_and_inspect(chunks: list[bytes], path: Any) -> tuple[Any, dict[str, Any]]:
    """A captured body as our wire decoder reads it, and the one response document of
    ``llm streamscope inspect --json`` on it, written to ``path``."""
    from llm.cli import cli

    from llm_streamscope.wire.events import Read
    from llm_streamscope.wire.formats import decode

    decoded = decode([Read(None, c) for c in chunks])
    path.write_bytes(b"".join(chunks))
    result = CliRunner().invoke(cli, ["streamscope", "inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    (doc,) = json.loads(result.stdout)["responses"]
    return decoded, doc


@pytest.fixture(scope="module")
def own_server() -> Any:
    with SimServer() as srv:
        yield srv


@pytest.mark.parametrize("include_usage", [True, False])
def test_wire_format(own_server: SimServer, include_usage: bool) -> None:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say something"}],
        "stream": True,
        "streamscope": {"speed": 0, "text": "multilingual"},
    }
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    headers, chunks = dechunk(raw_request(own_server.port, body))
    assert headers["content-type"].startswith("text/event-stream")
    # One SSE event per HTTP chunk, read line by line.
    events = []
    for payload in chunks:
        text = payload.decode("utf-8")
        lines = text.split("\n")
        assert lines[0].startswith("data: ") and lines[1:] == ["", ""], text
        events.append(lines[0][len("data: ") :])
    assert events[-1] == "[DONE]"
    objs = [json.loads(e) for e in events[:-1]]
    ids = {o["id"] for o in objs}
    assert len(ids) == 1 and next(iter(ids)).startswith("chatcmpl-")
    for o in objs:
        assert o["object"] == "chat.completion.chunk" and o["model"] == "gpt-4o-mini"
        assert {"created", "service_tier", "system_fingerprint", "obfuscation"} <= set(o)
        assert ("usage" in o) is include_usage
    role, *content, finish = objs[:-1] if include_usage else objs
    assert role["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": "", "refusal": None},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    assert all(list(c["choices"][0]["delta"]) == ["content"] for c in content)
    assert all(c["choices"][0]["finish_reason"] is None for c in content)
    text = "".join(c["choices"][0]["delta"]["content"] for c in content)
    assert text == sample_text("multilingual")
    assert finish["choices"][0]["delta"] == {} and finish["choices"][0]["finish_reason"] == "stop"
    log = own_server.send_log(role["id"])
    assert len(log.chunks) == len(content)
    if include_usage:
        usage_chunk = objs[-1]
        assert usage_chunk["choices"] == []
        usage = usage_chunk["usage"]
        assert usage["completion_tokens"] == count_tokens(text)
        assert usage["prompt_tokens"] == count_tokens("Say something")
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}
        assert usage["completion_tokens_details"]["reasoning_tokens"] == 0
        assert all(o["usage"] is None for o in objs[:-1])
    else:
        assert all(o["choices"] for o in objs)
    # Raw UTF-8 inside the JSON strings, as OpenAI sends it.
    wire = b"".join(chunks)
    assert "é".encode() in wire and "語".encode() in wire and b"\\u" not in wire


def test_obfuscation_pads_short_content_to_a_constant(own_server: SimServer) -> None:
    body = {"model": "m", "messages": [], "stream": True, "streamscope": {"speed": 0}}
    _, chunks = dechunk(raw_request(own_server.port, body))
    objs = [json.loads(c[6:]) for c in chunks[1:-2]]
    totals = {
        len(json.dumps(o["choices"][0]["delta"]["content"], ensure_ascii=False))
        - 2
        + len(o["obfuscation"])
        for o in objs
    }
    base = min(totals)
    assert 9 <= base <= 13 and all((t - base) % 16 == 0 for t in totals)


def test_raw_errors_are_openai_shaped(own_server: SimServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", own_server.port)
    conn.request(
        "POST",
        "/v1/chat/completions",
        json.dumps({"model": "m", "messages": [], "streamscope": {"error": 503}}),
    )
    response = conn.getresponse()
    assert response.status == 503 and response.getheader("retry-after-ms") == "1"
    error = json.loads(response.read())["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "server_error"
    conn.request(
        "POST",
        "/v1/chat/completions",
        json.dumps({"model": "m", "messages": [], "streamscope": {"profile": "nope"}}),
    )
    response = conn.getresponse()
    assert response.status == 400
    error = json.loads(response.read())["error"]
    assert error["param"] == "streamscope.profile" and "gpt-4o-mini" in error["message"]
    conn.request("POST", "/v1/nowhere", "{}")
    response = conn.getresponse()
    assert (
        response.status == 404 and "Invalid URL" in json.loads(response.read())["error"]["message"]
    )
    conn.close()


def test_non_streaming_raw(own_server: SimServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", own_server.port)
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 4,
        "streamscope": {"speed": 0},
    }
    conn.request("POST", "/v1/chat/completions", json.dumps(body))
    response = conn.getresponse()
    data = json.loads(response.read())
    conn.close()
    assert data["object"] == "chat.completion"
    choice = data["choices"][0]
    assert choice["finish_reason"] == "length" and choice["message"]["role"] == "assistant"
    assert data["usage"]["completion_tokens"] == 4 == count_tokens(choice["message"]["content"])


def test_sendlog_endpoint(own_server: SimServer) -> None:
    body = {"model": "m", "messages": [], "stream": True, "streamscope": {"speed": 0, "chunks": 50}}
    _, chunks = dechunk(raw_request(own_server.port, body))
    cid = json.loads(chunks[0][6:])["id"]
    assert own_server.last_completion_id == cid
    conn = http.client.HTTPConnection("127.0.0.1", own_server.port)
    conn.request("GET", f"/v1/streamscope/sendlog/{cid}")
    response = conn.getresponse()
    assert response.status == 200
    log = json.loads(response.read())
    assert log["id"] == cid and log["status"] == "complete"
    assert len(log["sent_ns"]) == len(log["chunks"]) == 50
    assert log["chunks"] == own_server.send_log(cid).chunks
    assert log["t0_ns"] <= log["sent_ns"][0]
    conn.request("GET", "/v1/streamscope/sendlog/chatcmpl-nope")
    response = conn.getresponse()
    assert response.status == 404 and "error" in json.loads(response.read())
    conn.close()


def test_keep_alive_serves_several_requests_on_one_connection(own_server: SimServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", own_server.port)
    body = json.dumps(
        {"model": "m", "messages": [], "stream": True, "streamscope": {"speed": 0, "chunks": 3}}
    )
    for _ in range(3):
        conn.request("POST", "/v1/chat/completions", body)
        response = conn.getresponse()
        assert response.read().endswith(b"data: [DONE]\n\n")
    conn.close()


def test_get_server_is_shared() -> None:
    assert get_server() is get_server()
    assert get_server().base_url.startswith("http://127.0.0.1:")


def test_standalone_server_prints_its_url() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_streamscope.sim", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        body = {"model": "m", "messages": [], "stream": True, "streamscope": {"speed": 0}}
        _, chunks = dechunk(raw_request(port, body))
        assert chunks[-1] == b"data: [DONE]\n\n"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --------------------------------------------------------------------------
# Tool calls (OpenAI's format), through llm's own CLI and client


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@pytest.fixture
def request_bodies(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The JSON bodies of the chat requests the simulator parses, in order."""
    bodies: list[dict[str, Any]] = []
    parse = server.SimRequest.parse.__func__  # type: ignore[attr-defined]

    def recording(cls: type, body: Any, defaults: Any = None) -> server.SimRequest:
        bodies.append(body)
        return parse(cls, body, defaults)  # type: ignore[no-any-return]

    monkeypatch.setattr(server.SimRequest, "parse", classmethod(recording))
    return bodies


def test_llm_runs_a_tool_chain_end_to_end(request_bodies: list[dict[str, Any]]) -> None:
    from llm.cli import cli

    function = "def multiply(a: int, b: int) -> int:\n    return a * b\n"
    args = ["-m", "streamscope-sim", "-o", "speed", "0", "-o", "max_tokens", "12"]
    result = CliRunner().invoke(cli, [*args, "--functions", function, "What is 3 times 3?"])
    assert result.exit_code == 0, result.output
    twelve = profiles.plan(sample_text("prose"), PROFILES["gpt-4o-mini"], max_tokens=12)
    assert result.stdout == twelve.text() + "\n"
    # Response 1 offered the tool and called it; response 2 carried its result and got text.
    first, second = request_bodies
    assert [t["function"]["name"] for t in first["tools"]] == ["multiply"]
    assert first["stream"] is True and first["messages"][-1]["role"] == "user"
    call, result_message = second["messages"][-2:]
    (tool_call,) = call["tool_calls"]
    assert tool_call["function"] == {"name": "multiply", "arguments": '{"a": 3, "b": 3}'}
    assert tool_call["id"].startswith("call_") and len(tool_call["id"]) == 29
    assert result_message == {"role": "tool", "tool_call_id": tool_call["id"], "content": "9"}
    # llm logged both responses: the call with its arguments, then the answer.
    logged = CliRunner().invoke(cli, ["logs", "--json", "-n", "2"])
    calls, answer = json.loads(logged.output)
    assert [(c["name"], c["arguments"]) for c in calls["tool_calls"]] == [
        ("multiply", {"a": 3, "b": 3})
    ]
    assert answer["tool_results"][0]["output"] == "9" and answer["response"]


def test_llm_time_chain_streams_the_call_then_text() -> None:
    from llm.cli import cli

    srv = get_server()
    args = ["-m", "streamscope-sim", "-o", "speed", "0", "-o", "max_tokens", "8"]
    result = CliRunner().invoke(cli, [*args, "-o", "reasoning", "12", "-T", "llm_time", "Time?"])
    assert result.exit_code == 0, result.output
    eight = profiles.plan(sample_text("prose"), PROFILES["gpt-4o-mini"], max_tokens=8)
    assert result.stdout == eight.text() + "\n"
    answer = srv.send_log(srv.last_completion_id or "")
    assert answer.finish_reason == "length" and set(answer.kinds) == {"text"}
    logged = json.loads(CliRunner().invoke(cli, ["logs", "--json", "-n", "2"]).output)
    call = srv.send_log(logged[0]["response_json"]["id"])
    assert call.kinds == ["tool_call_name", "tool_call_args"]
    assert call.chunks == ["llm_time", "{}"] and call.finish_reason == "tool_calls"
    assert "utc_time" in logged[1]["tool_results"][0]["output"]
    # The hidden reasoning tokens, as llm logs them.
    assert logged[1]["output_tokens"] == 8 + 12
    assert json.loads(logged[1]["token_details"]) == {
        "completion_tokens_details": {"reasoning_tokens": 12}
    }


def test_tool_call_events_equal_the_send_log(model: llm.Model) -> None:
    response = model.prompt("What is 3 times 3?", tools=[multiply], speed=0, seed=1)
    events = list(response.stream_events())
    log = get_server().send_log(completion_id(response))
    assert [(e.type, e.chunk) for e in events] == list(zip(log.kinds, log.chunks))
    name, *args = events
    assert (name.type, name.chunk) == ("tool_call_name", "multiply")
    assert name.tool_call_id.startswith("call_") and {e.tool_call_id for e in args} == {
        name.tool_call_id
    }
    # About a token a piece, as gpt-4o-mini streams arguments.
    assert len(args) == count_tokens('{"a":3,"b":3}') and all(e.chunk for e in args)
    assert json.loads("".join(e.chunk for e in args)) == {"a": 3, "b": 3}
    assert [(c.name, c.arguments) for c in response.tool_calls()] == [
        ("multiply", {"a": 3, "b": 3})
    ]
    # usage counts what streamed: the name's tokens and the arguments'
    assert log.finish_reason == "tool_calls"
    assert response.usage().output == len(args) + count_tokens("multiply")


def test_tool_call_wire_format(own_server: SimServer) -> None:
    schema = {
        "type": "object",
        "properties": {"country": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
        "required": ["country", "unit"],
    }
    tools = [
        {"type": "function", "function": {"name": "forecast", "parameters": schema}},
        {"type": "function", "function": {"name": "other", "parameters": {}}},
    ]
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Weather?"}],
        "tools": tools,
        "stream": True,
        "stream_options": {"include_usage": True},
        "streamscope": {"speed": 0},
    }
    _, chunks = dechunk(raw_request(own_server.port, body))
    assert chunks[-1] == b"data: [DONE]\n\n"
    first, *pieces, finish, usage = [json.loads(c[6:]) for c in chunks[:-1]]
    (call,) = first["choices"][0]["delta"]["tool_calls"]
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert first["choices"][0]["delta"]["content"] is None
    assert call["index"] == 0 and call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"] == {"name": "forecast", "arguments": ""}
    deltas = [p["choices"][0]["delta"]["tool_calls"] for p in pieces]
    assert all(len(d) == 1 and set(d[0]) == {"index", "function"} for d in deltas)
    arguments = "".join(d[0]["function"]["arguments"] for d in deltas)
    assert arguments == '{"country":"example country","unit":"C"}'  # valid for the schema
    assert finish["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    # usage counts what streamed: the tool's name and its arguments
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == count_tokens("forecast") + count_tokens(arguments)
    log = own_server.send_log(first["id"])
    assert log.kinds == ["tool_call_name"] + ["tool_call_args"] * len(pieces)
    assert log.chunks == ["forecast", *(d[0]["function"]["arguments"] for d in deltas)]

    # A tool result last: text, as usual.
    body["messages"] += [
        {"role": "assistant", "content": None, "tool_calls": [{**call, "index": None}]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
    ]
    _, chunks = dechunk(raw_request(own_server.port, body))
    objs = [json.loads(c[6:]) for c in chunks[:-1]]
    text = "".join(o["choices"][0]["delta"].get("content") or "" for o in objs if o["choices"])
    assert text == sample_text("prose") and objs[-2]["choices"][0]["finish_reason"] == "stop"


def test_non_streamed_tool_call(model: llm.Model) -> None:
    response = model.prompt("3 times 3?", tools=[multiply], speed=0, stream=False)
    events = list(response.stream_events())
    assert [(e.type, e.chunk) for e in events] == [
        ("tool_call_name", "multiply"),
        ("tool_call_args", '{"a":3,"b":3}'),
    ]
    assert response.response_json is not None
    (choice,) = response.response_json["choices"]
    assert choice["finish_reason"] == "tool_calls" and "content" not in choice["message"]
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "multiply"
    log = get_server().send_log(completion_id(response))
    assert log.kinds == ["tool_call_name", "tool_call_args"] and log.stream is False


def test_bad_tools_are_400(own_server: SimServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", own_server.port)
    body = {"model": "m", "messages": [], "tools": [{"type": "function"}]}
    conn.request("POST", "/v1/chat/completions", json.dumps(body))
    response = conn.getresponse()
    error = json.loads(response.read())["error"]
    conn.close()
    assert response.status == 400 and error["param"] == "tools"
    assert "tools[0].function.name" in error["message"]


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("--schema", {"name": "example name", "age": 3}),
        ("--schema-multi", {"items": [{"name": "example name", "age": 3}]}),
    ],
)
def test_a_schema_gets_json_valid_for_it(
    request_bodies: list[dict[str, Any]], flag: str, expected: dict[str, Any]
) -> None:
    from llm.cli import cli

    args = ["-m", "streamscope-sim", "-n", "-o", "speed", "0", flag, "name, age int", "a dog"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == expected
    (body,) = request_bodies
    assert body["response_format"]["type"] == "json_schema"
    log = get_server().send_log(get_server().last_completion_id or "")
    assert set(log.kinds) == {"text"} and len(log.chunks) == count_tokens(result.stdout.strip())


def test_attachments_are_accepted(request_bodies: list[dict[str, Any]], tmp_path: Any) -> None:
    from llm.cli import cli

    png = tmp_path / "pixel.png"
    png.write_bytes(
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02"
        b"\x00\x00\x00\x90wS\xde"
    )
    args = ["-m", "streamscope-sim", "-n", "-o", "speed", "0", "-o", "max_tokens", "3"]
    result = CliRunner().invoke(cli, [*args, "-a", str(png), "Describe it"])
    assert result.exit_code == 0, result.output
    (body,) = request_bodies
    text, image = body["messages"][-1]["content"]
    assert text == {"type": "text", "text": "Describe it"}
    assert image["image_url"]["url"].startswith("data:image/png;base64,")


# --------------------------------------------------------------------------
# Hidden reasoning: a think time before the first chunk, reported in usage


def test_reasoning_thinks_before_the_first_chunk_and_reports_its_tokens(
    model: llm.Model,
) -> None:
    response = model.prompt("hi", speed=0, reasoning=40, max_tokens=5)
    events = list(response.stream_events())
    # llm's OpenAI client makes one redacted reasoning event of the usage's reasoning_tokens.
    assert [e.type for e in events] == ["text"] * 5 + ["reasoning"]
    assert events[-1].chunk == "" and events[-1].redacted
    usage = response.usage()
    assert usage.output == 45 and usage.details == {
        "completion_tokens_details": {"reasoning_tokens": 40}
    }
    plain = model.prompt("hi", speed=0, max_tokens=5)
    assert [e.type for e in plain.stream_events()] == ["text"] * 5


def test_reasoning_delay_is_that_many_gaps() -> None:
    from llm_streamscope.sim.options import SimOptions

    thinking = SimOptions.parse({"seed": 3, "reasoning": 100}).delays()
    plain = SimOptions.parse({"seed": 3}).delays()
    assert thinking is not None and plain is not None
    ttft, gaps = next(plain), [next(plain) for _ in range(102)]
    assert next(thinking) == pytest.approx(ttft + sum(gaps[:100]))
    assert [next(thinking), next(thinking)] == gaps[100:]  # then paced as before
    assert SimOptions.parse({"speed": 0, "reasoning": 100}).delays() is None


def test_reasoning_delays_the_first_chunk_over_http(own_server: SimServer) -> None:
    from llm_streamscope.sim.options import SimOptions

    options = {"seed": 2, "speed": 400, "reasoning": 2000, "chunks": 2}
    delays = SimOptions.parse(options).delays()
    assert delays is not None
    planned_ns = next(delays) / 400 * 1e9  # about 65 ms
    body = {"model": "m", "messages": [], "stream": True, "streamscope": options}
    _, chunks = dechunk(raw_request(own_server.port, body))
    log = own_server.send_log(json.loads(chunks[0][6:])["id"])
    assert log.sent_ns[0] - log.t0_ns >= planned_ns > 40e6


# --------------------------------------------------------------------------
# The async model


def test_async_model_streams_from_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from llm.cli import cli

    from llm_streamscope.sim.model import AsyncSimChat

    async_model = llm.get_async_model("streamscope-sim")
    assert isinstance(async_model, AsyncSimChat) and async_model.supports_tools
    monkeypatch.setattr(server, "_shared", None)
    async_model.prepare()  # type: ignore[attr-defined]
    assert server.server_started()

    async def events() -> tuple[Any, list[Any]]:
        response = async_model.prompt("hi", speed=0, profile="claude-haiku", seed=3, chunks=9)
        return response, [e async for e in response.astream_events()]

    response, got = asyncio.run(events())
    log = get_server().send_log(response.response_json["id"])
    assert [e.chunk for e in got] == log.chunks
    assert log.chunks == PROFILES["claude-haiku"].cut(sample_text("prose"), seed=3)[:9]

    eight = profiles.plan(sample_text("prose"), PROFILES["gpt-4o-mini"], max_tokens=8).text()
    args = ["-m", "streamscope-sim", "--async", "-n", "-o", "speed", "0", "-o", "max_tokens", "8"]
    result = CliRunner().invoke(cli, [*args, "hi"])
    assert result.exit_code == 0, result.output
    assert result.output == eight + "\n"
    result = CliRunner().invoke(cli, [*args, "-T", "llm_time", "time?"])
    assert result.exit_code == 0, result.output
    assert result.output == eight + "\n"


# --------------------------------------------------------------------------
# One definition of the simulator's options


def test_one_option_list_for_the_model_the_server_and_the_flags() -> None:
    import click

    from llm_streamscope.cli import serve_command
    from llm_streamscope.sim.options import SIM_OPTIONS

    assert list(SimChat.Options.model_fields) == [*SIM_OPTIONS, "max_tokens"]
    assert "reasoning" in SIM_OPTIONS and "keepalive_ms" in SIM_OPTIONS
    params = serve_command.get_params(click.Context(serve_command))
    own = {"help", "port", "host", "verbose", "serve_format", "replay", "timing"}
    assert {p.name for p in params if not p.name.startswith("_")} - own == set(SIM_OPTIONS)
    # llm's -o gives strings: the model converts them; a request body must send JSON numbers.
    assert SimChat.Options(chunks="3").chunks == 3  # type: ignore[attr-defined]
    srv = SimServer(defaults={"chunks": 2})
    srv.stop()
    with pytest.raises(server.InvalidOption, match="Invalid value for 'chunks'"):
        SimServer(defaults={"chunks": "2"})


@pytest.mark.parametrize(
    ("options", "param", "message"),
    [
        ({"profile": "nope"}, "streamscope.profile", "known profiles: gpt-4o-mini"),
        ({"speed": -1}, "streamscope.speed", "greater than or equal to 0"),
        ({"seed": True}, "streamscope.seed", "valid integer"),
        ({"error": 200}, "streamscope.error", "greater than or equal to 400"),
        ({"colour": 1}, "streamscope", "Unrecognized streamscope option(s): colour; known: seed"),
    ],
)
def test_bad_options_in_a_request_are_400(
    own_server: SimServer, options: dict[str, Any], param: str, message: str
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", own_server.port)
    conn.request(
        "POST",
        "/v1/chat/completions",
        json.dumps({"model": "m", "messages": [], "streamscope": options}),
    )
    response = conn.getresponse()
    error = json.loads(response.read())["error"]
    conn.close()
    assert response.status == 400 and error["param"] == param and message in error["message"]


def test_standalone_flags_are_checked_and_only_given_ones_become_defaults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from llm_streamscope.sim.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(["--stall-after", "-2"])
    assert info.value.code == 2
    assert "Invalid value for '--stall-after'" in capsys.readouterr().err
    from llm_streamscope.sim.options import SimOptions

    given = SimOptions.from_strings({"seed": "4", "speed": "0", "profile": None})
    assert given.model_dump(exclude_unset=True) == {"seed": 4, "speed": 0.0}
