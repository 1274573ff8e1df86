"""Map streamed fragments onto the BPE tokens of the final text.

Everything happens in UTF-8 byte space: a token may end in the middle of a
character (emoji, CJK) and a fragment may end in the middle of a token, so
character offsets cannot describe either boundary. The text of each stream is
tokenized once; fragments and tokens are then matched through their byte end
offsets, with every per-item step a C-level ``map``, ``dict`` or ``repeat`` (no
Python code runs per token) because a response can be a megabyte.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from itertools import accumulate, chain, compress, count, repeat
from operator import add, attrgetter, is_, not_, sub
from typing import TYPE_CHECKING, cast

from .trace import Alignment, Fragment, StreamAlignment, Trace

if TYPE_CHECKING:
    from .tokenizer import Tokenizer, Tokens


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
    text, as ``Tokenizer.tokenize`` gives them.

    >>> enc = tiktoken.get_encoding("o200k_base")
    >>> fragments = [Fragment(0, "text", "Hel", 5), Fragment(1, "text", "lo!", 9)]
    >>> a = align_fragments(fragments, tokens_of(enc, "Hello!"))
    >>> a.fragment_ends_mid_token
    (True, False)
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

    n = len(token_ends)
    if fragment_ends == token_ends:
        # Every fragment is exactly one token, as OpenAI streams: nothing to search.
        ends_mid: tuple[bool, ...] = (False,) * n
        token_start: list[int] | tuple[int, ...] = tuple(range(n))
        token_end: list[int] | tuple[int, ...] = tuple(range(1, n + 1))
        token_first_fragment: Iterable[int] = token_start
        token_last_fragment: Iterable[int] = token_start
    elif (subset := _ends_on_token_boundaries(fragment_ends, token_ends, sizes)) is not None:
        # Every fragment is whole tokens (one or more): each token lies in one fragment.
        le, fragments_before = subset
        ends_mid = (False,) * len(fragments)
        token_start = [0, *le[:-1]]
        token_end = le
        token_first_fragment = token_last_fragment = tuple(fragments_before)
    else:
        # le[j]: how many tokens end at or before fragment j's end. A dict finds the
        # fragment ends that are also token ends; the rest end inside a token (mid).
        hits = list(map(dict(zip(token_ends, count(1))).get, fragment_ends))
        mid = [False] * len(fragments)
        if None in hits:
            for j in compress(count(), map(is_, hits, repeat(None))):
                hits[j] = bisect_right(token_ends, fragment_ends[j])
                mid[j] = fragment_ends[j] != 0
        le = cast("list[int]", hits)
        ends_mid = tuple(mid)
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
        token_last_fragment = chain.from_iterable(map(repeat, count(), map(sub, le, token_start)))
        token_first_fragment = chain.from_iterable(map(repeat, count(), map(sub, reach, before)))
    return StreamAlignment(
        kind=first.kind if first else "text",
        tool_call_id=first.tool_call_id if first else None,
        fragments=fragments,
        text=text,
        token_ids=tuple(token_ids),
        token_byte_ends=tuple(token_ends),
        token_first_fragment=tuple(token_first_fragment),
        token_last_fragment=tuple(token_last_fragment),
        fragment_byte_ends=tuple(fragment_ends),
        fragment_token_start=tuple(token_start),
        fragment_token_end=tuple(token_end),
        fragment_starts_mid_token=(False, *ends_mid[:-1]) if ends_mid else (),
        fragment_ends_mid_token=ends_mid,
    )


def _ends_on_token_boundaries(
    fragment_ends: list[int], token_ends: list[int], sizes: list[int]
) -> tuple[list[int], list[int]] | None:
    """For fragments that all end where a token ends (and none is empty):
    (tokens ending at or before each fragment's end, fragments before each token).
    None otherwise."""
    if 0 in sizes:
        return None
    ends = set(fragment_ends)
    is_fragment_end = list(map(ends.__contains__, token_ends))
    if is_fragment_end.count(True) != len(fragment_ends):
        return None
    before = list(accumulate(is_fragment_end, initial=0))
    before.pop()
    return list(compress(count(1), is_fragment_end)), before
