"""The framing decoders: SSE (the WHATWG rules, each quoted where it is tested),
NDJSON and the streamed JSON array; the same events for every split of a body
into reads, real recordings split byte by byte, and arbitrary bytes."""

import doctest
import json
import re
from contextlib import suppress
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_streamscope.wire import decoder, framing, jsonarray, ndjson, sse
from llm_streamscope.wire.events import WireError
from llm_streamscope.wire.framing import FRAMINGS, decoder_for, detect_framing
from llm_streamscope.wire.jsonarray import JSONArrayDecoder
from llm_streamscope.wire.ndjson import NDJSONDecoder
from llm_streamscope.wire.sse import SSEDecoder

BOM = b"\xef\xbb\xbf"


def decode(dec, reads, times=None):
    """Feed ``reads`` (read i at time ``times[i]``, default 1000 + i) and finish."""
    events = []
    for i, data in enumerate(reads):
        events += dec.feed(data, 1000 + i if times is None else times[i])
    return events + dec.finish()


def sse_events(*reads):
    return decode(SSEDecoder(), reads)


def framed(events):
    """What an event is, apart from how the body was split into reads."""
    return [
        (e.index, e.byte_start, e.byte_end, e.data, e.event, e.id, e.retry, e.comment)
        for e in events
    ]


def split_at(body, cuts):
    """``body`` cut at ``cuts`` (repeats give empty reads)."""
    bounds = [0, *sorted(cuts), len(body)]
    return [body[a:b] for a, b in pairwise(bounds)]


def read_of(reads, offset):
    """Index of the read that carried body byte ``offset``."""
    end = 0
    for i, data in enumerate(reads):
        end += len(data)
        if offset < end:
            return i
    raise AssertionError(offset)


def check_times(events, reads):
    """An event's time is the time of the read with its last byte; its read range
    runs from the read with its first byte."""
    for e in events:
        last = read_of(reads, e.byte_end - 1)
        assert (e.last_read, e.t_ns) == (last, 1000 + last)
        assert e.first_read == read_of(reads, e.byte_start)


def test_doctests():
    for module in (decoder, sse, ndjson, jsonarray, framing):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module


# --- SSE: the WHATWG rules -------------------------------------------------------------------


def test_sse_line_ends_lf_cr_crlf():
    # "Lines must be separated by either a U+000D CARRIAGE RETURN U+000A LINE FEED (CRLF)
    # character pair, a single U+000A LINE FEED (LF) character, or a single U+000D CARRIAGE
    # RETURN (CR) character."
    for end in (b"\n", b"\r", b"\r\n"):
        body = b"data: a" + end + b"data: b" + end + end + b"data: c" + end + end
        events = sse_events(body)
        assert [e.data for e in events] == ["a\nb", "c"]
        assert events[0].byte_end == 2 * len(b"data: a") + 3 * len(end)
        assert events[1].byte_end == len(body)


def test_sse_cr_then_lf_in_the_next_read_is_one_line_end():
    # A CRLF split across two reads is one line end, not a CR line end and a blank line
    # (which would dispatch early and count the LF as a line of its own).
    events = decode(SSEDecoder(), [b"data: a\r", b"\ndata: b\r\n\r", b"\n"])
    assert [e.data for e in events] == ["a\nb"]
    assert (events[0].byte_end, events[0].last_read, events[0].t_ns) == (20, 2, 1002)


def test_sse_cr_at_the_end_of_a_read_then_not_lf():
    # A lone CR is a whole line end: the event ended with the read that carried it,
    # though only the next read shows that no LF follows.
    dec = SSEDecoder()
    assert dec.feed(b"data: a\r\r", 1) == []
    [event] = dec.feed(b"data: b", 2)
    assert (event.data, event.t_ns, event.last_read, event.byte_end) == ("a", 1, 0, 9)
    assert dec.finish() == [] and (dec.leftover, dec.complete) == (7, False)


def test_sse_a_cr_ending_the_body_ends_its_line():
    events = sse_events(b"data: a\r\r")
    assert [(e.data, e.byte_end) for e in events] == [("a", 9)]


