"""How the simulator cuts a text into chunks and when it sends them.

Everything here is pure and deterministic given a seed: a profile takes its
randomness from a ``random.Random`` made by :func:`rng_for` (``seed=None`` gives
fresh randomness). Nothing sleeps; the server turns the numbers into sleeps.

Chunk layouts work in UTF-8 byte space. A layout is the list of byte offsets at
which the text is cut (each offset the end of one chunk); every cut lies on a
character boundary, so each chunk is valid UTF-8 and can be sent as a JSON
string, exactly as real providers do.

The numbers behind the profiles come from the real recordings in
``../shared/realstreams`` (OpenAI chat: one token per content chunk, Anthropic:
about 2.6 tokens per text delta, Gemini: about 100 characters per chunk) and
from published latency figures for the models each profile is named after.
``subtoken`` and ``words`` are synthetic shapes whose timing borrows a recorded
or a published one (see each class, and ``benchmarks/realstreams.py --profiles``).
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

from .texts import TokenizedText, _is_char_boundary, sample_names, sample_text, tokenize

DEFAULT_PROFILE = "gpt-4o-mini"


# --------------------------------------------------------------------------
# Randomness


def rng_for(seed: int | None, purpose: str) -> random.Random:
    """A random generator for one purpose ("chunks", "timing", ...).

    With a seed, the generator is fully determined by (seed, purpose), so the
    chunking and the timing of a request are independent streams that do not
    disturb each other. ``random.Random`` hashes a str seed with SHA-512, which
    does not depend on ``PYTHONHASHSEED``. With ``seed=None`` it is fresh.
    """
    if seed is None:
        return random.Random()
    return random.Random(f"streamscope-sim:{seed}:{purpose}")


# --------------------------------------------------------------------------
# Timing


@dataclass(frozen=True)
class Timing:
    """TTFT and inter-chunk gap distributions, all in milliseconds.

    A gap is drawn from a three-part mixture:

    * with probability ``burst_share``: a burst, uniform in ``burst_ms`` (several
      chunks leaving the server together, as network batching does);
    * with probability ``stall_share``: a stall, ``stall_min_ms`` plus an
      exponential excess with mean ``stall_excess_ms``;
    * otherwise the steady rhythm: log-normal with median ``median_ms`` and
      shape ``sigma``, clipped to ``[floor_ms, stall_min_ms]`` so that the share
      of gaps above ``stall_min_ms`` is the stall share.

    Every gap is clipped to ``max_ms``. TTFT is triangular on ``ttft_ms`` (low,
    mode, high).
    """

    ttft_ms: tuple[float, float, float]
    median_ms: float
    sigma: float
    floor_ms: float
    burst_share: float
    burst_ms: tuple[float, float]
    stall_share: float
    stall_min_ms: float
    stall_excess_ms: float
    max_ms: float

    def ttft(self, rng: random.Random) -> float:
        """One time to first token, in seconds."""
        low, mode, high = self.ttft_ms
        return rng.triangular(low, high, mode) / 1000.0

    def gap(self, rng: random.Random) -> float:
        """One inter-chunk gap, in seconds."""
        u = rng.random()
        if u < self.burst_share:
            ms = rng.uniform(*self.burst_ms)
        elif u < self.burst_share + self.stall_share:
            ms = self.stall_min_ms + rng.expovariate(1.0 / self.stall_excess_ms)
        else:
            ms = self.median_ms * math.exp(self.sigma * rng.gauss(0.0, 1.0))
            ms = min(max(ms, self.floor_ms), self.stall_min_ms)
        return min(ms, self.max_ms) / 1000.0


# --------------------------------------------------------------------------
# Profiles


@dataclass(frozen=True)
class Profile:
    """How one kind of provider packages and paces a streamed answer.

    Subclasses say how to cut (:meth:`cut_points`); ``timing`` says when.
    """

    name: ClassVar[str]
    random_chunking: ClassVar[bool] = True
    """False when the layout does not depend on the seed (so it can be cached)."""
    timing: Timing

    def cut_points(self, tt: TokenizedText, rng: random.Random) -> list[int]:
        """The byte offsets at which the chunks of ``tt`` end (last = ``len(tt.data)``)."""
        raise NotImplementedError

    def cut(self, text: str, seed: int | None = None) -> list[str]:
        """Cut ``text`` into the chunks this profile would send."""
        return list(layout(text, self, seed).chunks)

    def ttft(self, seed: int | None = None) -> float:
        """The TTFT (seconds) a request with this seed gets."""
        return self.timing.ttft(rng_for(seed, "timing"))

    def delays(self, seed: int | None = None) -> Iterator[float]:
        """TTFT, then one gap per following chunk, forever (seconds).

        This is the exact sequence the server sleeps by (before dividing by
        ``speed``): the first value is the wait before the first content chunk,
        the i-th after that the wait between chunk i-1 and chunk i.
        """
        rng = rng_for(seed, "timing")
        yield self.timing.ttft(rng)
        gap = self.timing.gap
        while True:
            yield gap(rng)

    def gaps(self, n: int, seed: int | None = None) -> list[float]:
        """The first ``n`` inter-chunk gaps (seconds) of a request with this seed."""
        it = self.delays(seed)
        next(it)
        return [next(it) for _ in range(n)]


def _group_tokens(tt: TokenizedText, sizes: Iterator[int]) -> list[int]:
    """Cut after groups of tokens, growing a group until its end is a character boundary."""
    points: list[int] = []
    want = next(sizes)
    have = 0
    for end in tt.token_ends:
        have += 1
        if have >= want and _is_char_boundary(tt.data, end):
            points.append(end)
            want = next(sizes)
            have = 0
    if tt.data and (not points or points[-1] != len(tt.data)):
        points.append(len(tt.data))  # only reachable for text that is not UTF-8 clean
    return points


@dataclass(frozen=True)
class Gpt4oMini(Profile):
    """OpenAI chat completions, gpt-4o-mini: one o200k token per content chunk.

    Chunking: in every real OpenAI chat stream in ``../shared/realstreams`` the
    number of content chunks equals ``usage.completion_tokens`` (gpt-4o-mini
    137/137 and 133/133, gpt-4.1-nano 300/300, gpt-3.5-turbo 82/82). A token that
    is not valid UTF-8 on its own (a piece of an emoji or CJK character) cannot
    go into a JSON string, so it is merged with the following tokens until the
    bytes decode; no recorded chunk splits a character.

    Timing: calibrated to published gpt-4o-mini figures (Artificial Analysis
    and OpenRouter report roughly 70-90 output tokens/s once text flows): mean
    gap 13 ms (~77 chunks/s), about 7% of gaps over 50 ms (stalls), none above
    ~130 ms, and a TTFT of 40-95 ms as seen from a nearby client with a warm
    connection. About 8% of gaps are sub-millisecond bursts, as in the
    OpenAI cookbook recording (``timing_openai-chat_...cookbook.tsv``) where
    several deltas share one receive time.
    """

    name: ClassVar[str] = "gpt-4o-mini"
    random_chunking: ClassVar[bool] = False
    timing: Timing = Timing(
        ttft_ms=(40.0, 55.0, 95.0),
        median_ms=8.15,
        sigma=0.45,
        floor_ms=2.0,
        burst_share=0.08,
        burst_ms=(0.1, 1.0),
        stall_share=0.07,
        stall_min_ms=50.0,
        stall_excess_ms=25.0,
        max_ms=130.0,
    )

    def cut_points(self, tt: TokenizedText, rng: random.Random) -> list[int]:
        return _group_tokens(tt, _constant(1))


@dataclass(frozen=True)
class ClaudeHaiku(Profile):
    """Anthropic Messages, Claude Haiku: a few tokens per text delta.

    Chunking: Anthropic batches tokens; in the recordings output_tokens/text
    deltas is 171/70 = 2.4 (claude-3-haiku) and 296/104 = 2.8 (claude-3.5
    sonnet). Here each delta is 1-5 o200k tokens with weights giving a mean of
    about 2.6 (grown, like the OpenAI profile, until it ends on a character
    boundary). Real deltas are cut by Claude's own tokenizer, so relative to
    o200k they sometimes end mid-token; this profile keeps o200k boundaries.

    Timing: TTFT 400-700 ms and a mean gap of ~31 ms with ~2% stalls of
    100-300+ ms, in line with published Claude Haiku latency figures
    (TTFT ~0.5-0.7 s, 50-80 output tokens/s at ~2.6 tokens per delta).
    """

    name: ClassVar[str] = "claude-haiku"
    timing: Timing = Timing(
        ttft_ms=(400.0, 520.0, 700.0),
        median_ms=27.0,
        sigma=0.35,
        floor_ms=5.0,
        burst_share=0.03,
        burst_ms=(0.2, 2.0),
        stall_share=0.02,
        stall_min_ms=100.0,
        stall_excess_ms=80.0,
        max_ms=600.0,
    )
    tokens_per_delta: tuple[float, ...] = (0.22, 0.27, 0.25, 0.17, 0.09)
    """Weights of 1, 2, 3, 4, 5 tokens per delta (mean 2.64)."""

    def cut_points(self, tt: TokenizedText, rng: random.Random) -> list[int]:
        cumulative = list(itertools.accumulate(self.tokens_per_delta))
        total = cumulative[-1]
        random_ = rng.random
        bisect_ = bisect.bisect

        def draw() -> Iterator[int]:
            while True:
                yield 1 + bisect_(cumulative, random_() * total)

        return _group_tokens(tt, draw())


@dataclass(frozen=True)
class GeminiFlash(Profile):
    """Google Gemini, gemini-2.5-flash: ~100 characters per chunk, cut anywhere.

    Chunking: the Gemini recordings carry 70-175 characters per chunk, about
    100-120 on average (gemini-2.5-pro 102, gemini-2.5-flash 123). The cut falls
    at a character (code point) boundary that pays no attention to o200k
    tokens, so chunks regularly end in the middle of a token, even of a
    word - and in multilingual text inside a grapheme cluster (between an
    emoji and its ZWJ or skin-tone modifier). Lengths are triangular on
    ``chars_per_chunk`` (low, mode, high).

    Timing: few, large chunks: TTFT 500-900 ms and gaps of 100-250 ms
    (published gemini-2.5-flash figures: TTFT ~0.5-1 s, 150-250 output
    tokens/s, i.e. roughly 25 tokens per chunk every ~150 ms).
    """

    name: ClassVar[str] = "gemini-flash"
    timing: Timing = Timing(
        ttft_ms=(500.0, 650.0, 900.0),
        median_ms=160.0,
        sigma=0.2,
        floor_ms=100.0,
        burst_share=0.0,
        burst_ms=(0.0, 0.0),
        stall_share=0.0,
        stall_min_ms=250.0,
        stall_excess_ms=1.0,
        max_ms=250.0,
    )
    chars_per_chunk: tuple[float, float, float] = (70.0, 100.0, 140.0)

    def cut_points(self, tt: TokenizedText, rng: random.Random) -> list[int]:
        low, mode, high = self.chars_per_chunk
        points: list[int] = []
        pos = 0  # code point index
        byte = 0
        text = tt.text
        while pos < len(text):
            n = max(1, round(rng.triangular(low, high, mode)))
            piece = text[pos : pos + n]
            pos += len(piece)
            byte += len(piece.encode("utf-8"))
            points.append(byte)
        return points


@dataclass(frozen=True)
class Subtoken(Profile):
    """Fragments smaller than tokens: every o200k token of two or more characters is cut.

    A synthetic shape, for what no recording shows but a client must survive (an
    incremental detokenizer or a proxy that re-chunks can send it): chunks of 1-3
    characters (weights ``chars_per_chunk``, mean 1.8), always cut at a token's
    end as well, so a chunk never spans two tokens and a long token arrives in
    several pieces. Cuts fall only on character boundaries, so each chunk is
    valid UTF-8; a character that o200k itself splits into several tokens stays
    whole in one chunk. That is 0.32 tokens per chunk on the prose sample, 0.39
    on code, 0.49 on multilingual.

    Timing: gpt-4o-mini's TTFT, bursts and stall lengths, with the steady gap and
    the stall share scaled by 0.35 tokens per chunk (median 2.7 ms, 2.5% stalls):
    a mean gap of ~4.6 ms against gpt-4o-mini's 13 ms per token, so tokens per
    second stay close to gpt-4o-mini's.
    """

    name: ClassVar[str] = "subtoken"
    timing: Timing = Timing(
        ttft_ms=(40.0, 55.0, 95.0),
        median_ms=2.7,
        sigma=0.45,
        floor_ms=0.8,
        burst_share=0.08,
        burst_ms=(0.1, 1.0),
        stall_share=0.025,
        stall_min_ms=50.0,
        stall_excess_ms=25.0,
        max_ms=130.0,
    )
    chars_per_chunk: tuple[float, ...] = (0.4, 0.4, 0.2)
    """Weights of 1, 2, 3 characters per chunk."""

    def cut_points(self, tt: TokenizedText, rng: random.Random) -> list[int]:
        data = tt.data
        cumulative = list(itertools.accumulate(self.chars_per_chunk))
        total = cumulative[-1]
        token_ends = set(tt.token_ends)
        points: list[int] = []
        want = 1 + bisect.bisect(cumulative, rng.random() * total)
        have = 0
        for end in range(1, len(data) + 1):
            if not _is_char_boundary(data, end):
                continue
            have += 1
            if have >= want or end in token_ends:
                points.append(end)
                want = 1 + bisect.bisect(cumulative, rng.random() * total)
                have = 0
        if data and points[-1] != len(data):
            points.append(len(data))
        return points


_WORD = re.compile(r"[^\S\n]*\S+(?:[^\S\n]*\n)*")
"""A word: the spaces before it, its non-space run, and the line ends after it."""


@dataclass(frozen=True)
class Words(Profile):
    """One chunk per word, whitespace attached as the providers attach it.

    A synthetic shape, borrowed from the Ollama recordings, where nearly every
    line holds one word (179 of 203 lines of gemma3:1b, 49 of 50 of llama3): the
    spaces before a word lead its chunk (``" did"``), the line ends after it close
    it (``"?\\n\\n"``). Any whitespace left over (a text's leading line ends) goes
    with the next word. A run without spaces (CJK text, a URL) is one word.

    Timing: the llama3 recording's (``ollama_llama3_openllmetry.ndjson``,
    server-side ``created_at``): a steady local model, gaps of 31.7-33.8 ms
    (median 32.0 ms, so ``sigma`` 0.03), no bursts or stalls, and a TTFT around its
    ``load_duration`` + ``prompt_eval_duration``, 315 ms.
    """

    name: ClassVar[str] = "words"
    random_chunking: ClassVar[bool] = False
    timing: Timing = Timing(
        ttft_ms=(250.0, 315.0, 400.0),
        median_ms=32.0,
        sigma=0.03,
        floor_ms=30.0,
        burst_share=0.0,
        burst_ms=(0.0, 0.0),
        stall_share=0.0,
        stall_min_ms=40.0,
        stall_excess_ms=1.0,
        max_ms=40.0,
    )

    def cut_points(self, tt: TokenizedText, rng: random.Random) -> list[int]:
        text = tt.text
        points: list[int] = []
        byte = 0
        start = 0
        for match in _WORD.finditer(text):
            byte += len(text[start : match.end()].encode("utf-8"))
            start = match.end()
            points.append(byte)
        if not points:  # nothing but whitespace (or nothing)
            return [len(tt.data)] if tt.data else []
        points[-1] = len(tt.data)  # whitespace after the last word closes it
        return points


def _constant(n: int) -> Iterator[int]:
    while True:
        yield n


PROFILES: dict[str, Profile] = {
    p.name: p for p in (Gpt4oMini(), ClaudeHaiku(), GeminiFlash(), Subtoken(), Words())
}
"""The profiles by name; ``gpt-4o-mini`` is the default."""


def get_profile(name: str) -> Profile:
    """A profile by name; unknown names raise ``KeyError`` listing the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; known profiles: {', '.join(PROFILES)}") from None


