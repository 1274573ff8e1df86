"""wire.sources: files, sidecar times, standard input, cassettes and httprr traces."""

import gzip
import io
import itertools
import json
import os
import threading
import time

import pytest
import yaml

from llm_streamscope.wire.events import Read
from llm_streamscope.wire.sources import (
    SourceError,
    read_bytes,
    read_file,
    read_stdin,
    sidecar_reads,
)

SSE = b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\ndata: [DONE]\n\n'


def test_a_plain_file_is_one_untimed_read(tmp_path):
    path = tmp_path / "reply.sse"
    path.write_bytes(SSE)
    source = read_file(path)
    assert source.reads == (Read(None, SSE),)
    assert not source.timed and source.origin is None and source.url is None
    assert source.body == SSE and source.name == str(path)


def test_an_empty_file_has_no_reads(tmp_path):
    path = tmp_path / "empty.sse"
    path.write_bytes(b"")
    assert read_file(path).reads == ()


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(SourceError, match=r"nothing\.sse: No such file"):
        read_file(tmp_path / "nothing.sse")


# -- sidecar times -------------------------------------------------------------


def test_a_sidecar_cuts_the_body_where_its_bytes_arrived(tmp_path):
    path = tmp_path / "reply.sse"
    path.write_bytes(SSE)
    cut = SSE.index(b"data: [DONE]")
    times = f"# t\tbytes\n0.012\t10\n\n0.5\t{cut}\n1.25\t{len(SSE)}\n"
    (tmp_path / "reply.sse.times").write_text(times)
    source = read_file(path)
    assert source.timed and source.notes == ()
    assert source.origin is not None and "reply.sse.times" in source.origin
    assert [(r.t_ns, r.data) for r in source.reads] == [
        (12_000_000, SSE[:10]),
        (500_000_000, SSE[10:cut]),
        (1_250_000_000, SSE[cut:]),
    ]


def test_sidecar_bytes_past_its_last_offset_take_its_last_time_with_a_note():
    reads, notes = sidecar_reads(b"abcdef", "0.1\t2\n0.2\t2\n0.3\t4\n", "x.times")
    assert [(r.t_ns, r.data) for r in reads] == [
        (100_000_000, b"ab"),
        (300_000_000, b"cd"),
        (300_000_000, b"ef"),
    ]
    assert len(notes) == 1 and "first 4 of 6 bytes" in notes[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.1\t2\n0.05\t4\n", r"x\.times line 2: the time goes back"),
        ("0.1\t4\n0.2\t2\n", r"x\.times line 2: the byte offset goes back \(2 after 4\)"),
        ("0.1\t99\n", r"x\.times line 1: byte offset 99 is past the end \(6 bytes\)"),
        ("soon\t2\n", r"x\.times line 1: expected t_seconds<TAB>byte_offset, got 'soon\\t2'"),
        ("0.1 2 3\n", r"x\.times line 1: expected"),
        ("-1\t2\n", r"x\.times line 1: the time must be"),
        ("nan\t2\n", r"x\.times line 1: the time must be"),
        ("# nothing\n\n", r"x\.times: no times in it"),
    ],
)
def test_a_bad_sidecar_names_its_line(text, message):
    with pytest.raises(SourceError, match=message):
        sidecar_reads(b"abcdef", text, "x.times")


def test_a_cassette_ignores_a_sidecar(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(_cassette([_interaction(SSE)]))
    (tmp_path / "c.yaml.times").write_text("0.1\t2\n")
    assert not read_file(path).timed


# -- standard input ------------------------------------------------------------


def test_stdin_times_every_read_as_it_arrives():
    read_fd, write_fd = os.pipe()
    pieces = [SSE[:20], SSE[20:40], SSE[40:]]

    def writer():
        for piece in pieces:
            time.sleep(0.05)
            os.write(write_fd, piece)
        os.close(write_fd)

    thread = threading.Thread(target=writer)
    with os.fdopen(read_fd, "rb") as stream:
        thread.start()
        source = read_stdin(stream)
    thread.join()
    assert source.timed and source.name == "-" and source.origin.startswith("stdin")
    assert source.body == SSE
    assert [r.data for r in source.reads] == pieces  # one pipe write, one read
    times = [r.t_ns for r in source.reads]
    assert times[0] >= 40_000_000  # counted from when reading began
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 40_000_000 for gap in gaps)


def test_stdin_without_a_file_descriptor_is_read_too():
    source = read_stdin(io.BytesIO(SSE))
    assert source.timed and source.body == SSE


def test_a_file_redirected_into_stdin_is_read_untimed(tmp_path):
    path = tmp_path / "reply.sse"
    path.write_bytes(SSE)
    with path.open("rb") as stream:
        source = read_stdin(stream)
    assert not source.timed and source.reads == (Read(None, SSE),)


