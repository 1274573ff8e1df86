"""Stats computed on traces whose numbers are known by hand."""

import pytest

from llm_streamscope.align import align
from llm_streamscope.encodings import get_encoding
from llm_streamscope.stats import compute_stats, percentile, ttft_band
from llm_streamscope.tokenizer import LocalTokenizer
from llm_streamscope.trace import Fragment, Trace

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
    # 3 tokens after the first chunk over the 100 ms after it
    assert s.tokens_per_s == pytest.approx(30)
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
    # tokens complete at 60, 70, 70 ms: " is" and " fast" share a chunk, so one ITL is 0
    assert (s.itl_ms.count, s.itl_ms.mean, s.itl_ms.max) == (2, 5, 10)


def test_many_tokens_in_one_chunk_share_the_top_bucket(o200k):
    long = " one two three four five six seven eight nine ten"
    s = stats_of(o200k, ["Count:", long], [5, 9])
    assert s.tokens_per_chunk_histogram["8+"] == 1


def test_usage_difference_and_missing_usage(o200k):
    assert stats_of(o200k, ["Hello", " world"], [1, 2], usage_output=3).tokens_minus_usage == -1
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