def test_sse_utf8_with_replacement_and_split_characters():
    # "Streams must be decoded using the UTF-8 decode algorithm."
    # (which replaces invalid bytes with U+FFFD, and decodes a character whole however the
    # body was split into reads)
    text = "ça — 東京 🚀".encode()
    body = b"data: " + text + b"\xff\xc3(\n\n"
    for cut in range(len(body) + 1):
        [event] = sse_events(body[:cut], body[cut:])
        assert event.data == "ça — 東京 🚀\ufffd\ufffd("


def test_sse_one_leading_bom_is_skipped():
    # "One leading U+FEFF BYTE ORDER MARK character must be ignored if any are present."
    body = BOM + b"data: a\n\n"
    for cut in range(len(body) + 1):
        [event] = sse_events(body[:cut], body[cut:])
        assert (event.data, event.byte_start, event.byte_end) == ("a", 3, len(body))
    # Only one: a second BOM makes the first line's field name "\ufeffdata", unknown.
    assert sse_events(BOM + BOM + b"data: a\n\ndata: b\n\n")[0].data == "b"


def test_sse_comments_are_not_dispatched_but_kept_as_their_own_events():
    # "If the line starts with a U+003A COLON character (:) — Ignore the line."
    events = sse_events(b": keep-alive\n:\ndata: a\n: inside\ndata: b\n\n")
    assert [(e.index, e.comment, e.data) for e in events] == [
        (0, True, "keep-alive"),
        (1, True, ""),
        (2, True, "inside"),
        (3, False, "a\nb"),
    ]
    assert [(e.byte_start, e.byte_end) for e in events] == [(0, 13), (13, 15), (23, 32), (15, 41)]


def test_sse_field_and_value_at_the_first_colon_one_space_removed():
    # "Collect the characters on the line before the first U+003A COLON character (:), and
    # let field be that string. Collect the characters on the line after the first U+003A
    # COLON character (:), and let value be that string. If value starts with a U+0020 SPACE
    # character, remove it from value."
    events = sse_events(b"data:a:b\n\ndata:  two spaces\n\ndata:\n\n")
    assert [e.data for e in events] == ["a:b", " two spaces", ""]


def test_sse_a_line_without_colon_is_a_field_with_an_empty_value():
    # "Otherwise, the string is not empty but does not contain a U+003A COLON character (:)
    # — Process the field using the steps described below, using the whole line as the field
    # name, and the empty string as the field value."
    # The spec's own example: "data\n\ndata\ndata\n\ndata:" dispatches "" then "\n"; the
    # last line is never terminated and dispatches nothing.
    events = sse_events(b"data\n\ndata\ndata\n\ndata:")
    assert [e.data for e in events] == ["", "\n"]


def test_sse_data_lines_join_with_lf():
    # "Append the field value to the data buffer, then append a single U+000A LINE FEED (LF)
    # character to the data buffer." ... "If the data buffer's last character is a U+000A
    # LINE FEED (LF) character, then remove the last character from the data buffer."
    # The spec's example: "data: YHOO\ndata: +2\ndata: 10\n\n" is one event.
    [event] = sse_events(b"data: YHOO\ndata: +2\ndata: 10\n\n")
    assert event.data == "YHOO\n+2\n10"


def test_sse_empty_data_buffer_dispatches_nothing_and_resets_the_type():
    # "If the data buffer is an empty string, set the data buffer and the event type buffer
    # to the empty string and return."
    events = sse_events(b"event: ping\n\ndata: a\n\n")
    assert [(e.event, e.data, e.byte_start) for e in events] == [("", "a", 13)]


def test_sse_event_type_set_then_reset_after_dispatch():
    # "If the field name is "event" — Set the event type buffer to field value."
    # After dispatching: "Set the data buffer and the event type buffer to the empty string."
    events = sse_events(b"event: delta\nevent: content_block_delta\ndata: 1\n\ndata: 2\n\n")
    assert [(e.event, e.data) for e in events] == [("content_block_delta", "1"), ("", "2")]


def test_sse_id_is_the_last_event_id_buffer():
    # "If the field name is "id" — If the field value does not contain U+0000 NULL, then set
    # the last event ID buffer to the field value. Otherwise, ignore the field."
    # The buffer is not reset by dispatch: later events carry it too.
    body = b"data: a\n\nid: 1\ndata: b\n\ndata: c\n\nid: x\x00y\ndata: d\n\nid\ndata: e\n\n"
    assert [e.id for e in sse_events(body)] == [None, "1", "1", "1", ""]


