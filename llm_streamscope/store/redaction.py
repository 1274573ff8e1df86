"""Keys kept out of what streamscope stores.

A provider's error can echo the key it was sent (``Incorrect API key provided:
sk-...``). A stored error has the request's own key, and anything shaped like a
key, replaced by ``REDACTED``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[redacted]"

_KEY_SHAPED = re.compile(
    r"""
    \b(?:sk|pk|rk)-[A-Za-z0-9_*-]{8,}                      # OpenAI, Anthropic (sk-ant-), ...
    | \bAIza[A-Za-z0-9_-]{20,}                             # Google
    | \b(?:xai|gsk|hf|ghp|gho|github_pat|glpat|r8)[-_][A-Za-z0-9_]{16,}
    | \bBearer\s+[A-Za-z0-9._~+/-]{16,}=*
    """,
    re.VERBOSE,
)
_SHORTEST_KEY = 8
"""A "key" shorter than this (a test's dummy) is too likely to be an ordinary word."""


def redact(text: str | None, keys: Iterable[str | None] = ()) -> str | None:
    """``text`` with each of ``keys`` and anything shaped like a key replaced.

    >>> redact("Incorrect API key provided: sk-proj-abc123def456. Check it.")
    'Incorrect API key provided: [redacted]. Check it.'
    >>> redact("bad key my-own-key-1234 given", keys=["my-own-key-1234"])
    'bad key [redacted] given'
    >>> redact("task-oriented skills")
    'task-oriented skills'
    """
    if not text:
        return text
    for key in keys:
        if key and len(key) >= _SHORTEST_KEY:
            text = text.replace(key, REDACTED)
    return _KEY_SHAPED.sub(REDACTED, text)
