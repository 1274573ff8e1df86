"""What alignment needs of a tokenizer, and the tokens it answers with.

The tokenizers themselves (a helper process, or the encoding in this process)
live in ``capture.tokenizer``; alignment sees only these shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

Tokens = tuple[Sequence[int], Sequence[int]]
"""A text's token ids, and the UTF-8 byte length of each token."""


class Tokenizer(Protocol):
    name: str

    def wait_ready(self) -> None:
        """Wait until tokenize() can answer at once; raises EncodingError if it never can."""
        ...

    def tokenize(self, texts: Sequence[str]) -> list[Tokens]:
        """Ids and byte sizes of each text's tokens (special-token text is ordinary text)."""
        ...

    def close(self) -> None: ...