def test_a_cassette_piped_into_stdin_is_read_as_a_cassette():
    source = read_stdin(io.BytesIO(_cassette([_interaction(SSE)]).encode()))
    assert not source.timed and source.body == SSE and source.url is not None


def test_interaction_on_a_plain_body_is_an_error(tmp_path):
    with pytest.raises(SourceError, match="--interaction applies to a cassette"):
        read_stdin(io.BytesIO(SSE), interaction=1)
    with pytest.raises(SourceError, match="--interaction applies to a cassette"):
        read_bytes("x.sse", SSE, interaction=2)


# -- cassettes -----------------------------------------------------------------


def _interaction(
    body,
    *,
    content_type="text/event-stream; charset=utf-8",
    uri="https://api.openai.com/v1/chat/completions",
    request=None,
    status=200,
    headers=None,
):
    """One interaction as vcrpy records it."""
    return {
        "request": {
            "body": json.dumps(request or {"model": "gpt-4o-mini", "stream": True}),
            "headers": {"Content-Type": ["application/json"]},
            "method": "POST",
            "uri": uri,
        },
        "response": {
            "body": {"string": body.decode() if isinstance(body, bytes) else body},
            "headers": {"Content-Type": [content_type], **(headers or {})},
            "status": {"code": status, "message": "OK"},
        },
    }


def _cassette(interactions):
    return yaml.dump({"interactions": interactions, "version": 1})


def test_a_cassette_gives_its_first_streamed_interaction(tmp_path):
    models = _interaction(
        '{"data": []}', content_type="application/json", request={"model": "x"}
    ) | {"request": {"body": None, "method": "GET", "uri": "https://api.openai.com/v1/models"}}
    path = tmp_path / "test_stream.yaml"
    path.write_text(
        _cassette(
            [
                models,
                _interaction(SSE, uri="https://api.openai.com/v1/chat/completions?key=secret"),
            ]
        )
    )
    source = read_file(path)
    assert source.name == f"{path} (interaction 2 of 2)"
    assert source.body == SSE and not source.timed
    assert source.url == "https://api.openai.com/v1/chat/completions"  # no query: no key
    assert source.method == "POST" and source.model == "gpt-4o-mini" and source.status == 200
    assert source.content_type.startswith("text/event-stream")
    assert read_file(path, interaction=1).body == b'{"data": []}'


def test_a_stream_is_known_by_its_body_or_request_when_its_type_is_plain(tmp_path):
    ndjson = b'{"model":"llama3","message":{"content":"Hi"},"done":false}\n'
    by_body = _interaction(SSE, content_type="text/plain")
    by_request = _interaction(
        ndjson, content_type="application/json", request={"model": "llama3", "stream": True}
    )
    plain = _interaction('{"ok": true}', content_type="application/json", request={"model": "m"})
    assert read_bytes("a.yaml", _cassette([plain, by_body]).encode()).body == SSE
    source = read_bytes("b.yaml", _cassette([plain, by_request]).encode())
    assert source.body == ndjson and source.model == "llama3"


def test_gemini_names_its_model_in_the_url(tmp_path):
    body = '[{"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]}]'
    gemini = _interaction(
        body,
        content_type="application/json; charset=UTF-8",
        uri="https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"
        ":streamGenerateContent?key=AIzaSECRET",
        request={"contents": []},
    )
    source = read_bytes("g.yaml", _cassette([gemini]).encode())
    assert source.model == "gemini-2.5-flash"
    assert "AIza" not in source.url and source.url.endswith(":streamGenerateContent")


def test_a_binary_gzip_body_is_decompressed():
    interaction = _interaction(SSE, headers={"Content-Encoding": ["gzip"]})
    interaction["response"]["body"] = {"string": gzip.compress(SSE)}  # dumped as !!binary
    text = _cassette([interaction])
    assert "!!binary" in text
    assert read_bytes("c.yaml", text.encode()).body == SSE


def test_a_body_decoded_by_the_recorder_keeps_its_bytes():
    interaction = _interaction(SSE, headers={"Content-Encoding": ["gzip"]})
    assert read_bytes("c.yaml", _cassette([interaction]).encode()).body == SSE


def test_an_encoding_it_cannot_read_is_one_line():
    interaction = _interaction(SSE, headers={"Content-Encoding": ["br"]})
    interaction["response"]["body"] = {"string": b"\x8b\x00garbage"}
    with pytest.raises(SourceError, match="br-encoded"):
        read_bytes("c.yaml", _cassette([interaction]).encode())


def test_old_vcrpy_httpx_cassettes_keep_the_body_as_content():
    interaction = {
        "request": {"body": "{}", "headers": {}, "method": "POST", "uri": "http://x/v1/messages"},
        "response": {
            "content": SSE.decode(),
            "headers": {"content-type": "text/event-stream"},
            "http_version": "HTTP/1.1",
            "status_code": 200,
        },
    }
    source = read_bytes("c.yaml", _cassette([interaction]).encode())
    assert source.body == SSE and source.status == 200


