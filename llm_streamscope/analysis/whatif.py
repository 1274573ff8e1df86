"""The same answer, chunked otherwise: ``llm streamscope whatif``.

A stored trace says when each piece of the answer arrived. Replayed under other
chunking policies — one event per token, every N tokens, every T ms, at word or
sentence boundaries — it shows what each would have cost on the wire and what
the reader would have seen: the trade-off between small chunks (text sooner, many
events, framing on each) and large ones (fewer bytes, text held back).

The model. A token is *available* when the chunk that completed it arrived (its
last byte: ``token_last_fragment`` of the alignment); a policy emits an event
when its rule fires, carrying every available token not yet sent, and never
text that has not arrived. The trace itself is the baseline, ``as sent``. Per
policy:

- ``events``: events that carry text;
- ``bytes``: the body on the wire, ``fixed + events * per_event + content``:
  the framing of one text event and the rest of the body (role, usage, done
  events) measured from the trace's own wire record when it has one, else the
  provider's, measured on real recordings (``DOCUMENTED_FRAMING``);
- ``ttft_ms``: when the first event went out (from the request start, as TTFT);
- ``gap_ms``: the gaps between consecutive events, as the reader sees them
  (AIPerf's inter-chunk latency, with ``stats.Distribution``'s percentiles);
- ``wait_ms``: for each byte of text, the time it was sent minus the time it
  arrived in the trace: how long the reader waited for text it could already
  have had (0 for every byte as sent). ``wait_ms.mean`` is per byte, and
  ``wait_byte_ms`` the sum over the bytes.

``"Hello world! It works."`` is six o200k tokens, ``Hello``, `` world``, ``!``,
`` It``, `` works``, ``.``. Streamed as ``"Hel"`` at 10 ms, ``"lo world!"`` at
20 ms and ``" It works."`` at 40 ms, one event per token gives six events; the
bytes ``Hel`` arrived at 10 ms but go out with ``Hello`` at 20 ms:

>>> from llm_streamscope.analysis import encodings
>>> from llm_streamscope.analysis.align import align
>>> from llm_streamscope.capture.tokenizer import LocalTokenizer
>>> from llm_streamscope.analysis.trace import Fragment, Trace
>>> pieces = [("Hel", 10), ("lo world!", 20), (" It works.", 40)]
>>> fragments = tuple(Fragment(i, "text", p, ms * 10**6) for i, (p, ms) in enumerate(pieces))
>>> trace = Trace("t", "gpt-4o-mini", "o200k_base", True, None, None, "", fragments)
>>> tokenizer = LocalTokenizer(encodings.get_encoding("o200k_base"))
>>> result = whatif(trace, align(trace, tokenizer), [AS_SENT, Policy("token")])
>>> [(o.policy, o.events, o.ttft_ms, o.gap_ms.max, o.wait_byte_ms) for o in result.outcomes]
[('as sent', 3, 10.0, 20.0, 0.0), ('each token', 6, 20.0, 20.0, 30.0)]
>>> result.framing  # no wire record: OpenAI chat's framing, measured on real streams
Framing(format='openai-chat', per_event=301.0, fixed=1121, source='documented', events=2670)
>>> [o.bytes for o in result.outcomes]  # 1,121 + 301 per event + 22 of text
[2046, 2949]
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from itertools import accumulate, pairwise, repeat
from operator import mul, sub
from typing import TYPE_CHECKING, overload

from .clock import time_ns, trace_clock
from .numbers import MS_MAX, Bounded
from .stats import Distribution, percentile

if TYPE_CHECKING:
    from ..wire.events import Decoded
    from .trace import Alignment, StreamAlignment, Trace


MS_PER_NS = 1e-6


class WhatIfError(ValueError):
    """A trace that cannot be re-chunked: it has no text, or no times."""


@dataclass(frozen=True)
class Policy:
    """A rule for when to send the text that has arrived.

    ``kind`` is one of ``POLICY_KINDS``; ``size`` is N for ``tokens`` and T (ms)
    for ``ms``. ``parse_policy`` reads one from the command line.
    """

    kind: str
    size: float | None = None

    @property
    def name(self) -> str:
        if self.kind == "tokens":
            return f"every {self.size:g} tokens"
        if self.kind == "ms":
            return f"every {self.size:g} ms"
        return POLICY_NAMES[self.kind]

    @property
    def spec(self) -> str:
        """The policy as ``--policy`` takes it."""
        return self.kind if self.size is None else f"{self.kind}:{self.size:g}"


POLICY_NAMES = {
    "as-sent": "as sent",
    "token": "each token",
    "word": "at words",
    "sentence": "at sentences",
}
POLICY_KINDS = ("as-sent", "token", "tokens", "ms", "word", "sentence")
POLICY_TOKENS = Bounded(1, 1_000_000, integer=True)
POLICY_MS = Bounded(0, MS_MAX, min_open=True)
AS_SENT = Policy("as-sent")
DEFAULT_POLICIES = (
    AS_SENT,
    Policy("token"),
    Policy("tokens", 2),
    Policy("tokens", 4),
    Policy("tokens", 8),
    Policy("ms", 20),
    Policy("ms", 50),
    Policy("ms", 100),
    Policy("word"),
    Policy("sentence"),
)


def parse_policy(spec: str) -> Policy:
    """A policy from its command-line form: ``token``, ``tokens:N``, ``ms:T``,
    ``word``, ``sentence`` (or ``as-sent``).

    >>> parse_policy("tokens:4").name, parse_policy("ms:12.5").name
    ('every 4 tokens', 'every 12.5 ms')
    >>> try:
    ...     parse_policy("tokens:0")
    ... except WhatIfError as error:
    ...     print(error)
    tokens:N needs a whole N from 1 to 1,000,000, got '0'
    """
    kind, _, size = spec.strip().partition(":")
    if kind not in POLICY_KINDS:
        raise WhatIfError(
            f"unknown policy {spec!r}; known: token, tokens:N, ms:T, word, sentence, as-sent"
        )
    if kind == "tokens":
        try:
            return Policy(kind, POLICY_TOKENS.check(size))
        except ValueError:
            raise WhatIfError(
                f"tokens:N needs a whole N from 1 to {POLICY_TOKENS.max:,}, got {size!r}"
            ) from None
    if kind == "ms":
        try:
            return Policy(kind, POLICY_MS.check(size))
        except ValueError:
            raise WhatIfError(
                f"ms:T needs a time T in ms above 0, at most {POLICY_MS.max:,}, got {size!r}"
            ) from None
    if size:
        raise WhatIfError(f"policy {kind} takes no size, got {spec!r}")
    return Policy(kind)


@dataclass(frozen=True)
class Framing:
    """What a stream's body costs beside its text, in bytes."""

    format: str
    per_event: float
    """Bytes of one event that carries text, beside the text itself (its JSON,
    its SSE lines, the text's escaping)."""
    fixed: int
    """The rest of the body: events that carry no text (role, usage, finish,
    ``[DONE]``, pings) and other output."""
    source: str
    """``measured``: from the trace's own wire record; ``documented``: the
    provider's, from real recordings (``DOCUMENTED_FRAMING``)."""
    events: int
    """The text events ``per_event`` was measured on."""


