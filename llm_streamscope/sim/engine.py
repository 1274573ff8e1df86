"""What every wire format of the simulator shares: its options, the send log, the paced send.

A format (OpenAI chat.completions in :mod:`.server`, Anthropic Messages in
:mod:`.anthropic`) turns a request into ``(kind, text)`` chunks from a
:class:`~.profiles.Plan` and knows how to frame them; everything about *when*
bytes leave - the profile's TTFT and gaps scaled by ``speed``, ``stall_after``,
``drop_after`` - and the ground truth kept about it (:class:`SendLog`) lives
here, once.
"""

from __future__ import annotations

import contextlib
import random
import socket
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from . import profiles

SIM_OPTIONS = (
    "profile",
    "text",
    "seed",
    "speed",
    "chunks",
    "drop_after",
    "stall_after",
    "stall_s",
    "error",
)
"""The simulator's own options: the body's ``"streamscope"`` object, the server's defaults."""

ids = random.Random()
"""Fresh randomness for ids, padding and signatures; never the seeded streams."""
_ALNUM = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 29) -> str:
    """``prefix`` and ``length`` random letters and digits, like the providers' ids."""
    return prefix + "".join(ids.choices(_ALNUM, k=length))


# The kinds of chunk a send log records: the kind of llm event a client makes of it.
TEXT = "text"
REASONING = "reasoning"
TOOL_CALL_ARGS = "tool_call_args"


class InvalidOption(ValueError):
    """A simulator option (or request parameter) with a bad value; ``param`` names it."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def int_or_none(value: Any, param: str, minimum: int, maximum: int | None = None) -> int | None:
    """``value`` if it is None or an int within bounds, else :class:`InvalidOption`.

    >>> int_or_none(3, "chunks", 0)
    3
    >>> int_or_none(True, "chunks", 0)
    Traceback (most recent call last):
    ...
    llm_streamscope.sim.engine.InvalidOption: Invalid type for 'chunks': expected an integer.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOption(f"Invalid type for '{param}': expected an integer.", param)
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise InvalidOption(f"Invalid value for '{param}': {value}; it must be {bounds}.", param)
    return value