def test_sse_retry_only_ascii_digits():
    # "If the field value consists of only ASCII digits, then interpret the field value as an
    # integer in base ten, and set the event stream's reconnection time to that integer.
    # Otherwise, ignore the field."
    body = b"retry: 3000\ndata: a\n\nretry: 12a\ndata: b\n\nretry: \xd9\xa3\ndata: c\n\n"
    assert [e.retry for e in sse_events(body)] == [3000, None, None]


def test_sse_unknown_and_differently_cased_fields_are_ignored():
    # "Otherwise — The field is ignored."
    events = sse_events(b"Data: no\nfoo: bar\ndata: yes\n\n")
    assert [(e.data, e.byte_start) for e in events] == [("yes", 0)]


def test_sse_end_of_body_inside_an_event():
    # "Once the end of the file is reached, any pending data must be discarded. (If the file
    # ends in the middle of an event, before the final empty line, the incomplete event is
    # not dispatched.)"
    dec = SSEDecoder()
    events = decode(dec, [b"data: a\n\ndata: b\n"])
    assert [e.data for e in events] == ["a"]
    assert (dec.leftover, dec.complete) == (8, False)
    # A line without its line end is pending data too.
    dec = SSEDecoder()
    assert decode(dec, [b"data: a\n\n: ping"]) != [] and (dec.leftover, dec.complete) == (6, False)
    dec = SSEDecoder()
    decode(dec, [b"data: a\n\n\n\n"])
    assert (dec.leftover, dec.complete) == (0, True)


def test_sse_the_spec_examples_of_two_identical_events():
    # "The following stream fires two identical events: data:test / data: test"
    events = sse_events(b"data:test\n\ndata: test\n\n")
    assert [(e.data, e.event) for e in events] == [("test", ""), ("test", "")]


def test_sse_times_and_reads_of_an_event():
    dec = SSEDecoder()
    assert dec.feed(b"event: x\nda", 5) == []
    assert dec.feed(b"", 6) == []  # an empty read still counts
    assert dec.feed(b"ta: 1\n", 7) == []
    [event] = dec.feed(b"\ndata: 2", 8)
    assert (event.first_read, event.last_read, event.t_ns) == (0, 3, 8)
    assert (event.byte_start, event.byte_end) == (0, 18)
    [event] = decode(SSEDecoder(), [b"data: 1\n\n"], times=[None])
    assert event.t_ns is None


# --- NDJSON ---------------------------------------------------------------------------------


def test_ndjson_lines_crlf_blank_and_last_line():
    dec = NDJSONDecoder()
    events = decode(dec, [b'{"a": 1}\r\n\n  \r\n{"b": "\xc3', b'\xa9"}\n{"c": 3}'])
    assert [(e.data, e.byte_start, e.byte_end, e.first_read, e.last_read) for e in events] == [
        ('{"a": 1}', 0, 10, 0, 0),
        ('{"b": "é"}', 15, 27, 0, 1),
        ('{"c": 3}', 27, 35, 1, 1),
    ]
    assert (dec.leftover, dec.complete) == (0, True)


def test_ndjson_invalid_utf8_names_line_and_byte_after_the_lines_before_it():
    dec = NDJSONDecoder()
    events = dec.feed(b'{"a": 1}\n\n{"b": "\xff"}\n{"c": 3}\n', 1)
    assert [e.data for e in events] == ['{"a": 1}']  # handed over before the error
    with pytest.raises(WireError) as raised:
        dec.finish()
    assert (raised.value.line, raised.value.offset) == (3, 17)
    assert str(raised.value) == "invalid UTF-8 in a line of NDJSON (at line 3, byte 17)"
    with pytest.raises(WireError):
        NDJSONDecoder().feed(b"\xff\n")  # nothing to hand over first: raised at once


# --- JSON array ------------------------------------------------------------------------------

