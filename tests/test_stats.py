"""Stats computed on traces whose numbers are known by hand."""

import dataclasses
from itertools import accumulate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_streamscope.analysis.align import align
from llm_streamscope.analysis.encodings import get_encoding
from llm_streamscope.analysis.stats import compute_stats, percentile, ttft_band
from llm_streamscope.analysis.trace import Fragment, Trace
from llm_streamscope.capture.tokenizer import LocalTokenizer

MS = 1_000_000


@pytest.fixture(scope="module")
def o200k():
    return get_encoding("o200k_base")


def trace_of(pieces, times_ms, usage_output=None, end_ms=None, kinds=None):
    fragments = tuple(
        Fragment(i, (kinds or {}).get(i, "text"), p, int(t * MS))
        for i, (p, t) in enumerate(zip(pieces, times_ms))
    )
    return Trace(
        "t",
        "m",
        "o200k_base",
        True,
        None,
        None,
        "",
        fragments,
        usage_output=usage_output,
        end_ns=int((end_ms or times_ms[-1]) * MS),
    )


def stats_of(o200k, *args, gap_ms=50.0, **kwargs):
    trace = trace_of(*args, **kwargs)
    return compute_stats(trace, align(trace, LocalTokenizer(o200k)), gap_ms=gap_ms)


def test_one_token_per_chunk(o200k):
    pieces = ["Streaming", " feels", " fast", "."]
    assert len(o200k.encode_ordinary("".join(pieces))) == 4
    s = stats_of(o200k, pieces, [100, 110, 130, 200], usage_output=4, end_ms=205)
    assert s.ttft_ms == 100 and s.ttft_band == "fluid"  # 100 ms is no longer < 100
    assert s.ttst_ms == 10
    assert s.total_ms == 205
    assert (s.chunks, s.tokens, s.chars) == (4, 4, len("".join(pieces)))
    assert s.usage_output_tokens == 4 and s.tokens_minus_usage == 0
    assert s.gap_ms.count == 3
    assert s.gap_ms.mean == pytest.approx(100 / 3)
    assert s.gap_ms.p50 == 20 and s.gap_ms.max == 70
    assert s.gap_ms.p90 == pytest.approx(20 + 0.8 * 50)
    assert (s.stalls, s.stall_ms) == (1, 70)
    assert s.tokens_per_chunk.mean == 1 and s.one_token_chunks_pct == 100
    assert s.tokens_per_chunk_histogram == {"0": 0, "1": 4}
    assert (s.sub_token_chunks, s.split_tokens) == (0, 0)
    # (4 - 1) tokens over the 100 ms from the first chunk to the last
    assert s.tokens_per_s == pytest.approx(30)
    assert s.tokens_per_s_after_first_chunk == pytest.approx(30)
    assert s.chars_per_s == pytest.approx((s.chars - len("Streaming")) / 0.1)
    assert s.itl_ms.mean == pytest.approx(100 / 3)


def test_stall_threshold_is_configurable(o200k):
    s = stats_of(o200k, ["a", " b", " c"], [10, 30, 60], gap_ms=25)
    assert (s.stalls, s.stall_ms, s.stall_threshold_ms) == (1, 30, 25)


def test_sub_token_chunks_and_split_tokens(o200k):
    # "Streaming" is one o200k token delivered in two pieces.
    assert len(o200k.encode_ordinary("Streaming")) == 1
    s = stats_of(o200k, ["Stre", "aming", " is fast"], [50, 60, 70])
    assert s.sub_token_chunks == 2
    assert s.split_tokens == 1
    assert s.tokens_per_chunk_histogram == {"0": 1, "1": 1, "2": 1}
    assert s.one_token_chunks_pct == 0
    assert s.tokens == 3
    # The first token counts from the first chunk (50 ms); " is" and " fast" both
    # complete at 70 ms: intervals 20, 0, and the mean is AIPerf's (70 - 50) / (3 - 1).
    assert (s.itl_ms.count, s.itl_ms.mean, s.itl_ms.max) == (2, 10, 20)


