"""Map streamed fragments onto the BPE tokens of the final text.

Everything happens in UTF-8 byte space: a token may end in the middle of a
character (emoji, CJK) and a fragment may end in the middle of a token, so
character offsets cannot describe either boundary. The text of each stream is
tokenized once; fragments and tokens are then matched through their byte end
offsets, with every per-item step a C-level ``map``, ``dict`` or ``repeat`` (no
Python code runs per token) because a response can be a megabyte.

A worked example. ``"Hello world!"`` is three o200k tokens, ``Hello``, `` world``
and ``!`` (ids 13225, 2375 and 0; 5, 6 and 1 bytes, so they end at bytes 5, 11
and 12). Streamed as ``"Hel"``, ``"lo world"``, ``"!"``, the first fragment ends
inside ``Hello`` and the second starts there:

>>> from llm_streamscope.analysis.trace import Fragment
>>> tokens = ([13225, 2375, 0], [5, 6, 1])
>>> pieces = ["Hel", "lo world", "!"]
>>> a = align_fragments([Fragment(i, "text", p, 10 * i) for i, p in enumerate(pieces)], tokens)
>>> a.placement(0)
Placement(byte_start=0, token_start=0, token_end=1, starts_mid_token=False, ends_mid_token=True)
>>> a.placement(1)
Placement(byte_start=3, token_start=0, token_end=2, starts_mid_token=True, ends_mid_token=False)
>>> a.token_first_fragment, a.token_last_fragment  # Hello came in fragments 0 and 1
((0, 1, 2), (1, 1, 2))

The matching itself takes the fragments' and the tokens' byte end offsets, and
has three cases, from the cheapest. Each fragment exactly one token (as OpenAI
streams), ``"Hello"``, ``" world"``, ``"!"``: nothing to search.

>>> one_token_per_fragment(3)  # doctest: +NORMALIZE_WHITESPACE
Matching(fragment_token_start=(0, 1, 2), fragment_token_end=(1, 2, 3),
         fragment_ends_mid_token=(False, False, False),
         token_first_fragment=(0, 1, 2), token_last_fragment=(0, 1, 2))

Each fragment whole tokens, one or more (as Anthropic streams), ``"Hello world"``,
``"!"``: each token lies in one fragment.

>>> whole_tokens(fragment_ends=[11, 12], token_ends=[5, 11, 12], sizes=[11, 1])
... # doctest: +NORMALIZE_WHITESPACE
Matching(fragment_token_start=(0, 2), fragment_token_end=(2, 3),
         fragment_ends_mid_token=(False, False),
         token_first_fragment=(0, 0, 1), token_last_fragment=(0, 0, 1))

Anything else, such as the split above: a token can span fragments.

>>> any_fragments(fragment_ends=[3, 11, 12], token_ends=[5, 11, 12], sizes=[3, 8, 1])
... # doctest: +NORMALIZE_WHITESPACE
Matching(fragment_token_start=(0, 0, 2), fragment_token_end=(1, 2, 3),
         fragment_ends_mid_token=(True, False, False),
         token_first_fragment=(0, 1, 2), token_last_fragment=(1, 1, 2))
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate, chain, compress, count, repeat
from operator import add, attrgetter, is_, not_, sub
from typing import TYPE_CHECKING, cast

from .trace import Alignment, Fragment, StreamAlignment, Trace

if TYPE_CHECKING:
    from .tokens import Tokenizer, Tokens


@dataclass(frozen=True, slots=True)
class Matching:
    """How one stream's fragments meet its tokens: the columns a ``StreamAlignment``
    keeps. Fragments and tokens are numbered within the stream."""

    fragment_token_start: tuple[int, ...]
    """First token that fragment j touches."""
    fragment_token_end: tuple[int, ...]
    """One past the last token that fragment j touches (its start when it is empty)."""
    fragment_ends_mid_token: tuple[bool, ...]
    token_first_fragment: tuple[int, ...]
    """The fragment that delivered token i's first byte."""
    token_last_fragment: tuple[int, ...]
    """The fragment that delivered token i's last byte."""


def align(trace: Trace, tokenizer: Tokenizer) -> Alignment:
    """Align every stream of ``trace`` (text, reasoning, each tool call) on its own.

    The tokenizer is asked once, for every stream's text together: when it is a
    ``TokenizerProcess`` that is one round trip.
    """
    streams = list(trace.streams().values())
    texts = ["".join(map(attrgetter("text"), fragments)) for fragments in streams]
    return Alignment(
        encoding_name=tokenizer.name,
        streams=tuple(map(align_fragments, streams, tokenizer.tokenize(texts))),
    )


