"""The live tap (wire/tap.py) through real clients, and HTTP/1.1 de-framing (wire/http1.py).

Real llm models talk to the simulator over loopback HTTP while a WireTap is
entered: llm's OpenAI client (streamscope-sim, sync and async), llm-anthropic,
and llm-gemini through a TLS-terminating CONNECT proxy (tests/tlsproxy.py),
since llm-gemini only ever asks for https://generativelanguage.googleapis.com.
What the tap recorded, parsed by http1, must carry exactly what the simulator's
send log says it sent.
"""

from __future__ import annotations

import asyncio
import doctest
import gzip
import json
import sys
import time
import zlib
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import httpx2
import llm
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlsproxy import GEMINI_HOST, GEMINI_KEY, TLSProxy, certificate, proxy, tls_proxy

from llm_streamscope.sim.server import SimServer
from llm_streamscope.wire.events import Read, WireError
from llm_streamscope.wire.formats import decode
from llm_streamscope.wire.http1 import KEPT_HEADERS, parse_response, parse_responses
from llm_streamscope.wire.tap import WireLog, WireTap, backend_classes, covers, request_line

__all__ = ["certificate", "proxy", "tls_proxy"]  # fixtures, from tlsproxy
ORIGINAL_CONNECTS = {cls: cls.__dict__["connect_tcp"] for cls in backend_classes()}


@pytest.fixture(scope="module")
def server() -> Iterator[SimServer]:
    with SimServer(defaults={"speed": 0, "seed": 5}) as srv:
        yield srv