def test_many_tokens_in_one_chunk_share_the_top_bucket(o200k):
    long = " one two three four five six seven eight nine ten"
    s = stats_of(o200k, ["Count:", long], [5, 9])
    assert s.tokens_per_chunk_histogram["8+"] == 1


def test_usage_difference_and_missing_usage(o200k):
    s = stats_of(o200k, ["Hello", " world"], [1, 2], usage_output=3)
    assert (s.tokens_minus_usage, s.streamed_compared, s.usage_compared_tokens) == (-1, "text", 3)
    s = stats_of(o200k, ["Hello"], [1])
    assert s.usage_output_tokens is None and s.tokens_minus_usage is None
    assert s.tokens_per_s is None and s.ttst_ms is None and s.gap_ms.mean is None


def test_empty_fragments_and_other_kinds_are_not_chunks(o200k):
    s = stats_of(
        o200k,
        ["thinking...", "", "Hi", " there"],
        [40, 50, 80, 90],
        kinds={0: "reasoning"},
    )
    assert s.ttft_ms == 80  # first non-empty *text* fragment
    assert s.chunks == 2
    (reasoning,) = s.other_streams
    assert (reasoning.kind, reasoning.chunks, reasoning.first_ms) == ("reasoning", 1, 40)


def test_an_empty_fragment_is_not_a_chunk_anywhere(o200k):
    # A redacted reasoning block arrives as one empty event.
    s = stats_of(o200k, ["", "Hi", "", " there"], [40, 80, 85, 90], kinds={0: "reasoning"})
    assert s.chunks == 2
    (reasoning,) = s.other_streams
    assert (reasoning.chunks, reasoning.tokens, reasoning.first_ms) == (0, 0, None)


def test_no_fragments(o200k):
    trace = Trace("t", "m", "o200k_base", True, None, None, "", (), end_ns=5 * MS)
    s = compute_stats(trace, align(trace, LocalTokenizer(o200k)))
    assert (s.chunks, s.tokens, s.ttft_ms, s.total_ms) == (0, 0, None, 5)


def test_percentile_interpolates_like_numpy():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([1, 2, 3, 4], 90) == pytest.approx(3.7)
    assert percentile([7], 99) == 7


@pytest.mark.parametrize(
    "ms,band",
    [
        (10, "instant"),
        (49.9, "instant"),
        (50, "responsive"),
        (99, "responsive"),
        (500, "fluid"),
        (1500, "noticed"),
        (3000, "impatient"),
        (None, None),
    ],
)
def test_ttft_bands(ms, band):
    assert ttft_band(ms) == band


# AIPerf 0.13 on the same timestamps: TTFT = first content response - request
# start; TTST = second - first; inter-chunk latency = consecutive differences; ITL
# = (last - first content) / (output tokens - 1); throughput per user = 1 / ITL;
# output tokens = all content joined, then encoded.


def test_aiperf_figures_when_the_first_chunk_carries_several_tokens(o200k):
    # "Streaming feels" is two tokens, as Anthropic and Gemini first chunks often are.
    s = stats_of(o200k, ["Streaming feels", " fast", "", "."], [100, 110, 120, 200])
    assert s.tokens == len(o200k.encode_ordinary("Streaming feels fast.")) == 4
    assert (s.ttft_ms, s.ttst_ms) == (100, 10)
    assert (s.gap_ms.count, s.gap_ms.mean, s.gap_ms.max) == (2, 50, 90)  # 10 and 90
    assert s.itl_ms.mean == (200 - 100) / (4 - 1)
    assert s.tokens_per_s == pytest.approx(3 / 0.1) == 30
    assert s.tokens_per_s == 1000 / s.itl_ms.mean
    # The other figure leaves out the two tokens of the first chunk.
    assert s.tokens_per_s_after_first_chunk == pytest.approx(2 / 0.1)
    # Intervals: the first token counts from the first chunk, the second completes with it.
    assert (s.itl_ms.count, s.itl_ms.p50, s.itl_ms.max) == (3, 10, 90)


