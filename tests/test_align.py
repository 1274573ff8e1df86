"""The alignment, checked against tiktoken and a byte-by-byte oracle."""

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_streamscope.analysis.align import align, align_fragments
from llm_streamscope.analysis.encodings import get_encoding
from llm_streamscope.analysis.trace import Fragment, Trace
from llm_streamscope.capture.tokenizer import LocalTokenizer, tokens_of


@pytest.fixture(scope="module")
def o200k():
    return get_encoding("o200k_base")


def fragments_of(pieces, kind="text", tool_call_id=None):
    return [Fragment(i, kind, p, 1000 * (i + 1), tool_call_id) for i, p in enumerate(pieces)]


def oracle(pieces, encoding):
    """The alignment computed the slow, obvious way: one owner per byte."""
    data = "".join(pieces).encode()
    tokens = encoding.encode_ordinary("".join(pieces))
    byte_token, byte_fragment = [], []
    for i, b in enumerate(encoding.decode_tokens_bytes(tokens)):
        byte_token += [i] * len(b)
    for j, p in enumerate(pieces):
        byte_fragment += [j] * len(p.encode())
    assert len(byte_token) == len(byte_fragment) == len(data)
    token_bounds, pos = {0}, 0
    for b in encoding.decode_tokens_bytes(tokens):
        pos += len(b)
        token_bounds.add(pos)
    frags, pos = [], 0
    for p in pieces:
        start, end = pos, pos + len(p.encode())
        touched = sorted({byte_token[k] for k in range(start, end)})
        frags.append(
            {
                "tokens": touched,
                "starts_mid": start not in token_bounds,
                "ends_mid": end not in token_bounds,
            }
        )
        pos = end
    toks = []
    for i in range(len(tokens)):
        owners = [byte_fragment[k] for k in range(len(byte_token)) if byte_token[k] == i]
        toks.append((owners[0], owners[-1]))
    return tokens, frags, toks


def check(pieces, encoding):
    a = align_fragments(fragments_of(pieces), tokens_of(encoding, "".join(pieces)))
    tokens, frags, toks = oracle(pieces, encoding)
    assert list(a.token_ids) == tokens
    assert a.text == "".join(pieces)
    for j, expected in enumerate(frags):
        got = list(range(a.fragment_token_start[j], a.fragment_token_end[j]))
        assert got == expected["tokens"], (j, pieces)
        assert a.fragment_starts_mid_token[j] == expected["starts_mid"], (j, pieces)
        assert a.fragment_ends_mid_token[j] == expected["ends_mid"], (j, pieces)
    for i, (first, last) in enumerate(toks):
        token = a.token(i)
        assert (token.first_fragment, token.last_fragment) == (first, last)
        assert token.t_ns == 1000 * (last + 1)  # completion = arrival of the last byte
        assert token.split == (first != last)
    return a