DOCUMENTED_FRAMING = {
    framing.format: framing
    for framing in (
        # Per provider over ../shared/realstreams, by ``measured_framing``: the
        # ``framing B/text event`` column of benchmarks/realstreams.py (OpenAI's own
        # recordings for openai-chat); ``fixed`` is the median file's.
        Framing("openai-chat", 301.0, 1121, "documented", 2670),
        Framing("openai-responses", 256.2, 8745, "documented", 804),
        Framing("anthropic", 122.4, 889, "documented", 310),
        Framing("gemini", 520.7, 4173, "documented", 37),
        Framing("ollama", 121.4, 292, "documented", 251),
    )
}


def measured_framing(decoded: Decoded) -> Framing | None:
    """The framing of a decoded body: its text events' bytes beside their text,
    per event, and every other byte of the body. None when no event carried text.
    """
    text_events = sorted({p.event_index for p in decoded.pieces if p.kind == "text"})
    if not text_events:
        return None
    events = decoded.events
    event_bytes = sum(events[i].byte_end - events[i].byte_start for i in text_events)
    content = sum(
        len(p.text.encode("utf-8", "surrogatepass")) for p in decoded.pieces if p.kind == "text"
    )
    return Framing(
        decoded.format,
        (event_bytes - content) / len(text_events),
        decoded.body_bytes - event_bytes,
        "measured",
        len(text_events),
    )


