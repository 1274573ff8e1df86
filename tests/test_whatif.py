"""`llm streamscope whatif`: a trace re-chunked under other policies, checked by hand."""

import doctest
import html.parser
import json

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from llm.cli import cli

from llm_streamscope.analysis import encodings, whatif
from llm_streamscope.analysis.align import align
from llm_streamscope.analysis.stats import compute_stats
from llm_streamscope.analysis.trace import Fragment, Trace
from llm_streamscope.analysis.whatif import (
    DEFAULT_POLICIES,
    Framing,
    Policy,
    WhatIfError,
    measured_framing,
    parse_policy,
)
from llm_streamscope.capture.tokenizer import LocalTokenizer
from llm_streamscope.wire.events import Read
from llm_streamscope.wire.formats import decode

MS = 10**6
# "Hello world. Bye now." is six o200k tokens: Hello | world | . | Bye | now | .
# (bytes 0-5, 5-11, 11-12, 12-16, 16-20, 20-21). "Hello" arrives split in two.
PIECES = [("Hel", 100), ("lo", 105), (" world", 130), (".", 131), (" Bye now", 200), (".", 260)]
FRAMING = Framing("openai-chat", per_event=100.0, fixed=50, source="measured", events=6)


@pytest.fixture(scope="module")
def tokenizer():
    return LocalTokenizer(encodings.get_encoding("o200k_base"))


def make_trace(pieces, wire_times=None):
    fragments = tuple(
        Fragment(i, "text", text, ms * MS, wire_t_ns=None if wire_times is None else wire_times[i])
        for i, (text, ms) in enumerate(pieces)
    )
    return Trace("t1", "gpt-4o-mini", "o200k_base", True, None, None, "", fragments)


# Per policy, worked out by hand from PIECES (times in ms). A token is available
# when its last byte arrives: Hello 105, world 130, "." 131, Bye 200, now 200, "." 260.
# wait: per byte, sent - arrived; p99 over the 21 bytes (linear, as numpy).
EXPECTED = {
    # policy: (events, ttft, p99 gap, total wait byte-ms, p99 wait)
    "as sent": (6, 100, 68.64, 0, 0),  # gaps 5 25 1 69 60
    "each token": (6, 105, 68.64, 15, 5),  # sent 105 130 131 200 200 260; Hel waits 5
    # 130 200 260: Hel 3x30, lo 2x25, "." 69, " now" 4x60
    "every 2 tokens": (3, 130, 69.9, 449, 67.2),
    # 200 260: Hel 3x100, lo 2x95, " world" 6x70, "." 69, " now" 4x60
    "every 4 tokens": (2, 200, 60, 1219, 100),
    # 260: 3x160 + 2x155 + 6x130 + 129 + 8x60
    "every 8 tokens": (1, 260, None, 2179, 160),
    # 105 130 150 (the "." of 131 waits for 130+20) 200 260
    "every 20 ms": (5, 105, 59.7, 34, 16.2),
    # 105 155 (world and .) 205 (Bye now) 260
    "every 50 ms": (4, 105, 54.9, 229, 25),
    # 105 205 (world . Bye now) 305 (the last "." waits 45)
    "every 100 ms": (3, 105, 100, 624, 75),
    # Hello once " world" shows its space (130); "." and Bye once " Bye", " now" do (200)
    "at words": (3, 130, 69.9, 869, 70),
    # "Hello world." once " Bye" shows a space after the stop (200); the rest at the end
    "at sentences": (2, 200, 60, 1459, 100),
}


def test_every_policy_on_a_hand_built_trace(tokenizer):
    trace = make_trace(PIECES)
    result = whatif.whatif(trace, align(trace, tokenizer), DEFAULT_POLICIES, FRAMING)
    assert (result.tokens, result.content_bytes, result.clock) == (6, 21, "llm")
    got = {
        o.policy: (o.events, o.ttft_ms, o.gap_ms.p99, o.wait_byte_ms, o.wait_ms.p99)
        for o in result.outcomes
    }
    assert list(got) == list(EXPECTED)
    for name, expected in EXPECTED.items():
        assert got[name] == pytest.approx(expected), name
    for o in result.outcomes:
        assert o.bytes == 50 + 100 * o.events + 21
        assert o.wait_ms.mean == pytest.approx(o.wait_byte_ms / 21)