GEMINI_LIKE = (
    b'[{"candidates": [{"content": {"parts": [{"text": "a } ] [ \\" {"}]}}]}\r\n'
    b',\r\n{"candidates": [{"content": {"parts": [{"text": "\\\\"}]}}],'
    b' "usageMetadata": {"promptTokenCount": 3}}\r\n]'
)


def test_json_array_elements_at_every_split():
    whole = decode(JSONArrayDecoder(), [GEMINI_LIKE])
    assert [json.loads(e.data)["candidates"][0]["content"]["parts"][0]["text"] for e in whole] == [
        'a } ] [ " {',
        "\\",
    ]
    for cut in range(len(GEMINI_LIKE) + 1):
        dec = JSONArrayDecoder()
        reads = [GEMINI_LIKE[:cut], GEMINI_LIKE[cut:]]
        events = decode(dec, reads)
        assert framed(events) == framed(whole) and dec.complete
        check_times(events, reads)


def test_json_array_strings_hold_any_bytes():
    # Not valid JSON (an escaped raw line end), brackets and non-ASCII inside strings: still
    # the element ends where its brackets close; judging its JSON is the mapper's job.
    body = b'[{"a": "\\\n}", "b": "]\\\\", "c": "\xc3\xa9"}]'
    events = decode(JSONArrayDecoder(), [body])
    assert [e.data for e in events] == ['{"a": "\\\n}", "b": "]\\\\", "c": "é"}']


@pytest.mark.parametrize(
    ("body", "message", "offset"),
    [
        (b'[{"a": 1} x', "expected ',' or ']' after an array element, found 'x'", 10),
        (b'[{"a": 1}] {}', "expected nothing after the JSON array's closing ']', found '{}'", 11),
        (b"[1, 2]", "expected a JSON object or ']' in the array, found '1, 2]'", 1),
        (b'[{"a": 1},]', "expected a JSON object after ',' in the array, found ']'", 10),
        (b'{"a": 1}', "expected '[' to open the JSON array, found '{\"a\": 1}'", 0),
    ],
)
def test_json_array_bytes_out_of_place(body, message, offset):
    with pytest.raises(WireError) as raised:
        decode(JSONArrayDecoder(), [body])
    assert (raised.value.reason, raised.value.offset) == (message, offset)


def test_json_array_truncated():
    dec = JSONArrayDecoder()
    events = decode(dec, [b'[{"a": 1}, {"b": "}'])
    assert [e.data for e in events] == ['{"a": 1}']
    assert (dec.leftover, dec.complete) == (8, False)
    dec = JSONArrayDecoder()
    decode(dec, [b'[{"a": 1}\r\n'])
    assert (dec.leftover, dec.complete) == (0, False)  # nothing lost, but the ']' never came
    dec = JSONArrayDecoder()
    assert decode(dec, [b"[]"]) == [] and dec.complete


# --- framing detection -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "framing_name"),
    [
        (b"data: {}", "sse"),
        (BOM + b"\r\n event: ping", "sse"),
        (b": keep-alive", "sse"),
        (b"id: 1", "sse"),
        (b"retry: 5", "sse"),
        (b"da", "sse"),
        (b"\n[{", "json-array"),
        (b'{"model": "llama3"', "ndjson"),
    ],
)
def test_detect_framing(first, framing_name):
    assert detect_framing(first) == framing_name
    assert decoder_for(framing_name).framing == framing_name


@pytest.mark.parametrize(
    ("first", "message"),
    [
        (b"", "not an event stream: the body is empty"),
        (b" \r\n", "not an event stream: only whitespace"),
        (b"HTTP/1.1 502", "not an event stream: starts with 'HTTP/1.1 502'"),
        (b"\x1b[31mdate", "not an event stream: starts with '\\x1b[31mdate'"),
        (b"\xff\xfed\x00", "not an event stream: starts with '\\xff\\xfed\\x00'"),
        ("é<".encode(), "not an event stream: starts with 'é<'"),
    ],
)
def test_detect_framing_refuses(first, message):
    with pytest.raises(WireError) as raised:
        detect_framing(first)
    assert (raised.value.reason, raised.value.offset) == (message, 0)


def test_decoder_for_unknown_framing():
    assert FRAMINGS == ("sse", "ndjson", "json-array")
    with pytest.raises(ValueError, match="unknown framing 'xml'"):
        decoder_for("xml")