def guess_format(model_id: str) -> str:
    """The provider format a model most likely streams in, by its id.

    >>> guess_format("claude-3.5-haiku"), guess_format("gemini-2.5-flash"), guess_format("gpt-4o")
    ('anthropic', 'gemini', 'openai-chat')
    """
    model = model_id.lower()
    if "claude" in model:
        return "anthropic"
    if "gemini" in model:
        return "gemini"
    return "openai-chat"


def trace_framing(trace: Trace, format: str | None = None) -> Framing:
    """The trace's own framing when its wire was recorded, else its provider's.

    ``format`` (one of ``wire.FORMATS``) chooses the documented framing, as a
    trace without a wire record does not say its format; by default it is
    guessed from the model id (``guess_format``).
    """
    if trace.wire is not None:
        measured = measured_framing(trace.wire.decoded)
        if measured is not None:
            return measured
    return DOCUMENTED_FRAMING[format or guess_format(trace.model_id)]


@dataclass(frozen=True)
class Outcome:
    """What one policy gives on the trace's text."""

    policy: str
    spec: str
    events: int
    bytes: int
    """The body on the wire: ``fixed + events * per_event + content_bytes``."""
    ttft_ms: float | None
    """None on a server clock (an inspected Ollama stream has no request start)."""
    gap_ms: Distribution
    wait_ms: Distribution
    """Per byte of text: sent minus arrived."""
    wait_byte_ms: float
    """The waits of every byte, summed."""
    sends: tuple[tuple[int, int], ...]
    """Each event: the byte offset its text ends at, and when it was sent (ns)."""


@dataclass(frozen=True)
class WhatIf:
    """A trace's text under each policy, the trace itself first."""

    trace_id: str
    clock: str
    """As ``Stats.clock``: ``llm``, ``wire`` or ``server``."""
    framing: Framing
    tokens: int
    content_bytes: int
    outcomes: tuple[Outcome, ...]

    def to_dict(self) -> dict:
        document = asdict(self)
        for outcome in document["outcomes"]:
            outcome.pop("sends")
        return document


def whatif(
    trace: Trace,
    alignment: Alignment,
    policies: list[Policy] | tuple[Policy, ...] = DEFAULT_POLICIES,
    framing: Framing | None = None,
) -> WhatIf:
    """The trace's text stream re-chunked under each of ``policies``.

    Times are the stats' (the wire's when every chunk has a wire time). Raises
    ``WhatIfError`` when the trace has no text or carries no times.
    """
    stream = alignment.stream("text")
    if stream is None or not stream.token_count:
        raise WhatIfError("the trace has no text to re-chunk")
    if not trace.timed:
        raise WhatIfError(
            "the trace carries no times (a captured file without a .times sidecar): "
            "nothing says when its text arrived"
        )
    clock = trace_clock(trace)
    untimed = sum(time_ns(stream.fragments[j], clock) is None for j in stream.chunk_indices())
    if untimed:
        raise WhatIfError(
            f"{untimed:,} of its text chunks had arrived before inspect began reading: "
            "nothing says when (inspect -- CMD times a command's output from its start)"
        )
    # A byte is there once it and everything before it has arrived (text comes in
    # order). On the wire every chunk has a time; an empty fragment, which brings
    # nothing, may have none.
    if clock == "wire":
        arrived = list(accumulate((f.wire_t_ns or 0 for f in stream.fragments), max))
    else:
        arrived = list(accumulate((f.t_ns for f in stream.fragments), max))
    framing = framing or trace_framing(trace)
    content = stream.fragment_byte_ends[-1]
    outcomes = []
    for policy in policies:
        sends = _sends(stream, arrived, policy)
        outcomes.append(_outcome(policy, sends, stream, arrived, framing, clock))
    return WhatIf(trace.id, clock, framing, stream.token_count, content, tuple(outcomes))