def test_aiperf_figures_when_the_first_chunk_is_part_of_a_token(o200k):
    s = stats_of(o200k, ["Stre", "aming is", " fast"], [50, 60, 90])
    assert s.tokens == 3  # "Streaming", " is", " fast": joined first, then encoded
    assert (s.ttft_ms, s.ttst_ms) == (50, 10)
    assert (s.gap_ms.count, s.gap_ms.p50, s.gap_ms.max) == (2, 20, 30)  # 10 and 30
    assert s.itl_ms.mean == (90 - 50) / (3 - 1) == 20  # not (90 - 60) / 2
    assert s.tokens_per_s == pytest.approx(50) and s.tokens_per_s == 1000 / s.itl_ms.mean
    assert s.tokens_per_s_after_first_chunk == pytest.approx(3 / 0.04)


def test_one_token_or_no_window_has_no_rate(o200k):
    one = stats_of(o200k, ["Hello"], [5])
    assert (one.tokens, one.itl_ms.count, one.tokens_per_s) == (1, 0, None)
    together = stats_of(o200k, ["Hello world"], [5])
    assert (together.itl_ms.mean, together.tokens_per_s) == (0, None)


@settings(max_examples=60, deadline=None)
@given(
    pieces=st.lists(st.text(min_size=0, max_size=6), min_size=2, max_size=12),
    gaps=st.lists(st.integers(min_value=0, max_value=5_000_000), min_size=12, max_size=12),
)
def test_tokens_per_s_is_one_over_itl(o200k, pieces, gaps):
    times = list(accumulate(gaps[: len(pieces)], initial=1_000_000))[1:]
    fragments = tuple(Fragment(i, "text", p, t) for i, (p, t) in enumerate(zip(pieces, times)))
    trace = Trace("t", "m", "o200k_base", True, None, None, "", fragments)
    s = compute_stats(trace, align(trace, LocalTokenizer(o200k)))
    chunk_times = [f.t_ns for f in fragments if f.text]
    window_ms = (chunk_times[-1] - chunk_times[0]) / 1e6 if chunk_times else 0
    if s.tokens >= 2 and window_ms > 0:
        assert s.itl_ms.mean == window_ms / (s.tokens - 1)
        assert s.tokens_per_s == 1000 / s.itl_ms.mean
        assert s.tokens_per_s == pytest.approx((s.tokens - 1) / (window_ms / 1000))
    else:
        assert s.tokens_per_s is None


@pytest.mark.parametrize(
    "details",
    [
        {"completion_tokens_details": {"reasoning_tokens": 3, "audio_tokens": 0}},  # OpenAI
        {"output_tokens_details": {"reasoning_tokens": 3}},  # OpenAI Responses
        {"thoughtsTokenCount": 3, "candidatesTokenCount": 3},  # Gemini
        {"output_tokens_details": {"thinking_tokens": 3}},  # Anthropic
    ],
)
def test_usage_without_the_reasoning_tokens_is_compared_with_text(o200k, details):
    pieces, kinds = ["thinking...", "Hello", " world"], {0: "reasoning"}
    trace = dataclasses.replace(
        trace_of(pieces, [1, 2, 3], usage_output=6, kinds=kinds), usage_details=details
    )
    s = compute_stats(trace, align(trace, LocalTokenizer(o200k)))
    assert (s.usage_reasoning_tokens, s.usage_compared_tokens) == (3, 3)
    assert (s.streamed_compared, s.streamed_compared_tokens, s.tokens_minus_usage) == (
        "text",
        2,
        -1,
    )
    # Without the figure, reasoning is streamed model output too: 2 + 2 tokens against 6.
    s = stats_of(o200k, pieces, [1, 2, 3], usage_output=6, kinds=kinds)
    assert (s.usage_reasoning_tokens, s.streamed_compared, s.tokens_minus_usage) == (
        None,
        "text+reasoning",
        -2,
    )