# --------------------------------------------------------------------------
# Layouts and plans


@dataclass(frozen=True)
class Layout:
    """One pass of a text cut into chunks."""

    tokenized: TokenizedText
    points: tuple[int, ...]
    """Byte offset at which each chunk ends."""
    chunks: tuple[str, ...]
    """The chunk texts (``"".join(chunks) == text``)."""


def _make_layout(tt: TokenizedText, profile: Profile, rng: random.Random) -> Layout:
    points = tuple(profile.cut_points(tt, rng))
    data = tt.data
    starts = (0, *points[:-1])
    chunks = tuple(data[a:b].decode("utf-8") for a, b in zip(starts, points))
    return Layout(tt, points, chunks)


@lru_cache(maxsize=256)
def _cached_layout(text: str, profile: Profile, seed: int | None) -> Layout:
    return _make_layout(tokenize(text), profile, rng_for(seed, "chunks"))


def layout(text: str, profile: Profile, seed: int | None = None) -> Layout:
    """The chunk layout of ``text`` under ``profile``.

    Cached per (text, profile) when the layout does not depend on the seed,
    and per (text, profile, seed) when it does and a seed is given; only a
    random layout without a seed is recomputed (the tokenization still comes
    from the cache, so no tokenizer work happens).
    """
    if not profile.random_chunking:
        return _cached_layout(text, profile, None)
    if seed is not None:
        return _cached_layout(text, profile, seed)
    return _make_layout(tokenize(text), profile, rng_for(None, "chunks"))