# --- properties ------------------------------------------------------------------------------


def spec_sse(body):
    """The spec's algorithm written plainly over the whole body: what the decoder must
    give for every split. (data, type, id, retry, comment) per event."""
    text = body.decode("utf-8", "replace").removeprefix("\ufeff")
    *lines, _unterminated = re.split("\r\n|\r|\n", text)
    events = []
    data, kind, last_id, retry = None, "", None, None
    for line in lines:
        if not line:
            if data is not None:
                events.append((data.removesuffix("\n"), kind, last_id, retry, False))
            data, kind, retry = None, "", None
            continue
        if line.startswith(":"):
            events.append((line[1:].removeprefix(" "), "", None, None, True))
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data = (data or "") + value + "\n"
        elif name == "event":
            kind = value
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            retry = int(value)
    return events


sse_value = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=12
)
sse_line = st.one_of(
    st.builds(lambda v: "data:" + v, sse_value),
    st.builds(lambda v: "data: " + v, sse_value),
    st.just("data"),
    st.just(""),
    st.just(""),
    st.builds(lambda v: "event: " + v, sse_value),
    st.builds(lambda v: "id: " + v, st.sampled_from(["1", "", "a\0b", "x"])),
    st.builds(lambda v: "retry: " + v, st.sampled_from(["0", "250", "1x", "", "٣"])),
    st.builds(lambda v: ":" + v, sse_value),
    st.builds(lambda v: "Data: " + v, sse_value),
)


@st.composite
def sse_bodies(draw):
    lines = draw(st.lists(sse_line, max_size=14))
    ends = draw(st.lists(st.sampled_from(["\n", "\r", "\r\n"]), min_size=len(lines) + 1))
    body = "".join(line + end for line, end in zip(lines, ends)).encode()
    if draw(st.booleans()):
        body = BOM + body
    if draw(st.booleans()):  # invalid UTF-8 and stray bytes anywhere
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(max_size=4)) + body[at:]
    if draw(st.booleans()):  # truncated
        body = body[: draw(st.integers(0, len(body)))]
    return body


@st.composite
def splits(draw, bodies):
    body = draw(bodies)
    cuts = draw(st.lists(st.integers(0, len(body)), max_size=8))
    return body, split_at(body, cuts)


@settings(max_examples=300, deadline=None)
@given(splits(sse_bodies()))
def test_sse_same_events_for_every_split_and_as_the_spec_says(case):
    body, reads = case
    whole_dec, split_dec = SSEDecoder(), SSEDecoder()
    whole = decode(whole_dec, [body])
    events = decode(split_dec, reads)
    assert framed(events) == framed(whole)
    assert [(e.data, e.event, e.id, e.retry, e.comment) for e in events] == spec_sse(body)
    assert [e.index for e in events] == list(range(len(events)))
    assert (split_dec.leftover, split_dec.complete) == (whole_dec.leftover, whole_dec.complete)
    check_times(events, reads)


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=4,
)
json_object = st.dictionaries(st.text(max_size=6), json_value, max_size=3)
spaces = st.text(alphabet=" \t\r\n", max_size=3)


@st.composite
def ndjson_bodies(draw):
    objects = draw(st.lists(json_object, max_size=5))
    lines = [json.dumps(o, ensure_ascii=draw(st.booleans())) for o in objects]
    body = "".join(line + draw(st.sampled_from(["\n", "\r\n", "\n\n", "\n \n"])) for line in lines)
    if lines and draw(st.booleans()):
        body = body.rstrip("\r\n ")  # a last line with no line end
    return body.encode(), lines


@settings(max_examples=60, deadline=None)
@given(ndjson_bodies(), st.data())
def test_ndjson_same_events_for_every_split(case, data):
    body, lines = case
    reads = split_at(body, data.draw(st.lists(st.integers(0, len(body)), max_size=8)))
    events = decode(NDJSONDecoder(), reads)
    assert [e.data for e in events] == lines
    assert framed(events) == framed(decode(NDJSONDecoder(), [body]))
    check_times(events, reads)


