"""What every wire format of the simulator shares: the send log, the paced send, tool calls.

A format (OpenAI chat.completions in :mod:`.server`, Anthropic Messages in
:mod:`.anthropic`, and the others beside them) turns a request into ``(kind, text)`` chunks from a
:class:`~.profiles.Plan` and knows how to frame them; everything about *when*
bytes leave - the profile's TTFT and gaps scaled by ``speed``, ``stall_after``,
``drop_after``, the network conditions (latency, TTFT, jitter, a bandwidth cap,
keep-alives) - and the ground truth kept about it (:class:`SendLog`) lives
here, once, as does the making of a tool call's arguments. The options
themselves are :class:`~.options.SimOptions`.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import string
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from . import profiles
from .options import InvalidOption, SimOptions
from .texts import sample_text, tokenize

ids = random.Random()
"""Fresh randomness for ids, padding and signatures; never the seeded streams."""
_ALNUM = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 29) -> str:
    """``prefix`` and ``length`` random letters and digits, like the providers' ids."""
    return prefix + "".join(ids.choices(_ALNUM, k=length))


# The kinds of chunk a send log records: the kind of llm event a client makes of it.
TEXT = "text"
REASONING = "reasoning"
TOOL_CALL_NAME = "tool_call_name"
TOOL_CALL_ARGS = "tool_call_args"