@dataclass(frozen=True)
class Plan:
    """What one response will send: which chunks, how they end, how many tokens.

    The chunk texts come from :meth:`chunks`, a generator, so a plan for 100,000
    chunks costs nothing before its first chunk.
    """

    layout: Layout
    n_full: int
    """Content chunks sent whole (cycling through the layout)."""
    tail: str
    """A last, shortened chunk when ``max_tokens`` cuts inside a chunk ("" for none)."""
    end: int
    """Byte offset in the (cycled) text where the content ends."""
    finish_reason: str

    @property
    def n_chunks(self) -> int:
        return self.n_full + (1 if self.tail else 0)

    @property
    def completion_tokens(self) -> int:
        """Tokens in the text sent: whole passes times the text's tokens, plus the
        tokens the last pass touched (a token cut short counts as generated)."""
        tt = self.layout.tokenized
        if not tt.data:
            return 0
        passes, rem = divmod(self.end, len(tt.data))
        return passes * tt.n_tokens + tt.tokens_touched(rem)

    def chunks(self) -> Iterator[str]:
        texts = self.layout.chunks
        per_pass = len(texts)
        full, part = divmod(self.n_full, per_pass) if per_pass else (0, 0)
        for _ in range(full):
            yield from texts
        yield from texts[:part]
        if self.tail:
            yield self.tail

    def text(self) -> str:
        """Everything the plan sends, concatenated."""
        return "".join(self.chunks())