def test_the_baseline_row_is_the_stats(tokenizer):
    trace = make_trace(PIECES)
    alignment = align(trace, tokenizer)
    stats = compute_stats(trace, alignment)
    sent = whatif.whatif(trace, alignment, [whatif.AS_SENT], FRAMING).outcomes[0]
    assert (sent.events, sent.ttft_ms) == (stats.chunks, stats.ttft_ms)
    assert sent.gap_ms == stats.gap_ms


def test_times_come_from_the_wire_when_every_chunk_has_one(tokenizer):
    wire = [(ms - 3) * MS for _, ms in PIECES]  # llm handed each over 3 ms late
    trace = make_trace(PIECES, wire_times=wire)
    # an empty event llm handed over late, with no wire time, brings nothing
    empty = Fragment(len(PIECES), "text", "", 999 * MS)
    trace = Trace(
        **{**trace.__dict__, "fragments": (*trace.fragments[:2], empty, *trace.fragments[2:])}
    )
    alignment = align(trace, tokenizer)
    result = whatif.whatif(trace, alignment, [whatif.AS_SENT, Policy("tokens", 8)], FRAMING)
    assert result.clock == "wire"
    assert [o.ttft_ms for o in result.outcomes] == pytest.approx([97, 257])
    assert result.outcomes[0].ttft_ms == compute_stats(trace, alignment).ttft_ms


def test_sentences_end_at_line_ends_and_cjk_stops(tokenizer):
    # Yes | .\n\n | OK: the line end is a boundary as soon as it arrives.
    trace = make_trace([("Yes", 10), (".\n\n", 20), ("OK", 30)])
    result = whatif.whatif(
        trace, align(trace, tokenizer), [Policy("word"), Policy("sentence")], FRAMING
    )
    assert [o.sends for o in result.outcomes] == [
        ((6, 20 * MS), (8, 30 * MS)),  # words: ".\n\n" ends with white space
        ((6, 20 * MS), (8, 30 * MS)),
    ]
    # 好的 | 。 | 再 | 见 | ！: a full stop needs no space after it.
    trace = make_trace([("好的", 10), ("。再", 20), ("见！", 30)])
    result = whatif.whatif(trace, align(trace, tokenizer), [Policy("sentence")], FRAMING)
    assert result.outcomes[0].sends == ((9, 20 * MS), (18, 30 * MS))


def test_measured_framing_is_the_text_events_bytes_beside_their_text():
    def event(text):
        chunk = {"choices": [{"index": 0, "delta": {"content": text}}]}
        return f"data: {json.dumps(chunk)}\n\n"

    role = "data: " + json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
    role += "\n\n"
    done = "data: [DONE]\n\n"
    body = role + event("Hi") + event(" there") + done
    framing = measured_framing(decode([Read(None, body.encode())], "openai-chat"))
    assert framing == Framing(
        "openai-chat", len(event("")), fixed=len(role + done), source="measured", events=2
    )


def test_policies_parse_and_bad_ones_say_why():
    assert [p.spec for p in map(parse_policy, ["token", "tokens:3", "ms:12.5", "word"])] == [
        "token",
        "tokens:3",
        "ms:12.5",
        "word",
    ]
    for bad, words in [
        ("tokens:x", "whole N"),
        ("tokens:²", "whole N"),
        ("tokens:2.5", "whole N"),
        ("ms:0", "above 0"),
        ("ms:nan", "above 0"),
        ("word:2", "takes no size"),
        ("bytes", "unknown policy"),
    ]:
        with pytest.raises(WhatIfError, match=words):
            parse_policy(bad)


def test_a_trace_without_times_or_text_is_refused(tokenizer):
    trace = make_trace(PIECES)
    untimed = Trace(**{**trace.__dict__, "timed": False})
    with pytest.raises(WhatIfError, match="no times"):
        whatif.whatif(untimed, align(untimed, tokenizer))
    empty = Trace(**{**trace.__dict__, "fragments": ()})
    with pytest.raises(WhatIfError, match="no text"):
        whatif.whatif(empty, align(empty, tokenizer))


def test_doctests():
    assert doctest.testmod(whatif).failed == 0