def int_or_none(value: Any, param: str, minimum: int, maximum: int | None = None) -> int | None:
    """``value`` if it is None or an int within bounds, else :class:`InvalidOption`
    (for a request's own parameters, such as ``max_tokens``).

    >>> int_or_none(3, "max_tokens", 1)
    3
    >>> int_or_none(True, "max_tokens", 1)
    Traceback (most recent call last):
    ...
    llm_streamscope.sim.options.InvalidOption: Invalid type for 'max_tokens': expected an integer.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOption(f"Invalid type for '{param}': expected an integer.", param)
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise InvalidOption(f"Invalid value for '{param}': {value}; it must be {bounds}.", param)
    return value


# --------------------------------------------------------------------------
# Tool calls and structured output


def example_value(schema: Any, name: str = "value") -> Any:
    """A simple value valid for a JSON schema: its first enum value, else by type.

    >>> example_value({"type": "object", "properties": {"n": {"type": "integer"}},
    ...                "required": ["n"]})
    {'n': 3}
    """
    if not isinstance(schema, dict):
        return "example"
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example_value(schema[key][0], name)
    type_ = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(type_, list):
        type_ = next((t for t in type_ if t != "null"), "null")
    if type_ == "array":
        items = schema.get("items")
        return [example_value(items, name)] if isinstance(items, dict) else []
    if type_ == "object":
        properties = schema.get("properties") or {}
        required = schema.get("required") or []
        return {
            key: example_value(properties.get(key, {}), key)
            for key in required
            if isinstance(key, str)
        }
    return {
        "integer": 3,
        "number": 1.5,
        "boolean": True,
        "null": None,
    }.get(type_, f"example {name}")


def plan_json(
    schema: Any, options: SimOptions, max_tokens: int | None, *, compact: bool = False
) -> tuple[Any, profiles.Plan]:
    """A value valid for a JSON ``schema`` (a tool's parameters, a response format), and the
    plan of its JSON text: cut and paced like answer text (``chunks`` does not apply), as
    every format streams tool-call arguments and structured output. ``compact`` drops the
    spaces after ``:`` and ``,`` (OpenAI's style; Anthropic keeps them).
    """
    arguments = example_value(schema or {})
    separators = (",", ":") if compact else None
    text = json.dumps(arguments, ensure_ascii=False, separators=separators)
    return arguments, options.plan(text, max_tokens=max_tokens, whole=True)


def name_tokens(name: str) -> int:
    """The tokens of a tool's name: a tool call streams its name as output, so usage
    counts them beside the arguments' (``usage`` then matches what was streamed)."""
    return tokenize(name).n_tokens


THINKING_SAMPLE = "thinking"
"""The sample text an answer that thinks aloud streams as its thinking."""


@dataclass(frozen=True)
class ThoughtsThenText:
    """An answer that may think aloud first: thinking chunks (maybe none), then text.

    Gemini's thought parts and Ollama's ``thinking`` have this shape. ``max_tokens``
    covers the thinking and the text together; the thinking streams the
    ``thinking`` sample, the text the options' sample.
    """

    thinking: profiles.Plan | None
    text: profiles.Plan
    cut_short: bool
    """``max_tokens`` ended the answer."""
    thoughts_tokens: int
    """The thinking streamed, and the hidden ``reasoning`` tokens."""

    @classmethod
    def of(cls, options: SimOptions, *, think: bool, max_tokens: int | None) -> ThoughtsThenText:
        """The planned answer (nothing sent)."""
        left = max_tokens
        thinking = None
        if think:
            sample = sample_text(THINKING_SAMPLE)
            thinking = options.plan(sample, max_tokens=left, whole=True)
            if left is not None:
                left = max(left - thinking.completion_tokens, 0)
        thoughts_tokens = options.reasoning + (thinking.completion_tokens if thinking else 0)
        if left == 0:
            return cls(thinking, options.plan("", max_tokens=None), True, thoughts_tokens)
        text = options.plan(sample_text(options.text), max_tokens=left)
        return cls(thinking, text, text.finish_reason == "length", thoughts_tokens)

    @property
    def n_chunks(self) -> int:
        return (self.thinking.n_chunks if self.thinking else 0) + self.text.n_chunks

    @property
    def tokens(self) -> int:
        """Every token generated: the thoughts and the text."""
        return self.thoughts_tokens + self.text.completion_tokens

    def chunks(self) -> Iterator[tuple[str, str]]:
        """``(kind, text)`` of each chunk, in order."""
        if self.thinking is not None:
            for chunk in self.thinking.chunks():
                yield REASONING, chunk
        for chunk in self.text.chunks():
            yield TEXT, chunk


# --------------------------------------------------------------------------
# The send log


@dataclass
class SendLog:
    """Ground truth for one response, filled in while it is sent.

    ``sent_ns[i]`` is ``time.perf_counter_ns()`` right after the ``sendall`` of
    content chunk ``i`` returned; ``chunks[i]`` is its text and ``kinds[i]`` the
    kind of llm event a client makes of it (``text``, ``reasoning``,
    ``tool_call_args``). ``t0_ns`` is taken when the request body had been read:
    the TTFT delay counts from there.
    """

    id: str
    profile: str
    text: str
    """The sample text's name."""
    seed: int | None
    speed: float
    stream: bool
    include_usage: bool
    t0_ns: int
    api: str = "chat.completions"
    """The wire format: ``chat.completions`` (OpenAI), ``messages`` (Anthropic),
    ``generateContent`` (Gemini), ``responses`` (OpenAI Responses), ``ollama-chat`` or
    ``ollama-generate`` (Ollama)."""
    latency_ms: float | None = None
    """The ``latency_ms`` option: the response (its headers too) starts that much after
    ``t0_ns``."""
    sent_ns: list[int] = field(default_factory=list)
    chunks: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    due_ns: list[int] = field(default_factory=list)
    """When each content chunk was due, in ns after ``t0_ns``: the planned timing, exact
    for a seed (profile, speed and network conditions); empty when nothing is paced."""
    keepalives: int = 0
    """Keep-alive comments sent (``keepalive_ms``)."""
    status: str = "sending"
    """``sending``, then ``complete``, ``dropped`` (``drop_after``) or ``client_gone``."""
    finish_reason: str | None = None
    """OpenAI's ``finish_reason``, or Anthropic's ``stop_reason``."""
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    done_ns: int | None = None
    """When the last byte of the response had been handed to the socket."""

    @classmethod
    def begin(
        cls,
        id: str,
        options: SimOptions,
        t0_ns: int,
        *,
        stream: bool,
        include_usage: bool,
        api: str = "chat.completions",
    ) -> SendLog:
        """The send log of a response about to be sent with ``options``."""
        return cls(
            id=id,
            profile=options.profile,
            text=options.text,
            seed=options.seed,
            speed=options.speed,
            stream=stream,
            include_usage=include_usage,
            t0_ns=t0_ns,
            api=api,
            latency_ms=options.latency_ms,
        )

    def settle(self, prompt_tokens: int, completion_tokens: int, finish_reason: str) -> None:
        """Record the usage and the finish reason the response reports."""
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.finish_reason = finish_reason

    def content(self) -> str:
        """Everything sent as content, concatenated."""
        return "".join(self.chunks)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sent_ns"] = list(self.sent_ns)
        data["chunks"] = list(self.chunks)
        data["kinds"] = list(self.kinds)
        data["due_ns"] = list(self.due_ns)
        return data


# --------------------------------------------------------------------------
# Sending


def wait_latency(log: SendLog) -> None:
    """Hold a response until its ``latency_ms`` has passed since the request (headers
    included); :class:`Schedule` counts it in every chunk's due time."""
    if log.latency_ms:
        sleep_until(log.t0_ns + int(log.latency_ms * 1e6))


def sleep_until(deadline_ns: int) -> None:
    remaining = deadline_ns - time.perf_counter_ns()
    if remaining > 0:
        time.sleep(remaining / 1e9)


def http_chunk(payload: bytes) -> bytes:
    """``payload`` as one HTTP/1.1 chunk: ``<hex length>\\r\\n<payload>\\r\\n``."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


LAST_CHUNK = b"0\r\n\r\n"
SSE_KEEPALIVE = http_chunk(b": keep-alive\n\n")
"""An SSE comment line as one HTTP chunk: what ``keepalive_ms`` sends on an SSE stream."""


def drop(sock: socket.socket, log: SendLog) -> None:
    """Close the connection mid-body, as a failing network would (a FIN, no last chunk)."""
    log.status = "dropped"
    log.done_ns = time.perf_counter_ns()
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class PacedSocket(socket.socket):
    """A server connection whose ``sendall`` can be held to ``bandwidth`` bytes per second.

    The server accepts every connection as one; :func:`cap_bandwidth` sets the cap
    for one response. Capped, the bytes leave in slices of 20 ms worth, each when
    the bytes before it would have got through: a client reads them no sooner.
    """

    bandwidth: int | None = None
    _free_ns = 0
    """When the bytes handed over so far will have got through at the cap."""

    def sendall(self, data: Any, flags: int = 0, /) -> None:
        rate = self.bandwidth
        if rate is None:
            super().sendall(data, flags)
            return
        view = memoryview(data).cast("B")
        step = max(1, rate // 50)
        for start in range(0, len(view), step):
            piece = view[start : start + step]
            self._free_ns = max(self._free_ns, time.perf_counter_ns()) + len(piece) * (
                1_000_000_000 // rate
            )
            sleep_until(self._free_ns)
            super().sendall(piece, flags)


def cap_bandwidth(sock: socket.socket, bandwidth: int | None) -> None:
    """Cap what ``sock`` sends from now on at ``bandwidth`` bytes/s (None: no cap)."""
    if isinstance(sock, PacedSocket):
        sock.bandwidth = bandwidth
        sock._free_ns = 0


class Schedule:
    """When each chunk is due, in ns after the request (``t0``), forever.

    The profile's TTFT and gaps divided by ``speed`` (or ``delays``, seconds, given
    instead: a replay's own), then the network conditions, in real time:
    ``ttft_ms`` in place of the first delay, ``latency_ms`` added to every chunk,
    and a random 0 to ``jitter_ms`` more per chunk, seeded apart from the profile's
    timing and never carried over: a late chunk bunches with the next, never
    passes it. ``timed`` is False when every chunk is due at once.

    >>> due = Schedule(SimOptions(speed=0, latency_ms=5, ttft_ms=20))
    >>> [next(due) for _ in range(3)]
    [25000000, 25000000, 25000000]
    >>> due = Schedule(SimOptions(speed=2), delays=iter([0.5, 0.25, 1.0]))
    >>> [next(due) for _ in range(3)]
    [250000000, 375000000, 875000000]
    """

    def __init__(self, options: SimOptions, delays: Iterator[float] | None = None) -> None:
        self._speed = options.speed
        self._delays = None
        if options.speed > 0:
            self._delays = options.delays() if delays is None else delays
        self._planned = int((options.latency_ms or 0) * 1e6)
        self._ttft_ns = None if options.ttft_ms is None else int(options.ttft_ms * 1e6)
        self._jitter_ms = options.jitter_ms or 0
        self._jitter = profiles.rng_for(options.seed, "jitter") if self._jitter_ms else None
        self.timed = bool(
            self._delays is not None or self._planned or self._ttft_ns or self._jitter_ms
        )

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        gap = 0
        if self._delays is not None:
            gap = int(next(self._delays) / self._speed * 1e9)
        if self._ttft_ns is not None:
            gap, self._ttft_ns = self._ttft_ns, None
        self._planned += gap
        if self._jitter is None:
            return self._planned
        return self._planned + int(self._jitter.uniform(0, self._jitter_ms) * 1e6)


def _waiter(
    send: Callable[[bytes], None],
    log: SendLog,
    options: SimOptions,
    keepalive: Callable[[], bytes] | None,
) -> Callable[[int], None]:
    """``sleep_until``, or, with ``keepalive_ms`` and a format that has a keep-alive, a
    wait that sends one whenever nothing has been sent for that long."""
    if keepalive is None or options.keepalive_ms is None:
        return sleep_until
    interval = int(options.keepalive_ms * 1e6)
    last_keepalive = time.perf_counter_ns()  # the headers have just gone

    def wait(deadline_ns: int) -> None:
        nonlocal last_keepalive
        while True:
            last = max(last_keepalive, log.sent_ns[-1] if log.sent_ns else 0)
            if deadline_ns - last <= interval:
                break
            sleep_until(last + interval)
            send(keepalive())
            log.keepalives += 1
            last_keepalive = time.perf_counter_ns()
        sleep_until(deadline_ns)

    return wait


def send_paced(
    sock: socket.socket,
    log: SendLog,
    options: SimOptions,
    chunks: Iterable[tuple[str, str]],
    frame: Callable[[str, str], bytes],
    opening: Callable[[str | None], bytes],
    *,
    keepalive: Callable[[], bytes] | None = None,
    delays: Iterator[float] | None = None,
) -> bool:
    """Send ``(kind, text)`` chunks at the times the :class:`Schedule` plans; False after
    a drop.

    Before chunk ``i`` the sender waits until ``t0`` plus the schedule's ``i``-th time
    (so a late start catches up instead of shifting everything), sends
    ``opening(kind)`` (whatever the format sends before that chunk: its first
    events, a new block; often nothing), then ``frame(kind, text)``, and records
    the time in the send log. With no chunk at all, ``opening(None)`` goes out
    when the first chunk would have. ``drop_after`` closes the connection in
    place of chunk ``drop_after`` (or before the end when there are fewer);
    ``stall_after`` waits ``stall_s`` real seconds before that chunk, and the
    chunks after it come that much later. ``bandwidth`` caps the connection for
    the rest of the response. ``keepalive()`` makes the format's keep-alive
    (None: it has none), sent during any wait once ``keepalive_ms`` have passed
    without a send. ``delays`` replaces the profile's (a replay's own timing).
    """
    send = sock.sendall
    perf = time.perf_counter_ns
    sent_ns, texts, kinds, due_ns = log.sent_ns, log.chunks, log.kinds, log.due_ns
    cap_bandwidth(sock, options.bandwidth)
    schedule = Schedule(options, delays)
    timed = schedule.timed
    wait = _waiter(send, log, options, keepalive)
    drop_after = options.drop_after
    stall_after = options.stall_after
    t0 = log.t0_ns
    due = t0
    stalled_ns = 0  # the chunks after a stall come that much later
    i = -1
    for i, (kind, text) in enumerate(chunks):
        if timed:
            due = t0 + next(schedule) + stalled_ns
            due_ns.append(due - t0)
            wait(due)
        head = opening(kind)
        if head:
            send(head)
        if i == drop_after:
            drop(sock, log)
            return False
        if i == stall_after:
            # A silent server: real seconds, whatever the speed, then carry on.
            stall_ns = int(options.stall_s * 1e9)
            wait(max(due, perf()) + stall_ns)
            stalled_ns += stall_ns
        send(frame(kind, text))
        sent_ns.append(perf())
        texts.append(text)
        kinds.append(kind)
    if i < 0:
        if timed:
            wait(t0 + next(schedule))
        send(opening(None))
    if drop_after is not None:
        drop(sock, log)  # fewer chunks than drop_after: drop before the end
        return False
    return True


def wait_whole(sock: socket.socket, log: SendLog, options: SimOptions, n_chunks: int) -> bool:
    """For a non-streamed answer: wait as long as its stream would take; False after a drop."""
    cap_bandwidth(sock, options.bandwidth)
    schedule = Schedule(options)
    if schedule.timed:
        sleep_until(log.t0_ns + max(next(schedule) for _ in range(max(n_chunks, 1))))
    if options.drop_after is not None:
        drop(sock, log)  # no response at all
        return False
    return True


def record_whole(log: SendLog, kinds_texts: Iterable[tuple[str, str]]) -> None:
    """Log a non-streamed answer about to be sent, as one chunk per part."""
    now = time.perf_counter_ns()
    for kind, text in kinds_texts:
        log.sent_ns.append(now)
        log.chunks.append(text)
        log.kinds.append(kind)
    log.done_ns = now
    log.status = "complete"
