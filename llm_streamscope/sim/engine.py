"""What every wire format of the simulator shares: the send log, the paced send, tool calls.

A format (OpenAI chat.completions in :mod:`.server`, Anthropic Messages in
:mod:`.anthropic`, and the others beside them) turns a request into ``(kind, text)`` chunks from a
:class:`~.profiles.Plan` and knows how to frame them; everything about *when*
bytes leave - the profile's TTFT and gaps scaled by ``speed``, ``stall_after``,
``drop_after`` - and the ground truth kept about it (:class:`SendLog`) lives
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
            sample = profiles.sample_text(THINKING_SAMPLE)
            thinking = options.plan(sample, max_tokens=left, whole=True)
            if left is not None:
                left = max(left - thinking.completion_tokens, 0)
        thoughts_tokens = options.reasoning + (thinking.completion_tokens if thinking else 0)
        if left == 0:
            return cls(thinking, options.plan("", max_tokens=None), True, thoughts_tokens)
        text = options.plan(profiles.sample_text(options.text), max_tokens=left)
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
    """Log a non-streamed answer about to be sent, as one chunk per part."""
    now = time.perf_counter_ns()
    for kind, text in kinds_texts:
        log.sent_ns.append(now)
        log.chunks.append(text)
        log.kinds.append(kind)
    log.done_ns = now
    log.status = "complete"
