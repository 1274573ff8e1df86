"""Which wire event delivered each fragment llm handed over.

llm yields one event per provider delta for the plugins covered, but nothing
relies on that: per kind, the fragments' text and the wire pieces' text are laid
end to end, and a fragment is timed by the piece that delivered its last
character. Where the two texts part (a plugin that rewrites text), the
fragments after that point get no wire time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from itertools import accumulate

from ..analysis.trace import Fragment
from ..wire.events import Decoded


def wire_times(
    fragments: Sequence[Fragment], decoded: Decoded, choice: int = 0
) -> list[int | None]:
    """Per fragment, the time of the wire event that delivered its last character.

    >>> from llm_streamscope.wire.events import Event, Piece
    >>> events = tuple(Event(i, 10 * (i + 1), 0, 0, i, i, "") for i in range(2))
    >>> decoded = Decoded("openai-chat", "sse", events, ("text", "text"),
    ...                   (Piece(0, "text", "Hel"), Piece(1, "text", "lo")))
    >>> wire_times([Fragment(0, "text", "He", 15), Fragment(1, "text", "llo", 25)], decoded)
    [10, 20]
    """
    times: list[int | None] = [None] * len(fragments)
    kinds = {f.kind for f in fragments}
    for kind in kinds:
        pieces = [p for p in decoded.pieces if p.kind == kind and p.choice == choice]
        wire_text = "".join(p.text for p in pieces)
        ends = list(accumulate(len(p.text) for p in pieces))
        position = 0
        for i, fragment in enumerate(fragments):
            if fragment.kind != kind or not fragment.text:
                continue
            end = position + len(fragment.text)
            if wire_text[position:end] != fragment.text:
                break
            times[i] = decoded.events[pieces[bisect_left(ends, end)].event_index].t_ns
            position = end
    return times