@pytest.fixture
def sim_at(server: SimServer, monkeypatch: pytest.MonkeyPatch) -> SimServer:
    """streamscope-sim and llm-anthropic aimed at the module's server."""
    monkeypatch.setenv("STREAMSCOPE_SIM_URL", server.base_url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-dummy")
    return server


# --------------------------------------------------------------------------
# What each format's body carries (just enough to compare with the send log)


def sse_events(body: bytes) -> list[tuple[str, str]]:
    """(event type, data) of each SSE event; CRLF or LF line ends."""
    events = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        lines = block.decode().split("\n")
        data = [line[5:].lstrip(" ") for line in lines if line.startswith("data:")]
        kind = next((line[6:].strip() for line in lines if line.startswith("event:")), "")
        if data:
            events.append((kind, "\n".join(data)))
    return events


def openai_chunks(body: bytes) -> list[str]:
    return [
        choice["delta"]["content"]
        for _, data in sse_events(body)
        if data != "[DONE]"
        for choice in json.loads(data)["choices"]
        if choice["delta"].get("content")
    ]


def anthropic_chunks(body: bytes) -> list[str]:
    return [
        json.loads(data)["delta"]["text"]
        for kind, data in sse_events(body)
        if kind == "content_block_delta" and '"text_delta"' in data
    ]


def gemini_parts(elements: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        ("reasoning" if part.get("thought") else "text", part["text"])
        for element in elements
        for part in element["candidates"][0]["content"]["parts"]
    ]


def check_log(log: WireLog, srv: SimServer, path: str) -> Any:
    """What every tapped plain-HTTP request shares; returns the parsed response."""
    assert (log.method, log.path) == ("POST", path)
    assert (log.host, log.port, log.scheme) == ("127.0.0.1", srv.port, "http")
    assert log.tls_ns is None and log.reused is False
    assert log.connect_ns is not None and log.connected_ns is not None
    assert log.request_ns is not None
    assert "user-agent" not in repr(log).lower()  # request headers are never recorded
    times = [t for t, _ in log.reads]
    assert log.connect_ns <= log.connected_ns <= log.request_ns <= times[0]
    assert times == sorted(times)
    http = log.response()
    assert http is not None and http.status == 200 and http.complete and http.error is None
    assert http.headers_ns == times[0]
    assert {name for name, _ in http.headers} <= KEPT_HEADERS
    assert http.wire_bytes == sum(len(data) for _, data in log.reads)
    return http


# --------------------------------------------------------------------------
# Real clients


def test_openai_client_reads_are_the_sent_stream(sim_at: SimServer) -> None:
    model = llm.get_model("streamscope-sim")
    with WireTap() as tap:
        log = tap.start()
        response = model.prompt("Why does streaming feel fast?", stream=True)
        text = "".join(response)
    http = check_log(log, sim_at, "/v1/chat/completions")
    sent = sim_at.send_log(sim_at.last_completion_id or "")
    assert openai_chunks(http.body_bytes) == sent.chunks and "".join(sent.chunks) == text
    assert http.header("content-type") == "text/event-stream; charset=utf-8"
    assert http.header("openai-processing-ms") == "0"
    # One body Read per socket read that carried body bytes, each with its read's time.
    assert {r.t_ns for r in http.body} <= {t for t, _ in log.reads}


def test_read_times_follow_the_sends(sim_at: SimServer) -> None:
    # Paced for real (gpt-4o-mini gaps, ~13 ms): the read carrying each content event's
    # last byte comes right after the server's sendall of it.
    model = llm.get_model("streamscope-sim")
    with WireTap() as tap:
        log = tap.start()
        model.prompt("hi", speed=1, chunks=12, seed=1).text()
    http = check_log(log, sim_at, "/v1/chat/completions")
    sent = sim_at.send_log(sim_at.last_completion_id or "")
    ends, offset = [], 0
    for event in http.body_bytes.split(b"\n\n")[:-1]:
        offset += len(event) + 2
        if b'"content":"' in event and b'"role"' not in event:
            ends.append(offset)
    read_ends, total = [], 0
    for read in http.body:
        total += len(read.data)
        read_ends.append((total, read.t_ns))
    carried = [next(t for end, t in read_ends if end >= e) for e in ends]
    assert len(carried) == len(sent.sent_ns) == 12
    assert carried == sorted(carried)
    # Chunk i leaves after the send of chunk i - 1 was logged: its read comes later.
    assert all(t > before for t, before in zip(carried[1:], sent.sent_ns))
    # sent_ns is taken after sendall returns (the client may read first): typically
    # the read is within a fraction of a millisecond of it; a loaded machine adds some.
    lags_ms = sorted((t - s) / 1e6 for t, s in zip(carried, sent.sent_ns))
    assert abs(lags_ms[len(lags_ms) // 2]) < 5, lags_ms


@pytest.mark.skipif(sys.platform != "linux", reason="the kernel's receive times are Linux's")
def test_a_late_reader_does_not_make_the_wire_late(sim_at: SimServer) -> None:
    # The client asks for the next bytes only after handling the last chunk: here
    # 30 ms after each. On a plain connection the time of a read is the kernel's
    # receive time of its newest bytes, not when the client got round to them.
    model = llm.get_model("streamscope-sim")
    with WireTap() as tap:
        log = tap.start()
        for _ in model.prompt("hi", speed=0.2, chunks=6, seed=1):
            time.sleep(0.03)
    http = check_log(log, sim_at, "/v1/chat/completions")
    sent = sim_at.send_log(sim_at.last_completion_id or "").sent_ns
    decoded = decode(http.body)
    times = [decoded.events[p.event_index].t_ns for p in decoded.pieces if p.kind == "text"]
    assert len(times) == len(sent) == 6
    # Gaps at speed 0.2 are tens of milliseconds; a late reader would read 30 ms late.
    lags_ms = [(t - s) / 1e6 for t, s in zip(times, sent)]
    assert max(lags_ms) < 10, lags_ms


def test_anthropic_plugin_reads_are_the_sent_stream(sim_at: SimServer) -> None:
    model = llm.get_model("claude-haiku-4.5")
    with WireTap() as tap:
        log = tap.start()
        text = model.prompt("hi").text()
    http = check_log(log, sim_at, "/v1/messages")
    sent = sim_at.send_log(sim_at.last_completion_id or "")
    assert anthropic_chunks(http.body_bytes) == sent.chunks and "".join(sent.chunks) == text
    assert http.header("request-id") is not None
    assert http.header("cache-control") is None  # sent, not on the allow-list


def test_gemini_plugin_through_a_tls_proxy(server: SimServer, proxy: TLSProxy) -> None:
    model = llm.get_model("gemini-2.5-flash")
    with WireTap() as tap:
        log = tap.start()
        response = model.prompt("hi")
        text = response.text()
    assert proxy.tunnels == [f"{GEMINI_HOST}:443"]
    assert (log.method, log.path) == (
        "POST",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
    )
    assert (log.host, log.port, log.scheme, log.alpn) == (GEMINI_HOST, 443, "https", "http/1.1")
    assert log.connect_ns and log.tls_ns and log.request_ns
    assert log.connect_ns < log.tls_ns < log.request_ns <= log.reads[0][0]
    # Only post-TLS reads: the proxy's reply to CONNECT is not among them.
    assert log.reads[0][1].startswith(b"HTTP/1.1 200 OK\r\n")
    assert not any(b"Connection established" in data for _, data in log.reads)
    # The key went out in a request header: nothing recorded holds it.
    assert GEMINI_KEY not in repr(log) and "x-goog" not in repr(log).lower()
    http = log.response()
    assert http is not None and http.status == 200 and http.complete
    assert http.header("content-encoding") == "gzip"  # decoded read by read
    sent = server.send_log(server.last_completion_id or "")
    elements = json.loads(http.body_bytes)
    assert gemini_parts(elements) == list(zip(sent.kinds, sent.chunks))
    assert elements[-1]["responseId"] == sent.id and response.resolved_model == "gemini-2.5-flash"
    assert text == "".join(c for k, c in zip(sent.kinds, sent.chunks) if k == "text")
    assert "reasoning" in sent.kinds  # llm-gemini asks for thoughts


@pytest.mark.parametrize("model_id", ["streamscope-sim", "gemini-2.5-flash"])
def test_async_clients_are_tapped(sim_at: SimServer, proxy: TLSProxy, model_id: str) -> None:
    model = llm.get_async_model(model_id)

    async def run() -> tuple[WireLog, str]:
        with WireTap() as tap:
            log = tap.start()
            text = await model.prompt("hi").text()
            return log, text

    log, text = asyncio.run(run())
    http = log.response()
    assert http is not None and http.status == 200 and http.complete
    sent = sim_at.send_log(sim_at.last_completion_id or "")
    if model_id == "streamscope-sim":
        assert log.scheme == "http"
        assert openai_chunks(http.body_bytes) == sent.chunks
    else:
        assert (log.scheme, log.host) == ("https", GEMINI_HOST)
        assert gemini_parts(json.loads(http.body_bytes)) == list(zip(sent.kinds, sent.chunks))
    assert text == "".join(c for k, c in zip(sent.kinds, sent.chunks) if k == "text")


def test_each_start_gets_its_own_request(sim_at: SimServer) -> None:
    # One client, one kept-alive connection, two requests: each log has its own.
    with httpx2.Client() as client, WireTap() as tap:
        first = tap.start()
        client.get(sim_at.url + "/v1/models?key=SECRET&x=1")
        second = tap.start()
        client.get(sim_at.url + "/v1/streamscope/sendlog/nope?key=SECRET")
    assert first.path == "/v1/models" and second.path == "/v1/streamscope/sendlog/nope"
    assert "SECRET" not in repr(first) + repr(second)
    assert first.reused is False and second.reused is True
    assert second.connect_ns == first.connect_ns  # the same connection
    one, two = first.response(), second.response()
    assert one is not None and two is not None
    assert (one.status, two.status) == (200, 404)
    assert json.loads(one.body_bytes)["object"] == "list"


def test_a_retry_keeps_only_the_last_attempt(sim_at: SimServer) -> None:
    # The openai client retries a 429 twice (the simulator says retry-after-ms: 1).
    posts = sim_at.post_count
    with WireTap() as tap:
        log = tap.start()
        model = llm.get_model("streamscope-sim")
        with pytest.raises(openai.RateLimitError):
            model.prompt("hi", error=429).text()
    assert sim_at.post_count - posts == 3
    http = log.response()
    assert http is not None and http.status == 429
    assert b"".join(data for _, data in log.reads).count(b"HTTP/1.1 429") == 1


def test_backends_restored_and_untouched_outside(sim_at: SimServer) -> None:
    assert len(ORIGINAL_CONNECTS) == 4  # httpcore2 and httpcore, sync and async
    # Not entered: each backend's connect_tcp is its own, no wrapper left behind.
    assert not any(hasattr(f, "__wrapped__") for f in ORIGINAL_CONNECTS.values())
    client = httpx2.Client()
    with pytest.raises(ZeroDivisionError), WireTap() as tap:
        assert all(cls.__dict__["connect_tcp"] is not f for cls, f in ORIGINAL_CONNECTS.items())
        log = tap.start()
        client.get(sim_at.url + "/v1/models")
        1 / 0  # noqa: B018
    assert all(cls.__dict__["connect_tcp"] is f for cls, f in ORIGINAL_CONNECTS.items())
    recorded = (log.request_ns, list(log.reads))
    # The connection opened while tapped stays in the pool: it records no more.
    client.get(sim_at.url + "/v1/models")
    client.close()
    assert (log.request_ns, log.reads) == recorded
    # Entered once at a time.
    with WireTap(), pytest.raises(RuntimeError), WireTap():
        pass
    assert all(cls.__dict__["connect_tcp"] is f for cls, f in ORIGINAL_CONNECTS.items())


def test_no_log_started_records_nothing(sim_at: SimServer) -> None:
    with WireTap() as tap:
        httpx2.get(sim_at.url + "/v1/models")
        assert tap.current is None


def test_covers_the_three_transports(llm_gemini: Any) -> None:
    assert covers(llm.get_model("streamscope-sim")) and covers(
        llm.get_async_model("streamscope-sim")
    )
    assert covers(llm.get_model("claude-haiku-4.5")) and covers(llm.get_model("gemini-2.5-flash"))

    class Elsewhere(llm.Model):
        model_id = "elsewhere"

        def execute(self, prompt: Any, stream: Any, response: Any, conversation: Any) -> Any:
            yield ""

    assert not WireTap.covers(Elsewhere())


def test_the_examples_in_the_docstrings_hold() -> None:
    from llm_streamscope.wire import http1, tap

    for module in (http1, tap):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_request_line_keeps_method_and_path_only() -> None:
    assert request_line(b"POST /a/b?key=K HTTP/1.1\r\nAuthorization: x\r\n") == ("POST", "/a/b")
    assert request_line(b"CONNECT h:443 HTTP/1.1\r\n\r\n") == ("CONNECT", "h:443")
    assert request_line(b'{"not": "a request line"}') == (None, None)


# --------------------------------------------------------------------------
# http1


def chunked(*payloads: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in payloads) + b"0\r\n\r\n"


HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nSet-Cookie: s=1\r\nServer: x\r\n\r\n"


def test_chunked_with_every_split_into_three_reads() -> None:
    payloads = (b"data: one\n\n", b"data: two\n\n")
    raw = HEAD + chunked(*payloads)
    # where each payload byte is in the raw bytes
    starts = [raw.index(b"%x\r\n%s" % (len(p), p)) + 3 for p in payloads]
    in_payload = {k for start, p in zip(starts, payloads) for k in range(start, start + len(p))}
    for i in range(1, len(raw)):
        for j in range(i + 1, len(raw), 3):
            spans = [(1, 0, i), (2, i, j), (3, j, len(raw))]
            http = parse_response([(t, raw[a:b]) for t, a, b in spans])
            # one body Read per socket read with payload bytes, timed by that read
            expected = [
                Read(t, bytes(raw[k] for k in range(a, b) if k in in_payload)) for t, a, b in spans
            ]
            assert http.body == tuple(r for r in expected if r.data), (i, j)
            assert http.complete and http.wire_bytes == len(raw)
            end = len(HEAD)
            assert http.headers_ns == (1 if i >= end else 2 if j >= end else 3)


def test_chunk_size_line_split_across_reads_times_the_data() -> None:
    raw = HEAD + chunked(b"hello")
    cut = raw.index(b"5\r\n") + 1  # "5" | "\r\nhello..."
    http = parse_response([(10, raw[:cut]), (20, raw[cut:])])
    assert http.body == (Read(20, b"hello"),) and http.headers_ns == 10
    assert http.headers == (("transfer-encoding", "chunked"), ("server", "x"))  # no set-cookie


def test_gzip_body_decoded_per_read() -> None:
    z = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    one = z.compress(b'[{"a": 1}\n') + z.flush(zlib.Z_SYNC_FLUSH)
    two = z.compress(b',\r\n{"a": 2}\n]') + z.flush()
    head = HEAD.replace(b"Server: x", b"Content-Encoding: gzip")
    first = head + b"%x\r\n%s\r\n" % (len(one), one)
    second = b"%x\r\n%s\r\n0\r\n\r\n" % (len(two), two)
    http = parse_response([(1, first), (2, second)])
    assert http.body == (Read(1, b'[{"a": 1}\n'), Read(2, b',\r\n{"a": 2}\n]'))
    assert http.complete and http.header("content-encoding") == "gzip"
    assert json.loads(http.body_bytes) == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS])
def test_deflate_zlib_or_raw(wbits: int) -> None:
    z = zlib.compressobj(6, zlib.DEFLATED, wbits)
    body = z.compress(b"x" * 100) + z.flush()
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n" % len(body)
    http = parse_response([(1, raw + body)])
    assert http.body_bytes == b"x" * 100 and http.complete


def test_content_length_and_until_close() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel"
    http = parse_response([(1, raw), (2, b"lo")])
    assert http.body == (Read(1, b"hel"), Read(2, b"lo")) and http.complete
    assert not parse_response([(1, raw)]).complete  # still 2 bytes to come
    until_close = [(1, b"HTTP/1.0 200 OK\r\n\r\nab"), (2, b"cd")]
    assert not parse_response(until_close).complete
    http = parse_response([*until_close, (3, b"")])
    assert http.complete and http.body_bytes == b"abcd"


def test_two_responses_on_one_connection_and_an_interim_one() -> None:
    one = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many\r\nContent-Length: 2\r\n\r\n{}"
    two = HEAD + chunked(b"ok")
    responses = parse_responses([(1, one + two[:10]), (2, two[10:])])
    assert [(r.status, r.reason, r.body_bytes) for r in responses] == [
        (429, "Too Many", b"{}"),
        (200, "OK", b"ok"),
    ]
    assert responses[1].headers_ns == 2 and parse_response([(1, one), (2, two)]).status == 200


def test_bad_framing_keeps_what_came_before() -> None:
    raw = HEAD + b"5\r\nhello\r\nzz\r\nmore"
    http = parse_response([(1, raw)])
    assert http.body_bytes == b"hello" and not http.complete
    assert http.error is not None and http.error.offset == raw.index(b"zz")
    with pytest.raises(WireError, match="not an HTTP response"):
        parse_response([(1, b"\x00\x01binary")])
    with pytest.raises(WireError, match="no HTTP response"):
        parse_response([])
    with pytest.raises(WireError, match="inside a response's header block"):
        parse_response([(1, b"HTTP/1.1 200 OK\r\nContent-Ty")])
    http = parse_response([(1, HEAD + b"1_0\r\n")])
    assert http.error is not None and "bad chunk size" in str(http.error)
    http = parse_response(
        [(1, b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\nx")]
    )
    assert http.body_bytes == b"x" and http.error is not None and "br" in str(http.error)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=400), max_size=12), st.booleans())
def test_any_split_gives_the_same_body(cuts: list[int], gzipped: bool) -> None:
    text = "".join(f'data: {{"n": {i}, "t": "\u00e9\u4e2d"}}\r\n\r\n' for i in range(8)).encode()
    if gzipped:
        payload = gzip.compress(text)
        head = HEAD.replace(b"Server: x", b"Content-Encoding: gzip")
    else:
        payload, head = text, HEAD
    raw = head + chunked(*[payload[k : k + 37] for k in range(0, len(payload), 37)])
    points = sorted({min(c, len(raw)) for c in cuts} | {0, len(raw)})
    reads = [(n, raw[a:b]) for n, (a, b) in enumerate(pairwise(points)) if b > a]
    http = parse_response(reads)
    assert http.body_bytes == text and http.complete
    times = [r.t_ns for r in http.body]
    assert times == sorted(times) and len(set(times)) == len(times)