def whatif_responses(
    responses: Iterable[tuple[Trace, Alignment]],
    policies: list[Policy] | tuple[Policy, ...] = DEFAULT_POLICIES,
    format: str | None = None,
    source: str | None = None,
) -> tuple[list[WhatIf], list[str]]:
    """Each response of a run re-chunked, and why the others could not be (a tool
    call has no text; a captured file may have no times). ``format``: as in
    ``trace_framing``. ``source``: the captured file the responses were read from,
    which names them in those reasons (else each trace's id does)."""
    results = []
    skipped = []
    responses = list(responses)
    for i, (trace, alignment) in enumerate(responses):
        name = trace.id
        if source is not None:
            name = source if len(responses) == 1 else f"{source} (response {i + 1})"
        try:
            results.append(whatif(trace, alignment, policies, trace_framing(trace, format)))
        except WhatIfError as ex:
            skipped.append(f"{name}: {ex}")
    return results, skipped


def _outcome(
    policy: Policy,
    sends: list[tuple[int, int]],
    stream: StreamAlignment,
    arrived: list[int],
    framing: Framing,
    clock: str,
) -> Outcome:
    send_ends = [end for end, _ in sends]
    times = [t for _, t in sends]
    fragment_ends = stream.fragment_byte_ends
    content = fragment_ends[-1]
    # The bytes between two consecutive boundaries (a fragment's end or an event's)
    # arrived with one fragment and went out with one event: the first of each to
    # end at or after them. Every step a C-level map: a response can be a megabyte.
    bounds = sorted({*fragment_ends, *send_ends} - {0})
    sizes = list(map(sub, bounds, [0, *bounds[:-1]]))
    arrival = map(arrived.__getitem__, map(bisect_left, repeat(fragment_ends), bounds))
    sending = map(times.__getitem__, map(bisect_left, repeat(send_ends), bounds))
    waits = list(map(MS_PER_NS.__mul__, map(sub, sending, arrival)))
    total = sum(map(mul, waits, sizes))
    runs = _Runs(waits, sizes)
    wait = Distribution(
        count=content,
        mean=total / content,
        p50=percentile(runs, 50),
        p90=percentile(runs, 90),
        p99=percentile(runs, 99),
        max=runs[-1],
    )
    return Outcome(
        policy=policy.name,
        spec=policy.spec,
        events=len(sends),
        bytes=round(framing.fixed + len(sends) * framing.per_event + content),
        ttft_ms=None if clock == "server" else times[0] / 1e6,
        gap_ms=Distribution.of([(b - a) / 1e6 for a, b in pairwise(times)]),
        wait_ms=wait,
        wait_byte_ms=total,
        sends=tuple(sends),
    )


