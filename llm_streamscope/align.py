"""Map streamed fragments onto the BPE tokens of the final text.

Everything happens in UTF-8 byte space: a token may end in the middle of a
character (emoji, CJK) and a fragment may end in the middle of a token, so
character offsets cannot describe either boundary. The text of each stream is
tokenized once; fragments and tokens are then matched by binary search over the
two sorted lists of byte end offsets, with every per-item step done by C-level
``map`` calls so that a megabyte aligns in about the time of one encode.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from functools import partial
from itertools import accumulate
from typing import TYPE_CHECKING

from .trace import Alignment, Fragment, StreamAlignment, Trace

if TYPE_CHECKING:
    import tiktoken


def align(trace: Trace, encoding: tiktoken.Encoding) -> Alignment:
    """Align every stream of ``trace`` (text, reasoning, each tool call) on its own."""
    return Alignment(
        encoding_name=encoding.name,
        streams=tuple(
            align_fragments(fragments, encoding) for fragments in trace.streams().values()
        ),
    )


def align_fragments(
    fragments: list[Fragment] | tuple[Fragment, ...], encoding: tiktoken.Encoding
) -> StreamAlignment:
    """Align one stream's fragments (all of the same kind and tool call) to tokens.

    Special-token text such as ``<|endoftext|>`` is encoded as ordinary text: it is
    what the model wrote, not a control token.

    >>> enc = tiktoken.get_encoding("o200k_base")
    >>> a = align_fragments([Fragment(0, "text", "Hel", 5), Fragment(1, "text", "lo!", 9)], enc)
    >>> a.fragment_ends_mid_token
    (True, False)
    """
    fragments = tuple(fragments)
    first = fragments[0] if fragments else None
    encoded = [f.text.encode("utf-8") for f in fragments]
    data = b"".join(encoded)
    text = data.decode("utf-8")
    token_ids = tuple(encoding.encode_ordinary(text))
    token_ends = tuple(accumulate(map(len, encoding.decode_tokens_bytes(list(token_ids)))))
    fragment_ends = tuple(accumulate(map(len, encoded)))
    fragment_starts = (0, *fragment_ends[:-1])
    token_starts = (0, *token_ends[:-1])

    # The fragment holding byte p is the first one whose end is > p; empty
    # fragments hold no byte and are skipped naturally. For a token's last byte
    # (end - 1) that is the first fragment whose end is >= the token's end.
    token_first_fragment = tuple(map(partial(bisect_right, fragment_ends), token_starts))
    token_last_fragment = tuple(map(partial(bisect_left, fragment_ends), token_ends))

    # Likewise a fragment [s, e) touches the tokens holding bytes s .. e-1; an
    # empty fragment touches none.
    token_start = tuple(map(partial(bisect_right, token_ends), fragment_starts))
    token_last = map(partial(bisect_left, token_ends), fragment_ends)
    token_end = tuple(
        last + 1 if e > s else first
        for s, e, first, last in zip(fragment_starts, fragment_ends, token_start, token_last)
    )
    boundaries = frozenset(token_ends)
    starts_mid = tuple(s != 0 and s not in boundaries for s in fragment_starts)
    ends_mid = tuple(e != 0 and e not in boundaries for e in fragment_ends)
    return StreamAlignment(
        kind=first.kind if first else "text",
        tool_call_id=first.tool_call_id if first else None,
        fragments=fragments,
        text=text,
        token_ids=token_ids,
        token_byte_ends=token_ends,
        token_first_fragment=token_first_fragment,
        token_last_fragment=token_last_fragment,
        fragment_byte_ends=fragment_ends,
        fragment_token_start=token_start,
        fragment_token_end=token_end,
        fragment_starts_mid_token=starts_mid,
        fragment_ends_mid_token=ends_mid,
    )