def _number(value: Any, param: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InvalidOption(f"'{param}' must be a number >= 0.", param)
    return float(value)


@dataclass(frozen=True)
class SimOptions:
    """The simulator options of one response, validated.

    ``profile`` and ``text`` pick the cutting/pacing profile and the sample;
    ``seed`` fixes chunking and timing; delays are divided by ``speed`` (0: no
    delay); ``chunks`` sends exactly that many answer chunks, cycling the text;
    ``drop_after`` closes the connection after that many chunks, ``stall_after``
    goes silent there for ``stall_s`` real seconds; ``error`` answers with that
    HTTP status instead.
    """

    profile: str = profiles.DEFAULT_PROFILE
    text: str = profiles.DEFAULT_SAMPLE
    seed: int | None = None
    speed: float = 1.0
    chunks: int | None = None
    drop_after: int | None = None
    stall_after: int | None = None
    stall_s: float = 60.0
    error: int | None = None

    @classmethod
    def parse(cls, options: Mapping[str, Any], prefix: str = "streamscope.") -> SimOptions:
        """Validate a mapping of option names to JSON values; raises :class:`InvalidOption`.

        ``prefix`` goes before each option's name in error messages.

        >>> SimOptions.parse({"profile": "claude-haiku", "speed": 0}).profile
        'claude-haiku'
        """
        unknown = sorted(set(options) - set(SIM_OPTIONS))
        if unknown:
            raise InvalidOption(
                f"Unrecognized streamscope option(s): {', '.join(unknown)}; "
                f"known: {', '.join(SIM_OPTIONS)}.",
                prefix.rstrip("."),
            )
        profile = options.get("profile", profiles.DEFAULT_PROFILE)
        if profile not in profiles.PROFILES:
            raise InvalidOption(
                f"Unknown profile {profile!r}; known profiles: {', '.join(profiles.PROFILES)}.",
                prefix + "profile",
            )
        text = options.get("text", profiles.DEFAULT_SAMPLE)
        names = profiles.sample_names()
        if text not in names:
            raise InvalidOption(
                f"Unknown text {text!r}; known texts: {', '.join(names)}.", prefix + "text"
            )
        return cls(
            profile=profile,
            text=text,
            seed=int_or_none(options.get("seed"), prefix + "seed", -(2**63)),
            speed=_number(options.get("speed", 1.0), prefix + "speed"),
            chunks=int_or_none(options.get("chunks"), prefix + "chunks", 0),
            drop_after=int_or_none(options.get("drop_after"), prefix + "drop_after", 0),
            stall_after=int_or_none(options.get("stall_after"), prefix + "stall_after", 0),
            stall_s=_number(options.get("stall_s", 60.0), prefix + "stall_s"),
            error=int_or_none(options.get("error"), prefix + "error", 400, 599),
        )

    def delays(self) -> Iterator[float] | None:
        """The profile's TTFT and gaps for this seed (seconds), or None at speed 0."""
        if self.speed > 0:
            return profiles.get_profile(self.profile).delays(self.seed)
        return None

    def plan(
        self, text: str, *, max_tokens: int | None = None, whole: bool = False
    ) -> profiles.Plan:
        """The :class:`~.profiles.Plan` of ``text`` under these options.

        ``whole`` ignores ``chunks`` (for parts of an answer that are not the
        answer text: a thinking block, a tool call's arguments).
        """
        return profiles.plan(
            text,
            profiles.get_profile(self.profile),
            seed=self.seed,
            chunks=None if whole else self.chunks,
            max_tokens=max_tokens,
        )


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
    """The wire format: ``chat.completions`` (OpenAI) or ``messages`` (Anthropic)."""
    sent_ns: list[int] = field(default_factory=list)
    chunks: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
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
        return data


# --------------------------------------------------------------------------
# Sending


def sleep_until(deadline_ns: int) -> None:
    remaining = deadline_ns - time.perf_counter_ns()
    if remaining > 0:
        time.sleep(remaining / 1e9)


def http_chunk(payload: bytes) -> bytes:
    """``payload`` as one HTTP/1.1 chunk: ``<hex length>\\r\\n<payload>\\r\\n``."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


LAST_CHUNK = b"0\r\n\r\n"


def drop(sock: socket.socket, log: SendLog) -> None:
    """Close the connection mid-body, as a failing network would (a FIN, no last chunk)."""
    log.status = "dropped"
    log.done_ns = time.perf_counter_ns()
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def send_paced(
    sock: socket.socket,
    log: SendLog,
    options: SimOptions,
    chunks: Iterable[tuple[str, str]],
    frame: Callable[[str, str], bytes],
    opening: Callable[[str | None], bytes],
) -> bool:
    """Send ``(kind, text)`` chunks at the times the profile plans; False after a drop.

    Before chunk ``i`` the sender sleeps until ``t0`` plus the first ``i + 1``
    delays (so a late start catches up instead of shifting everything), sends
    ``opening(kind)`` (whatever the format sends before that chunk: its first
    events, a new block; often nothing), then ``frame(kind, text)``, and records
    the time in the send log. With no chunk at all, ``opening(None)`` goes out
    when the first chunk would have. ``drop_after`` closes the connection in
    place of chunk ``drop_after`` (or before the end when there are fewer);
    ``stall_after`` waits ``stall_s`` real seconds before that chunk.
    """
    send = sock.sendall
    perf = time.perf_counter_ns
    sent_ns, texts, kinds = log.sent_ns, log.chunks, log.kinds
    delays = options.delays()
    speed = options.speed
    drop_after = options.drop_after
    stall_after = options.stall_after
    due = log.t0_ns
    i = -1
    for i, (kind, text) in enumerate(chunks):
        if delays is not None:
            due += int(next(delays) / speed * 1e9)
            sleep_until(due)
        head = opening(kind)
        if head:
            send(head)
        if i == drop_after:
            drop(sock, log)
            return False
        if i == stall_after:
            # A silent server: real seconds, whatever the speed, then carry on.
            stall_ns = int(options.stall_s * 1e9)
            sleep_until(max(due, perf()) + stall_ns)
            due += stall_ns
        send(frame(kind, text))
        sent_ns.append(perf())
        texts.append(text)
        kinds.append(kind)
    if i < 0:
        if delays is not None:
            sleep_until(due + int(next(delays) / speed * 1e9))
        send(opening(None))
    if drop_after is not None:
        drop(sock, log)  # fewer chunks than drop_after: drop before the end
        return False
    return True


def wait_whole(sock: socket.socket, log: SendLog, options: SimOptions, n_chunks: int) -> bool:
    """For a non-streamed answer: wait as long as its stream would take; False after a drop."""
    delays = options.delays()
    if delays is not None:
        total = sum(next(delays) for _ in range(max(n_chunks, 1)))
        sleep_until(log.t0_ns + int(total / options.speed * 1e9))
    if options.drop_after is not None:
        drop(sock, log)  # no response at all
        return False
    return True


def record_whole(log: SendLog, kinds_texts: Iterable[tuple[str, str]]) -> None:
    """Log a non-streamed answer, sent just now, as one chunk per part."""
    now = time.perf_counter_ns()
    for kind, text in kinds_texts:
        log.sent_ns.append(now)
        log.chunks.append(text)
        log.kinds.append(kind)
    log.done_ns = now
    log.status = "complete"