@st.composite
def json_array_bodies(draw):
    elements = [
        json.dumps(o, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 1])))
        for o in draw(st.lists(json_object | st.lists(json_value, max_size=3), max_size=5))
    ]
    gaps = [draw(spaces) for _ in range(2 * len(elements) + 2)]
    inner = ",".join(gaps[2 * i] + e + gaps[2 * i + 1] for i, e in enumerate(elements))
    return (gaps[-2] + "[" + inner + gaps[-1] + "]").encode(), elements


@settings(max_examples=80, deadline=None)
@given(json_array_bodies(), st.data())
def test_json_array_same_events_for_every_split(case, data):
    body, elements = case
    reads = split_at(body, data.draw(st.lists(st.integers(0, len(body)), max_size=8)))
    dec = JSONArrayDecoder()
    events = decode(dec, reads)
    assert [e.data for e in events] == elements and dec.complete
    assert framed(events) == framed(decode(JSONArrayDecoder(), [body]))
    check_times(events, reads)


arbitrary = st.tuples(
    st.sampled_from([b"", b"[", b"{", b"data: ", b"[{", BOM]),
    st.binary(max_size=60) | st.text(alphabet='[]{},:"\\ \r\nax\xe9', max_size=60).map(str.encode),
)


@settings(max_examples=300, deadline=None)
@given(arbitrary, st.sampled_from(FRAMINGS), st.data())
def test_arbitrary_bytes_raise_nothing_but_wire_error(parts, framing_name, data):
    body = b"".join(parts)
    reads = split_at(body, data.draw(st.lists(st.integers(0, len(body)), max_size=6)))
    with suppress(WireError):
        detect_framing(body)
    dec = decoder_for(framing_name)
    try:
        events = decode(dec, reads)
    except WireError as error:
        assert error.offset is not None and 0 <= error.offset <= len(body)
    else:
        assert 0 <= dec.leftover <= len(body)
        check_times(events, reads)


# --- real recordings ---------------------------------------------------------------------------


def realstreams():
    for root in (
        Path(__file__).resolve().parents[1].parent / "shared" / "realstreams",
        Path("/work/shared/realstreams"),
    ):
        if (root / "PROVENANCE.md").is_file():
            return root
    pytest.skip("the real recordings (../shared/realstreams) are not here")


def provenance_data_events(root):
    """file name -> its "data events" column in PROVENANCE.md's first table."""
    counts = {}
    header = None
    for line in (root / "PROVENANCE.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:1] == ["file"]:
            if header is not None:
                break  # only the first table
            header = cells
        elif header and len(cells) == len(header) and cells[0] not in ("", "---"):
            counts[cells[0]] = int(cells[header.index("data events")])
    return counts


def test_real_recordings_decode_whole_with_provenance_event_counts():
    root = realstreams()
    counts = provenance_data_events(root)
    assert len(counts) >= 20
    for name, count in counts.items():
        body = (root / name).read_bytes()
        dec = decoder_for(detect_framing(body[:64]))
        events = decode(dec, [body])
        assert sum(not e.comment for e in events) == count, name
        assert (dec.leftover, dec.complete) == (0, True), name


# One recording per provider and framing, and the one with most non-ASCII text: small
# enough to feed one byte per read in well under a second in all.
SINGLE_BYTE = [
    "anthropic_claude-3-haiku_openllmetry.sse",
    "gemini_gemini-2.5-flash_mirascope.sse",
    "ollama_llama3_openllmetry.ndjson",
    "openai-chat_gpt-4o-mini_pydantic-ai_tool-call-args.sse",
    "openai-chat_gpt-5.4_ruby_llm_multibyte.sse",
    "openai-responses_gpt-4o-mini_mirascope.sse",
]


@pytest.mark.parametrize("name", SINGLE_BYTE)
def test_real_recording_fed_one_byte_per_read(name):
    path = realstreams() / name
    body = path.read_bytes()
    framing_name = detect_framing(body[:64])
    whole = decode(decoder_for(framing_name), [body])
    reads = [body[i : i + 1] for i in range(len(body))]
    events = decode(decoder_for(framing_name), reads)
    assert framed(events) == framed(whole)
    assert all(e.first_read == e.byte_start and e.last_read == e.byte_end - 1 for e in events)