alphabet = st.one_of(
    st.characters(codec="utf-8"),
    st.sampled_from(
        ["👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "日本語", "é", "e\u0301", " ", "\n", "  ", "<|endoftext|>"]
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(alphabet, max_size=40), st.data())
def test_alignment_matches_tiktoken_for_any_fragmentation(o200k, parts, data):
    text = "".join(parts)
    # Cut anywhere between characters, allowing empty fragments.
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    pieces = [text[a:b] for a, b in pairwise(bounds)]
    check(pieces, o200k)


@settings(max_examples=200, deadline=None)
@given(st.lists(alphabet, max_size=40), st.data())
def test_alignment_when_cuts_fall_on_token_boundaries(o200k, parts, data):
    # Chunks made of whole tokens (OpenAI: exactly one each; Anthropic: a few).
    text = "".join(parts)
    ends, pos = [], 0
    for token_bytes in o200k.decode_tokens_bytes(o200k.encode_ordinary(text)):
        pos += len(token_bytes)
        ends.append(pos)
    data_bytes = text.encode()
    char_bounds = [e for e in ends if e == len(data_bytes) or (data_bytes[e] & 0xC0) != 0x80]
    every = data.draw(st.booleans())
    cuts = char_bounds if every else data.draw(st.lists(st.sampled_from(char_bounds or [0])))
    bounds = sorted({0, *cuts, len(data_bytes)})
    pieces = [data_bytes[a:b].decode() for a, b in pairwise(bounds)]
    check(pieces or [""], o200k)


def test_emoji_tokens_that_end_mid_character(o200k):
    # o200k cuts 👨 (4 bytes) into tokens of 3 and 1 bytes: a token ends inside it.
    family = "👨‍👩‍👧‍👦"
    a = check(["Hi ", family, "!"], o200k)
    char_ends = set()
    pos = 0
    for ch in a.text:
        pos += len(ch.encode())
        char_ends.add(pos)
    assert any(end not in char_ends for end in a.token_byte_ends)


def test_one_token_per_chunk_is_recognised(o200k):
    text = "Streaming makes models feel fast."
    pieces = [o200k.decode([t]) for t in o200k.encode_ordinary(text)]
    a = check(pieces, o200k)
    assert a.fragment_token_end == tuple(i + 1 for i in range(len(pieces)))
    assert not any(a.fragment_starts_mid_token) and not any(a.fragment_ends_mid_token)


def test_sub_token_fragments_split_a_token(o200k):
    a = check(["Stre", "aming"], o200k)
    assert a.fragment_ends_mid_token == (True, False)
    assert a.fragment_starts_mid_token == (False, True)
    assert a.token(0).split


def test_special_token_text_is_ordinary_text(o200k):
    a = check(["say <|end", "oftext|> now"], o200k)
    assert 199999 not in a.token_ids


def test_streams_are_aligned_separately(o200k):
    fragments = (
        Fragment(0, "reasoning", "Think", 10),
        Fragment(1, "text", "Hello", 20),
        Fragment(2, "tool_call_name", "get_weather", 30, "call_1"),
        Fragment(3, "tool_call_args", '{"city":', 40, "call_1"),
        Fragment(4, "tool_call_args", '"Paris"}', 50, "call_1"),
        Fragment(5, "text", " world", 60),
        Fragment(6, "tool_call_args", "{}", 70, "call_2"),
    )
    trace = Trace("t", "m", "o200k_base", True, None, None, "", fragments)
    alignment = align(trace, LocalTokenizer(o200k))
    assert [(s.kind, s.tool_call_id) for s in alignment.streams] == [
        ("reasoning", None),
        ("text", None),
        ("tool_call_name", "call_1"),
        ("tool_call_args", "call_1"),
        ("tool_call_args", "call_2"),
    ]
    text = alignment.stream("text")
    assert text.text == "Hello world"
    assert [f.index for f in text.fragments] == [1, 5]
    args = alignment.stream("tool_call_args", "call_1")
    assert args.text == '{"city":"Paris"}'
    positions = alignment.fragment_positions()
    assert positions[5] == (text, 1)


def test_empty_stream(o200k):
    a = align_fragments([], tokens_of(o200k, ""))
    assert a.token_count == 0 and a.text == ""
    a = align_fragments(fragments_of(["", ""]), tokens_of(o200k, ""))
    assert a.fragment_token_start == (0, 0) == a.fragment_token_end


def test_the_worked_examples_in_the_docstrings_hold():
    import doctest

    from llm_streamscope.analysis import align as align_module
    from llm_streamscope.analysis import trace as trace_module

    for module in (align_module, trace_module):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_placements_read_the_columns(o200k):
    a = check(["Stre", "aming", " is", ""], o200k)
    assert list(a.placements()) == [a.placement(j) for j in range(4)]
    assert a.placement(1).byte_start == 4 and a.placement(1).starts_mid_token
    assert a.placement(3).token_start == a.placement(3).token_end  # empty: touches no token