def test_ruby_vcr_cassettes_are_read_too():
    import base64

    document = {
        "http_interactions": [
            {
                "request": {
                    "method": "post",
                    "uri": "https://api.anthropic.com/v1/messages",
                    "body": {"encoding": "UTF-8", "string": '{"model":"claude-3-haiku"}'},
                },
                "response": {
                    "status": {"code": 200, "message": "OK"},
                    "headers": {"Content-Type": ["text/event-stream; charset=utf-8"]},
                    "body": {
                        "encoding": "ASCII-8BIT",
                        "base64_string": base64.b64encode(SSE).decode(),
                    },
                },
            }
        ],
        "recorded_with": "VCR 6.2.0",
    }
    text = "---\n" + yaml.dump(document)
    source = read_bytes("c.yml", text.encode())
    assert source.body == SSE and source.model == "claude-3-haiku"


def test_older_ruby_vcr_binary_bodies_are_read():
    import base64

    encoded = base64.b64encode(SSE).decode()
    text = (
        "---\nhttp_interactions:\n- request:\n    method: post\n    uri: https://x/v1/messages\n"
        "  response:\n    status:\n      code: 200\n    headers: {}\n    body:\n"
        f"      encoding: ASCII-8BIT\n      string: !binary |-\n        {encoded}\n"
    )
    assert read_bytes("c.yml", text.encode()).body == SSE


def test_a_yaml_file_is_a_cassette_whatever_its_first_key():
    text = "version: 1\n" + _cassette([_interaction(SSE)])
    assert read_bytes("c.yaml", text.encode()).body == SSE
    with pytest.raises(SourceError, match=r"c\.yml: not a cassette"):
        read_bytes("c.yml", b"data: {}\n\n")


def test_a_json_cassette_is_read_by_its_name():
    text = json.dumps({"interactions": [_interaction(SSE)], "version": 1})
    assert read_bytes("c.json", text.encode()).body == SSE
    # Without the name, a JSON object is a body (NDJSON): left to the decoders.
    assert read_bytes("c.ndjson", text.encode()).url is None


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        (
            _cassette([_interaction("{}", content_type="application/json", request={"m": 1})]),
            {},
            r"none of its 1 interaction streamed \(choose one with --interaction N\)",
        ),
        (_cassette([_interaction(SSE)]), {"interaction": 2}, r"no interaction 2: it holds 1"),
        (_cassette([_interaction(SSE)]), {"interaction": 0}, r"no interaction 0"),
        (_cassette([]), {}, "holds no interactions"),
        ("interactions: [1, 2]\n", {}, "interaction 1 has no request and response"),
        ("interactions: {a: b}\n", {}, r"not a cassette \(no list of interactions\)"),
        ("interactions:\n  - [unclosed\n", {}, r"not a readable cassette \(line 3\)"),
    ],
)
def test_bad_cassettes_are_one_line(text, kwargs, message):
    with pytest.raises(SourceError, match=message):
        read_bytes("c.yaml", text.encode(), **kwargs)


# -- httprr --------------------------------------------------------------------


def _httprr(*records):
    out = b"httprr trace v1\n"
    for request, response in records:
        out += f"{len(request)} {len(response)}\n".encode() + request + response
    return out


def test_an_httprr_trace_is_read_like_a_cassette():
    body = b'{"model":"gemma3:1b","message":{"content":"Hi"},"done":false}\n'
    request = (
        b"POST /api/chat?x=1 HTTP/1.1\r\nHost: localhost:11434\r\n"
        b"Content-Type: application/json\r\n\r\n"
        b'{"model":"gemma3:1b","stream":true}'
    )
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked
    )
    source = read_bytes("t.httprr", _httprr((request, response)))
    assert source.body == body
    assert source.url == "https://localhost:11434/api/chat"
    assert source.model == "gemma3:1b" and source.status == 200 and source.method == "POST"


def test_a_truncated_httprr_trace_is_one_line():
    with pytest.raises(SourceError, match="ends inside record 1"):
        read_bytes("t.httprr", b"httprr trace v1\n100 100\nPOST / HTTP/1.1\r\n")
    with pytest.raises(SourceError, match=r"not a readable httprr trace \(record 1\)"):
        read_bytes("t.httprr", b"httprr trace v1\nnot sizes\n")
    with pytest.raises(SourceError, match="a recorded response that is not HTTP"):
        read_bytes("t.httprr", _httprr((b"GET / HTTP/1.1\r\n\r\n", b"garbage")))


def test_an_httprr_gzip_body_is_decompressed():
    body = gzip.compress(SSE)
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    source = read_bytes("t.httprr", _httprr((b"GET /x HTTP/1.1\r\n\r\n", response)))
    assert source.body == SSE and source.content_type == "text/event-stream"