def align_fragments(
    fragments: list[Fragment] | tuple[Fragment, ...], tokens: Tokens
) -> StreamAlignment:
    """Align one stream's fragments (all of the same kind and tool call) to tokens.

    ``tokens`` are the ids and byte sizes of the tokens of the fragments' joined
    text, as ``Tokenizer.tokenize`` gives them (see the module's example).
    """
    fragments = tuple(fragments)
    first = fragments[0] if fragments else None
    texts = list(map(attrgetter("text"), fragments))
    text = "".join(texts)
    token_ids, token_sizes = tokens
    token_ends = list(accumulate(token_sizes))
    # In ASCII text characters are bytes: no fragment needs encoding to be measured.
    sizes = list(map(len, texts if text.isascii() else map(str.encode, texts)))
    fragment_ends = list(accumulate(sizes))

    if fragment_ends == token_ends:
        matching = one_token_per_fragment(len(token_ends))
    else:
        matching = whole_tokens(fragment_ends, token_ends, sizes) or any_fragments(
            fragment_ends, token_ends, sizes
        )
    ends_mid = matching.fragment_ends_mid_token
    return StreamAlignment(
        kind=first.kind if first else "text",
        tool_call_id=first.tool_call_id if first else None,
        fragments=fragments,
        text=text,
        token_ids=tuple(token_ids),
        token_byte_ends=tuple(token_ends),
        token_first_fragment=matching.token_first_fragment,
        token_last_fragment=matching.token_last_fragment,
        fragment_byte_ends=tuple(fragment_ends),
        fragment_token_start=matching.fragment_token_start,
        fragment_token_end=matching.fragment_token_end,
        fragment_starts_mid_token=(False, *ends_mid[:-1]) if ends_mid else (),
        fragment_ends_mid_token=ends_mid,
    )


def one_token_per_fragment(n: int) -> Matching:
    """``n`` fragments that are exactly one token each: fragment j is token j."""
    each = tuple(range(n))
    return Matching(
        fragment_token_start=each,
        fragment_token_end=tuple(range(1, n + 1)),
        fragment_ends_mid_token=(False,) * n,
        token_first_fragment=each,
        token_last_fragment=each,
    )


def whole_tokens(
    fragment_ends: list[int], token_ends: list[int], sizes: list[int]
) -> Matching | None:
    """Fragments that each hold whole tokens (one or more), so that every token lies
    in one fragment; None when some fragment ends inside a token or is empty."""
    if 0 in sizes:
        return None
    ends = set(fragment_ends)
    is_fragment_end = list(map(ends.__contains__, token_ends))
    if is_fragment_end.count(True) != len(fragment_ends):
        return None
    # Tokens ending at or before each fragment's end; fragments ending before each token.
    tokens_through = tuple(compress(count(1), is_fragment_end))
    fragments_before = tuple(accumulate(is_fragment_end[:-1], initial=0))
    return Matching(
        fragment_token_start=(0, *tokens_through[:-1]),
        fragment_token_end=tokens_through,
        fragment_ends_mid_token=(False,) * len(fragment_ends),
        token_first_fragment=fragments_before,
        token_last_fragment=fragments_before,
    )


def any_fragments(fragment_ends: list[int], token_ends: list[int], sizes: list[int]) -> Matching:
    """Any fragments: a fragment may end inside a token, or be empty."""
    # le[j]: how many tokens end at or before fragment j's end. A dict finds the
    # fragment ends that are also token ends; the rest end inside a token (mid).
    hits = list(map(dict(zip(token_ends, count(1))).get, fragment_ends))
    mid = [False] * len(fragment_ends)
    if None in hits:
        for j in compress(count(), map(is_, hits, repeat(None))):
            hits[j] = bisect_right(token_ends, fragment_ends[j])
            mid[j] = fragment_ends[j] != 0
    le = cast("list[int]", hits)
    # A fragment touches tokens from the one holding its first byte up to the one
    # holding its last byte: [le[j-1], le[j] + mid[j]). The same sums, read as
    # "token starts before this fragment's end", give each token's first fragment.
    reach = list(map(add, le, mid))
    before = [0, *reach[:-1]]
    token_start = [0, *le[:-1]]
    token_end = reach[:]
    if 0 in sizes:  # empty fragments touch no token
        for j in compress(count(), map(not_, sizes)):
            token_end[j] = token_start[j]
    # Runs: fragment j completes le[j] - le[j-1] tokens, starts reach[j] - before[j].
    token_last = chain.from_iterable(map(repeat, count(), map(sub, le, token_start)))
    token_first = chain.from_iterable(map(repeat, count(), map(sub, reach, before)))
    return Matching(
        fragment_token_start=tuple(token_start),
        fragment_token_end=tuple(token_end),
        fragment_ends_mid_token=tuple(mid),
        token_first_fragment=tuple(token_first),
        token_last_fragment=tuple(token_last),
    )