def plan(
    text: str,
    profile: Profile,
    *,
    seed: int | None = None,
    chunks: int | None = None,
    max_tokens: int | None = None,
) -> Plan:
    """Plan a response: one pass over ``text``, or exactly ``chunks`` chunks cycling
    through it, cut short after ``max_tokens`` tokens (``finish_reason="length"``)."""
    lay = layout(text, profile, seed)
    tt = lay.tokenized
    points = lay.points
    per_pass = len(points)
    size = len(tt.data)
    n = per_pass if chunks is None else chunks
    if per_pass == 0:
        return Plan(lay, 0, "", 0, "stop")

    def end_of(i: int) -> int:
        """Byte offset (in the cycled text) where chunk i ends; end_of(-1) == 0."""
        if i < 0:
            return 0
        passes, j = divmod(i, per_pass)
        return passes * size + points[j]

    if max_tokens is not None:
        passes, rem_tokens = divmod(max_tokens, tt.n_tokens)
        rem = tt.token_ends[rem_tokens - 1] if rem_tokens else 0
        while not _is_char_boundary(tt.data, rem):
            rem -= 1  # the limit fell inside a character: stop before it
        limit = passes * size + rem
        # Number of chunks that end at or before the limit.
        passes, rem = divmod(limit, size)
        fit = passes * per_pass + bisect.bisect_right(points, rem)
        if fit < n:
            start = end_of(fit - 1)
            a, b = start % size, limit - (start - start % size)
            tail = tt.data[a:b].decode("utf-8") if b > a else ""
            return Plan(lay, fit, tail, limit, "length")
    return Plan(lay, n, "", end_of(n - 1), "stop")


def prepare_samples() -> None:
    """Tokenize every sample text and lay it out for the seed-independent profiles."""
    for name in sample_names():
        text = sample_text(name)
        tokenize(text)
        for profile in PROFILES.values():
            if not profile.random_chunking:
                layout(text, profile)
