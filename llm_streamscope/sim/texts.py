"""The simulator's sample texts, and their tokens (o200k, loaded offline once).

Chunk layouts work in UTF-8 byte space: ``TokenizedText`` holds a text's bytes and
the byte offset where each token ends.
"""

from __future__ import annotations

import bisect
import importlib.resources
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tiktoken


ENCODING_NAME = "o200k_base"
"""The encoding every profile cuts with and every token count uses."""

DEFAULT_SAMPLE = "prose"


# --------------------------------------------------------------------------
# Sample texts


def sample_names() -> tuple[str, ...]:
    """The names ``-o text NAME`` accepts: the stems of ``samples/*.txt``."""
    root = importlib.resources.files("llm_streamscope.samples")
    return tuple(sorted(p.name[: -len(".txt")] for p in root.iterdir() if p.name.endswith(".txt")))


@cache
def sample_text(name: str) -> str:
    """The text of one sample, by name."""
    if name not in sample_names():
        raise KeyError(f"unknown sample text {name!r}; known: {', '.join(sample_names())}")
    path = importlib.resources.files("llm_streamscope.samples").joinpath(f"{name}.txt")
    return path.read_text(encoding="utf-8")


# --------------------------------------------------------------------------
# Tokenization


def encoding() -> tiktoken.Encoding:
    """The o200k encoding, loaded offline (memoized by ``llm_streamscope.analysis.encodings``)."""
    from llm_streamscope.analysis.encodings import get_encoding

    return get_encoding(ENCODING_NAME)


@dataclass(frozen=True)
class TokenizedText:
    """A text with its o200k tokenization, in byte offsets."""

    text: str
    data: bytes
    """The text as UTF-8."""
    token_ends: tuple[int, ...]
    """Cumulative byte offset at which each token ends; the last is ``len(data)``."""

    @property
    def n_tokens(self) -> int:
        return len(self.token_ends)

    def tokens_touched(self, end: int) -> int:
        """How many tokens overlap ``data[:end]`` (a token cut short counts)."""
        if end <= 0:
            return 0
        # Tokens that start before `end`: the first one, plus one per token end before `end`.
        return 1 + bisect.bisect_left(self.token_ends, end)


@lru_cache(maxsize=64)
def tokenize(text: str) -> TokenizedText:
    """Tokenize once per distinct text; later calls cost a dict lookup.

    ``encode_ordinary``: text that looks like a special token is ordinary text.
    """
    enc = encoding()
    ends: list[int] = []
    pos = 0
    for piece in enc.decode_tokens_bytes(enc.encode_ordinary(text)):
        pos += len(piece)
        ends.append(pos)
    data = text.encode("utf-8")
    assert pos == len(data)
    return TokenizedText(text, data, tuple(ends))


def count_tokens(text: str) -> int:
    """The number of o200k tokens in ``text``."""
    return len(encoding().encode_ordinary(text)) if text else 0


def _is_char_boundary(data: bytes, offset: int) -> bool:
    """True when ``offset`` is not inside a UTF-8 sequence (continuation bytes are 10xxxxxx)."""
    return offset >= len(data) or (data[offset] & 0xC0) != 0x80