class _Runs(Sequence[float]):
    """Values each repeated a number of times, in order, as the sorted list of
    them all would be: indexable without building that list (one float per byte
    of a megabyte response, per policy), so ``stats.percentile`` reads it as is.

    >>> runs = _Runs([5.0, 0.0], [3, 18])
    >>> len(runs), runs[17], runs[18], runs[-1]
    (21, 0.0, 5.0, 5.0)
    """

    def __init__(self, values: list[float], counts: list[int]):
        order = sorted(range(len(values)), key=values.__getitem__)
        self.values = list(map(values.__getitem__, order))
        self.ends = list(accumulate(map(counts.__getitem__, order)))

    def __len__(self) -> int:
        return self.ends[-1] if self.ends else 0

    @overload
    def __getitem__(self, i: int) -> float: ...
    @overload
    def __getitem__(self, i: slice) -> list[float]: ...
    def __getitem__(self, i: int | slice) -> float | list[float]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.values[bisect_right(self.ends, i)]


def _sends(stream: StreamAlignment, arrived: list[int], policy: Policy) -> list[tuple[int, int]]:
    """The events ``policy`` sends: (byte end of its text, when), in order."""
    if policy.kind == "as-sent":
        return [
            (end, t)
            for end, t, f in zip(stream.fragment_byte_ends, arrived, stream.fragments)
            if f.is_chunk
        ]
    ends = stream.token_byte_ends
    ready = [arrived[j] for j in stream.token_last_fragment]
    n = len(ends)
    if policy.kind == "token":
        return list(zip(ends, ready))
    if policy.kind == "tokens":
        size = int(policy.size or 1)
        last = sorted({*range(size - 1, n, size), n - 1})
        return [(ends[i], ready[i]) for i in last]
    if policy.kind == "ms":
        return _throttled(ends, ready, int((policy.size or 0) * 1e6))
    return _at_boundaries(stream, ready, sentence=policy.kind == "sentence")


def _throttled(ends: tuple[int, ...], ready: list[int], period_ns: int) -> list[tuple[int, int]]:
    """Every T ms: a token that arrives T ms or more after the last event goes out
    at once; one that arrives sooner waits until T ms after it, and goes out with
    every token that has arrived by then."""
    sends = []
    i = 0
    last: int | None = None
    while i < len(ends):
        t = ready[i] if last is None else max(ready[i], last + period_ns)
        i = bisect_right(ready, t)
        sends.append((ends[i - 1], t))
        last = t
    return sends


_CLOSERS = b"\"')]}"
_SENTENCE_ENDS = (b".", b"!", b"?", "…".encode())
_FULL_STOPS = ("。".encode(), "！".encode(), "？".encode())
_LINE_END = re.compile(rb"\n[ \t]*\Z")


def _at_boundaries(
    stream: StreamAlignment, ready: list[int], *, sentence: bool
) -> list[tuple[int, int]]:
    """At word (or sentence) boundaries, each sent once it is known to be one.

    After token i there is a word boundary when the token ends with white space
    (known when it arrives) or the next one starts with it (known when that one
    arrives). A sentence boundary is a word boundary after ``.``, ``!``, ``?`` or
    ``…`` (closing quotes and brackets aside), or a token that ends a line or
    with a CJK full stop (known when it arrives). The end of the text is both.
    Every boundary known at the same moment goes out as one event.
    """
    data = stream.text.encode("utf-8", "surrogatepass")
    ends = stream.token_byte_ends
    last = len(ends) - 1
    sends: list[tuple[int, int]] = []
    for i, end in enumerate(ends):
        token = data[stream.token_byte_start(i) : end]
        stop = bool(_LINE_END.search(token)) or token.endswith(_FULL_STOPS)
        ends_sentence = stop or token.rstrip().rstrip(_CLOSERS).endswith(_SENTENCE_ENDS)
        if sentence and not ends_sentence and i < last:
            continue
        if i == last or token[-1:].isspace() or (sentence and stop):
            known = ready[i]
        elif data[end : end + 1].isspace():
            known = ready[i + 1]
        else:
            continue
        if sends and sends[-1][1] == known:
            sends[-1] = (end, known)
        else:
            sends.append((end, known))
    return sends