TEXT = st.text(st.sampled_from("ab .,!?\n好。é"), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(text=TEXT, data=st.data())
def test_no_policy_sends_text_before_it_arrived(tokenizer, text, data):
    cuts = sorted(
        data.draw(st.sets(st.integers(1, len(text) - 1), max_size=8)) if len(text) > 1 else []
    )
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    steps = data.draw(st.lists(st.integers(0, 40), min_size=len(pieces), max_size=len(pieces)))
    times = [sum(steps[: i + 1]) + 1 for i in range(len(pieces))]
    trace = make_trace(list(zip(pieces, times)))
    alignment = align(trace, tokenizer)
    stream = alignment.stream("text")
    result = whatif.whatif(
        trace, alignment, [*DEFAULT_POLICIES, Policy("ms", 7), Policy("tokens", 3)], FRAMING
    )
    starts = [0, *stream.fragment_byte_ends[:-1]]
    arrived = list(zip(starts, stream.fragment_byte_ends, (f.t_ns for f in stream.fragments)))
    for o in result.outcomes:
        ends = [end for end, _ in o.sends]
        sent = [t for _, t in o.sends]
        assert ends == sorted(set(ends)) and ends[-1] == result.content_bytes
        assert sent == sorted(sent)
        start = 0
        for end, t in o.sends:  # every byte of an event had arrived when it was sent
            assert all(t >= at for a, b, at in arrived if a < end and b > start), o.policy
            start = end
        assert o.wait_ms.count == result.content_bytes and o.wait_ms.p50 >= 0
        if o.spec.startswith(("token", "tokens")):
            assert o.events <= result.tokens
    sent_as_is = result.outcomes[0]
    assert sent_as_is.wait_byte_ms == 0 and sent_as_is.events == len(pieces)
    assert result.outcomes[1].events == result.tokens


# ====================
# The command
# ====================


def streamscope(*args):
    return CliRunner().invoke(cli, ["streamscope", *args], catch_exceptions=False)


FAST = ("-m", "streamscope-sim", "-o", "speed", "0", "-o", "max_tokens", "30")


def test_whatif_on_the_latest_logged_run():
    run = streamscope(*FAST, "-o", "profile", "claude-haiku", "hi")
    assert run.exit_code == 0, run.output
    result = streamscope("whatif", "--latest")
    assert result.exit_code == 0, result.output
    out = result.stdout
    lines = out.splitlines()
    assert " ".join(lines[1].split()) == "policy events bytes TTFT p99 gap wait mean wait p99"
    for policy in DEFAULT_POLICIES:
        assert any(line.startswith(policy.name + " ") for line in lines), policy.name
    # no wire record: the simulator speaks OpenAI chat, whose framing is documented
    assert "framing: openai-chat's, from real recordings" in out
    assert all(len(line) <= 80 for line in lines)
    assert "\x1b" not in out  # plain off a terminal

    shown = json.loads(streamscope("show", "--latest", "--json").stdout)["responses"][0]
    doc = json.loads(
        streamscope(
            "whatif", "--latest", "--json", "--policy", "tokens:3", "--policy", "as-sent"
        ).stdout
    )
    (response,) = doc["responses"]
    assert response["trace_id"] == shown["trace_id"]
    assert [o["spec"] for o in response["outcomes"]] == ["as-sent", "tokens:3"]
    sent, threes = response["outcomes"]
    assert sent["events"] == shown["stats"]["chunks"]
    assert sent["ttft_ms"] == pytest.approx(shown["stats"]["ttft_ms"])
    assert threes["events"] == -(-shown["stats"]["tokens"] // 3)
    assert response["framing"] == {
        "format": "openai-chat",
        "per_event": 301.0,
        "fixed": 1121,
        "source": "documented",
        "events": 2670,
    }


def test_whatif_measures_the_framing_of_a_wire_run(tmp_path):
    assert streamscope(*FAST, "--wire", "hi").exit_code == 0
    shown = json.loads(streamscope("show", "--latest", "--json").stdout)["responses"][0]
    doc = json.loads(streamscope("whatif", "--latest", "--json").stdout)
    response = doc["responses"][0]
    assert response["framing"]["source"] == "measured" and response["clock"] == "wire"
    # the trace as sent costs exactly the body the wire carried
    assert response["outcomes"][0]["bytes"] == shown["stats"]["wire"]["body_bytes"]

    report = tmp_path / "whatif.html"
    result = streamscope("whatif", "--latest", "--html", str(report))
    assert result.exit_code == 0, result.output
    page = report.read_text()
    html.parser.HTMLParser().feed(page)
    assert page.count("<svg") == 4 and "<script" not in page
    for policy in DEFAULT_POLICIES:
        assert f"<title>{policy.name}: " in page


def test_whatif_on_a_captured_file_with_its_times(tmp_path):
    def event(delta):
        return "data: " + json.dumps({"model": "gpt-4o-mini", "choices": [{"delta": delta}]})

    body = "\n\n".join(
        [event({"role": "assistant"}), *(event({"content": t}) for t, _ in PIECES), "data: [DONE]"]
    )
    body = (body + "\n\n").encode()
    ends = [i + 2 for i in range(len(body)) if body.startswith(b"\n\n", i)]
    sidecar = [f"{ms / 1000:.3f}\t{end}" for (_, ms), end in zip(PIECES, ends[1:])]
    (tmp_path / "capture.sse").write_bytes(body)
    (tmp_path / "capture.sse.times").write_text("\n".join([*sidecar, f"0.3\t{len(body)}"]))
    result = streamscope("whatif", "--file", str(tmp_path / "capture.sse"), "--json")
    assert result.exit_code == 0, result.output
    response = json.loads(result.stdout)["responses"][0]
    assert response["clock"] == "wire"
    outcomes = {o["policy"]: o for o in response["outcomes"]}
    for name, expected in EXPECTED.items():
        o = outcomes[name]
        got = (
            o["events"],
            o["ttft_ms"],
            o["gap_ms"]["p99"],
            o["wait_byte_ms"],
            o["wait_ms"]["p99"],
        )
        assert got == pytest.approx(expected, abs=0.1), name
    assert outcomes["as sent"]["bytes"] == len(body)

    # A stream that stops decoding part way: what decoded is re-chunked, then one error.
    (tmp_path / "capture.sse").write_bytes(body + b"data: {not json\n\n")
    result = streamscope("whatif", "--file", str(tmp_path / "capture.sse"))
    assert result.exit_code == 1
    assert "every 4 tokens " in result.stdout
    *_, error = result.stderr.splitlines()  # after a warning: the .times stop short of it
    assert error.startswith("Error: ") and "event 8: invalid JSON" in error

    untimed = tmp_path / "untimed.sse"
    untimed.write_bytes(body)
    result = streamscope("whatif", "--file", str(untimed))
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "carries no times" in result.stderr
    # named by the file given, not by an id made up while reading it
    assert result.stderr.startswith(f"Error: {untimed}: ")


def test_on_the_servers_clock_there_is_no_ttft(tmp_path):
    def line(content, ms, done=False):
        at = f"2025-08-20T13:47:54.{ms:03d}000000Z"
        message = {"role": "assistant", "content": content}
        return json.dumps({"model": "llama3", "created_at": at, "message": message, "done": done})

    lines = [line("Hello", 0), line(" world", 20), line(".", 70), line("", 80, done=True)]
    (tmp_path / "ollama.ndjson").write_text("\n".join(lines) + "\n")
    result = streamscope("whatif", "--file", str(tmp_path / "ollama.ndjson"), "--json")
    assert result.exit_code == 0, result.output
    response = json.loads(result.stdout)["responses"][0]
    assert response["clock"] == "server" and response["framing"]["format"] == "ollama"
    outcomes = {o["policy"]: o for o in response["outcomes"]}
    assert {o["ttft_ms"] for o in outcomes.values()} == {None}
    # gaps are the server's: 20 and 50 ms as sent; every 2 tokens holds "Hello" for " world"
    assert outcomes["as sent"]["gap_ms"]["max"] == pytest.approx(50)
    assert outcomes["every 2 tokens"]["wait_byte_ms"] == pytest.approx(5 * 20)


def test_a_tool_chain_shows_the_responses_with_text():
    assert streamscope(*FAST, "-T", "llm_time", "What time is it?").exit_code == 0
    result = streamscope("whatif", "--latest")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("─ whatif · trace") == 1  # the tool call has no text
    assert result.stderr.startswith("Note: skipped ") and "no text" in result.stderr


def test_bad_input_is_one_line():
    result = streamscope("whatif", "--latest", "--policy", "tokens:0")
    assert result.exit_code == 2 and "tokens:N needs a whole N" in result.stderr
    result = streamscope("whatif", "--latest", "--file", "x.sse")
    assert result.exit_code == 1
    assert result.stderr == "Error: Give a trace id, --latest or --file, not two of them\n"
    # with nothing to read, every way to name it is said, --file too
    result = streamscope("whatif")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "--latest" in result.stderr and "--file FILE" in result.stderr
