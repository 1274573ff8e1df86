"""Provider formats: which API a stream came from, and what each event carried.

``decode`` takes a body as timed ``Read``s, tells its framing (SSE, NDJSON or a
JSON array) from its first bytes, splits it into ``Event``s with the matching
decoder, tells the provider format from the first JSON event (or takes the one
given), and maps every event to a label and the ``Piece``s of model output it
carried: the same fragments llm's plugins yield, so a stream read from a file
is aligned and measured like a live one.

One mapper per format; each reads only the fields named here and calls anything
it does not know ``other``, so a new event type never stops decoding:

- ``openai-chat``: chat.completions chunks (SSE, or one chunk per line as
  vercel/ai stores them). ``choices[].delta.content`` is text, ``reasoning_content``
  or ``reasoning`` reasoning, ``tool_calls[]`` a name and argument deltas, each
  choice of ``n>1`` kept apart; a ``choices: []`` chunk with ``usage`` is the usage.
- ``openai-responses``: ``response.output_text.delta``, reasoning (summary) text
  deltas, ``response.function_call_arguments.delta``; usage in ``response.completed``.
- ``anthropic``: Messages events; ``content_block_delta`` text, thinking and
  tool input JSON, ``ping``, usage from ``message_start`` and ``message_delta``.
- ``gemini``: ``streamGenerateContent`` chunks (``alt=sse`` or the JSON array);
  text parts, ``thought`` parts as reasoning, ``functionCall`` parts.
- ``ollama``: ``/api/chat`` (and ``/api/generate``) lines; ``message.content``,
  ``message.thinking``, usage on the ``done`` line, and ``created_at``, the
  server's own clock with nanosecond precision, kept as ``server_times_ns``.

>>> from llm_streamscope.wire.events import Read
>>> body = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\\n\\ndata: [DONE]\\n\\n'
>>> decoded = decode([Read(None, body)])
>>> decoded.format, decoded.framing, decoded.labels, [p.text for p in decoded.pieces]
('openai-chat', 'sse', ('text', 'done'), ['Hi'])
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar

from . import FORMATS
from .events import Decoded, Event, Piece, Read, WireError
from .framing import decoder_for, detect_framing

_HEAD_BYTES = 64
"""Bytes past any leading whitespace enough to tell the framing by its first field."""

_ANTHROPIC_TYPES = frozenset(
    {
        "message_start",
        "message_delta",
        "message_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "ping",
    }
)


_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _parse(data: str) -> Any:
    """``json.loads(data)``, without its two layers of Python wrappers around the C
    scanner: a quarter of the time of parsing a small chunk. Anything the scanner
    alone does not take (surrounding whitespace, bad JSON) goes to ``json.loads``,
    which accepts or rejects it exactly as always."""
    try:
        value, end = _scan(data, 0)
    except StopIteration:
        return json.loads(data)
    return value if end == len(data) else json.loads(data)


class _ProviderError(Exception):
    """An event that is the provider reporting an error: decoding stops there."""


def decode(reads: Iterable[Read], format: str | None = None) -> Decoded:
    """Decode a response body (its reads, in order) and map its events.

    ``format`` is one of ``FORMATS``, or None to detect it from the first JSON event.
    Raises ``WireError`` only when there is nothing to analyse: an empty body, bytes
    that are no event stream, or a stream whose format cannot be told (an HTTP
    error body such as ``{"error": {...}}`` among them). Anything that goes wrong
    later (invalid JSON in one event, an event of an unexpected shape, an error
    event, a body cut inside an event) ends decoding there: ``Decoded.error``
    names it and everything before it is kept. The event that stopped it is kept,
    labelled ``error``, unless it never completed.

    >>> body = b'{"model":"llama3","created_at":"2025-08-20T13:47:54.490267123Z",'
    >>> body += b'"message":{"role":"assistant","content":"Hi"},"done":false}\\n'
    >>> decoded = decode([Read(None, body)])
    >>> decoded.format, decoded.framing, decoded.model, decoded.server_times_ns
    ('ollama', 'ndjson', 'llama3', (0,))
    """
    if format is not None and format not in FORMATS:
        raise WireError(f"unknown format {format!r}; known formats: {', '.join(FORMATS)}")
    reads = tuple(reads)
    body_bytes = sum(len(read.data) for read in reads)
    if not body_bytes:
        raise WireError("the body is empty: no event stream", offset=0)
    framing = detect_framing(_head(reads))
    events, error = _split(reads, framing, body_bytes)
    if format is None:
        if not any(not e.comment for e in events) and error is not None:
            raise error
        format = _detect_format(events, reads)
    mapper = _MAPPERS[format]()
    labels, stop = mapper.map_all(events, reads)
    if stop is not None:
        error = stop
    mapped = events[: len(labels)]
    times = mapper.server_times
    server_times_ns = None
    if times:
        origin = next(iter(times.values()))
        server_times_ns = tuple(
            None if (t := times.get(e.index)) is None else t - origin for e in mapped
        )
    return Decoded(
        format=format,
        framing=framing,
        events=tuple(mapped),
        labels=tuple(labels),
        pieces=tuple(mapper.pieces),
        model=mapper.model,
        usage_input=mapper.usage_input,
        usage_output=mapper.usage_output,
        usage_details=mapper.usage_details,
        server_times_ns=server_times_ns,
        error=error,
        body_bytes=body_bytes,
        reads=len(reads),
        choices=tuple(sorted(mapper.choices)) or (0,),
    )


def format_of(payload: Any, event: str = "") -> str | None:
    """The provider format one event's JSON belongs to, or None if it tells none.

    ``event`` is the SSE ``event:`` type, when there is one.

    >>> format_of({"type": "message_start", "message": {}})
    'anthropic'
    >>> format_of({"candidates": [], "modelVersion": "gemini-2.5-flash"})
    'gemini'
    >>> format_of({"error": {"message": "Invalid API key"}}) is None
    True
    """
    kind = payload.get("type") if isinstance(payload, dict) else None
    if not isinstance(kind, str):
        kind = event
    if kind.startswith("response."):
        return "openai-responses"
    if kind in _ANTHROPIC_TYPES:
        return "anthropic"
    if not isinstance(payload, dict):
        return None
    if "choices" in payload or str(payload.get("object", "")).startswith("chat.completion"):
        return "openai-chat"
    if "candidates" in payload or "usageMetadata" in payload or "modelVersion" in payload:
        return "gemini"
    if "created_at" in payload and ("message" in payload or "response" in payload):
        return "ollama"
    return None


# ====================
# Framing: bytes -> events
# ====================


def _head(reads: tuple[Read, ...]) -> bytes:
    """The body's first bytes, from as many reads as it takes."""
    head = b""
    for read in reads:
        head += read.data
        if len(head.lstrip()) >= _HEAD_BYTES:
            break
    return head


def _split(
    reads: tuple[Read, ...], framing: str, body_bytes: int
) -> tuple[list[Event], WireError | None]:
    """Every complete event, and what stopped the decoder early (if anything)."""
    decoder = decoder_for(framing)
    events: list[Event] = []
    try:
        for read in reads:
            events += decoder.feed(read.data, read.t_ns)
        events += decoder.finish()
    except WireError as error:
        if error.line is None and error.offset is not None:
            error = WireError(error.reason, offset=error.offset, line=_line_at(reads, error.offset))
        return events, error
    left = decoder.leftover
    if decoder.complete or (left and not _tail(reads, left).strip()):
        return events, None  # whitespace after the last event is no event cut short
    offset = body_bytes - left
    if left:
        problem = f"the stream ended inside an event ({left} bytes after the last complete one)"
    else:
        problem = "the stream ended before its framing did (a JSON array never closed)"
    return events, WireError(problem, offset=offset, line=_line_at(reads, offset))


def _tail(reads: tuple[Read, ...], size: int) -> bytes:
    """The body's last ``size`` bytes."""
    parts: list[bytes] = []
    have = 0
    for read in reversed(reads):
        parts.append(read.data)
        have += len(read.data)
        if have >= size:
            break
    return b"".join(reversed(parts))[-size:]


def _line_at(reads: tuple[Read, ...], offset: int) -> int:
    """The 1-based line of body byte ``offset`` (built only when reporting an error)."""
    body = b"".join(read.data for read in reads)[:offset]
    ends = body.count(b"\n") or body.count(b"\r")
    return ends + 1


def _detect_format(events: list[Event], reads: tuple[Read, ...]) -> str:
    """The format of the first JSON event; raises WireError when it tells none."""
    for event in events:
        if event.comment or event.data == "[DONE]":
            continue
        where = {"offset": event.byte_start, "line": _line_at(reads, event.byte_start)}
        try:
            payload = json.loads(event.data)
        except (ValueError, RecursionError) as error:
            raise WireError(
                f"not a stream of JSON events: the first event is {_snippet(event.data)} "
                f"({_json_reason(error)})",
                **where,
            ) from None
        found = format_of(payload, event.event)
        if found is not None:
            return found
        if isinstance(payload, dict) and "error" in payload:
            raise WireError(f"an error response, not a stream: {_error_message(payload)}", **where)
        raise WireError(
            f"unknown stream format: the first event is {_snippet(event.data)}; "
            f"give one of {', '.join(FORMATS)}",
            **where,
        )
    raise WireError("no data events: nothing tells the stream's format", offset=0)


# ====================
# Mappers: events -> labels and pieces
# ====================


class _Mapper:
    """Maps one stream's events in order; holds what they said about the response.

    A subclass's ``map`` reads one event's JSON, adds its pieces through ``piece``
    and returns the label the event gets when it carried no piece.
    """

    format: ClassVar[str]
    input_key: ClassVar[str]
    output_keys: ClassVar[tuple[str, ...]]
    not_details: ClassVar[tuple[str, ...]] = ()
    """Usage keys llm's plugin leaves out of the details, beside the input key."""

    def __init__(self) -> None:
        self.pieces: list[Piece] = []
        self.model: str | None = None
        self.usage_input: int | None = None
        self.usage_output: int | None = None
        self.usage_details: dict | None = None
        self.usage: dict[str, Any] = {}
        self.choices: set[int] = set()
        self.server_times: dict[int, int] = {}
        """Event index -> the time the server wrote into it, in ns since the epoch."""

    def map(self, index: int, payload: dict, event: str) -> str:
        raise NotImplementedError

    def map_all(
        self, events: list[Event], reads: tuple[Read, ...]
    ) -> tuple[list[str], WireError | None]:
        """One label per event, up to and including the first one that is bad."""
        labels: list[str] = []
        pieces = self.pieces
        parse = _parse
        for event in events:
            if event.comment:
                labels.append("keep-alive")
                continue
            data = event.data
            if data == "[DONE]":
                labels.append("done")
                continue
            before = len(pieces)
            try:
                payload = parse(data)
                if type(payload) is not dict:
                    raise TypeError
                label = self.map(event.index, payload, event.event)
            except (ValueError, RecursionError) as error:  # JSONDecodeError is a ValueError
                problem = f"invalid JSON ({_json_reason(error)}): {_snippet(data)}"
            except _ProviderError as error:
                problem = f"the provider sent an error: {error}"
            except (AttributeError, TypeError, KeyError, IndexError):
                # A field of another type than the format's: a list where a dict belongs.
                problem = f"not a {self.format} event: {_snippet(data)}"
            else:
                labels.append(pieces[before].kind if len(pieces) > before else label)
                continue
            del pieces[before:]
            labels.append("error")
            offset = event.byte_start
            return labels, WireError(
                f"event {event.index}: {problem}", offset=offset, line=_line_at(reads, offset)
            )
        return labels, None

    def piece(
        self,
        index: int,
        kind: str,
        text: Any,
        tool_call_id: str | None = None,
        choice: int = 0,
    ) -> None:
        """Add a piece when ``text`` is a non-empty string: an empty one delivers nothing."""
        if text and type(text) is str:
            self.pieces.append(Piece(index, kind, text, tool_call_id, choice))

    def take_model(self, model: Any) -> None:
        if self.model is None and isinstance(model, str) and model:
            self.model = model

    def take_usage(self, usage: Any) -> bool:
        """Merge a usage object into what earlier ones said; True if there was one.

        The totals are read as llm's plugin reads them; the details are the rest,
        as llm keeps them (``response.token_details``).
        """
        if not isinstance(usage, dict) or not usage:
            return False
        self.usage.update((k, v) for k, v in usage.items() if v is not None)
        merged = self.usage
        if isinstance(merged.get(self.input_key), int):
            self.usage_input = merged[self.input_key]
        outputs = [merged[k] for k in self.output_keys if isinstance(merged.get(k), int)]
        if outputs:
            self.usage_output = sum(outputs)
        dropped = (self.input_key, *self.not_details)
        self.usage_details = {k: v for k, v in merged.items() if k not in dropped} or None
        return True


class _OpenAIChat(_Mapper):
    """OpenAI chat.completions chunks (and the many APIs that copy them)."""

    format = "openai-chat"
    input_key = "prompt_tokens"
    output_keys = ("completion_tokens",)
    not_details = ("completion_tokens", "total_tokens")

    def __init__(self) -> None:
        super().__init__()
        self.call_ids: dict[tuple[int, int], str] = {}
        """(choice, tool call index) -> the call's id: later deltas carry only the index."""

    def map(self, index: int, payload: dict, event: str) -> str:
        # The hot path of a long stream: one chunk per token, so nothing here is
        # done twice and a text delta costs three dict lookups past the JSON.
        if payload.get("error"):
            raise _ProviderError(_error_message(payload))
        if self.model is None:
            self.take_model(payload.get("model"))
        usage = payload.get("usage")
        if usage is None and "x_groq" in payload:  # Groq's usage rides in its own block
            usage = payload["x_groq"].get("usage")
        label = "usage" if usage and self.take_usage(usage) else "empty"
        for choice in payload.get("choices") or ():
            n = choice.get("index") or 0
            if type(n) is not int:
                raise TypeError("a choice index is a number")
            self.choices.add(n)
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                self.piece(index, "reasoning", reasoning, None, n)
            calls = delta.get("tool_calls")
            if calls:
                for call in calls:
                    self.tool_call(index, n, call)
            content = delta.get("content")
            if content and type(content) is str:
                self.pieces.append(Piece(index, "text", content, None, n))
            if choice.get("finish_reason"):
                label = "finish"
            elif label == "empty" and delta.get("role"):
                label = "role"
        return label

    def tool_call(self, index: int, choice: int, call: dict) -> None:
        key = (choice, call.get("index") or 0)
        function = call.get("function") or {}
        call_id = self.call_ids.get(key)
        if call_id is None:
            # A call without an id still needs a stream of its own.
            call_id = self.call_ids[key] = call.get("id") or f"call-{choice}-{key[1]}"
            self.piece(index, "tool_call_name", function.get("name"), call_id, choice)
        self.piece(index, "tool_call_args", function.get("arguments"), call_id, choice)


_RESPONSES_DELTAS = {
    "response.output_text.delta": "text",
    "response.reasoning_summary_text.delta": "reasoning",
    "response.reasoning_text.delta": "reasoning",
}


class _OpenAIResponses(_Mapper):
    """OpenAI Responses API events, told apart by ``type``."""

    format = "openai-responses"
    input_key = "input_tokens"
    output_keys = ("output_tokens",)
    not_details = ("output_tokens", "total_tokens")

    def map(self, index: int, payload: dict, event: str) -> str:
        kind = payload.get("type") or event
        delta_kind = _RESPONSES_DELTAS.get(kind)
        if delta_kind is not None:
            self.piece(index, delta_kind, payload.get("delta"))
            return "empty"
        if kind == "response.function_call_arguments.delta":
            self.piece(index, "tool_call_args", payload.get("delta"), payload.get("item_id"))
            return "empty"
        if kind == "response.output_item.added":
            item = payload.get("item") or {}
            if item.get("type") == "function_call":
                self.piece(index, "tool_call_name", item.get("name"), item.get("id"))
            return "other"
        if kind in ("error", "response.failed"):
            raise _ProviderError(_error_message(payload.get("response") or payload))
        response = payload.get("response") or {}
        self.take_model(response.get("model"))
        if kind in ("response.created", "response.in_progress"):
            return "start"
        if kind in ("response.completed", "response.incomplete"):
            return "usage" if self.take_usage(response.get("usage")) else "stop"
        return "other"


class _Anthropic(_Mapper):
    """Anthropic Messages events, told apart by ``type``."""

    format = "anthropic"
    input_key = "input_tokens"
    output_keys = ("output_tokens",)
    not_details = ("output_tokens",)

    def __init__(self) -> None:
        super().__init__()
        self.tool_ids: dict[Any, str | None] = {}
        """Content block index -> its tool use id: the input deltas carry only the index."""

    def map(self, index: int, payload: dict, event: str) -> str:
        kind = payload.get("type") or event
        if kind == "content_block_delta":
            delta = payload.get("delta") or {}
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                self.piece(index, "text", delta.get("text"))
            elif delta_type == "thinking_delta":
                self.piece(index, "reasoning", delta.get("thinking"))
            elif delta_type == "input_json_delta":
                tool_id = self.tool_ids.get(payload.get("index"))
                self.piece(index, "tool_call_args", delta.get("partial_json"), tool_id)
            else:  # signature_delta, citations_delta: nothing llm shows as text
                return "other"
            return "empty"
        if kind == "content_block_start":
            block = payload.get("content_block") or {}
            if block.get("type") in ("tool_use", "server_tool_use", "mcp_tool_use"):
                self.tool_ids[payload.get("index")] = block.get("id")
                self.piece(index, "tool_call_name", block.get("name"), block.get("id"))
            return "other"
        if kind == "ping":
            return "ping"
        if kind == "message_start":
            message = payload.get("message") or {}
            self.take_model(message.get("model"))
            self.take_usage(message.get("usage"))
            return "start"
        if kind == "message_delta":
            return "usage" if self.take_usage(payload.get("usage")) else "other"
        if kind == "message_stop":
            return "stop"
        if kind == "error":
            raise _ProviderError(_error_message(payload))
        return "other"


class _Gemini(_Mapper):
    """Gemini ``streamGenerateContent`` chunks; llm-gemini reads the first candidate."""

    format = "gemini"
    input_key = "promptTokenCount"
    output_keys = ("candidatesTokenCount", "thoughtsTokenCount")
    not_details = ("totalTokenCount",)

    def map(self, index: int, payload: dict, event: str) -> str:
        if payload.get("error"):
            raise _ProviderError(_error_message(payload))
        self.take_model(payload.get("modelVersion"))
        label = "usage" if self.take_usage(payload.get("usageMetadata")) else "empty"
        candidates = payload.get("candidates") or ()
        if candidates:
            candidate = candidates[0]
            for k, part in enumerate((candidate.get("content") or {}).get("parts") or ()):
                call = part.get("functionCall")
                if call is not None:
                    call_id = call.get("id") or f"call-{index}-{k}"
                    self.piece(index, "tool_call_name", call.get("name"), call_id)
                    args = json.dumps(call.get("args") or {})
                    self.piece(index, "tool_call_args", args, call_id)
                else:
                    kind = "reasoning" if part.get("thought") else "text"
                    self.piece(index, kind, part.get("text"))
            if candidate.get("finishReason"):
                label = "finish"
        return label


_OLLAMA_USAGE = (
    "prompt_eval_count",
    "eval_count",
    "total_duration",
    "load_duration",
    "prompt_eval_duration",
    "eval_duration",
)


class _Ollama(_Mapper):
    """Ollama ``/api/chat`` lines (``/api/generate``'s ``response`` too)."""

    format = "ollama"
    input_key = "prompt_eval_count"
    output_keys = ("eval_count",)
    not_details = ("eval_count",)

    def map(self, index: int, payload: dict, event: str) -> str:
        if payload.get("error"):
            raise _ProviderError(_error_message(payload))
        self.take_model(payload.get("model"))
        message = payload.get("message") or payload
        self.piece(index, "reasoning", message.get("thinking"))
        self.piece(index, "text", message.get("content", payload.get("response")))
        for k, call in enumerate(message.get("tool_calls") or ()):
            function = call.get("function") or {}
            call_id = call.get("id") or f"call-{index}-{k}"
            self.piece(index, "tool_call_name", function.get("name"), call_id)
            args = json.dumps(function.get("arguments") or {})
            self.piece(index, "tool_call_args", args, call_id)
        created = rfc3339_ns(payload.get("created_at"))
        if created is not None:
            self.server_times[index] = created
        if payload.get("done"):
            self.take_usage({k: payload[k] for k in _OLLAMA_USAGE if k in payload})
            return "usage"
        return "empty"


_MAPPERS: dict[str, type[_Mapper]] = {
    mapper.format: mapper
    for mapper in (_OpenAIChat, _OpenAIResponses, _Anthropic, _Gemini, _Ollama)
}


# ====================
# Small readers
# ====================

_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9})\d*)?(Z|[+-]\d\d:\d\d)", re.I)


def rfc3339_ns(stamp: Any) -> int | None:
    """An RFC 3339 time as integer nanoseconds since the epoch; None if it is not one.

    ``datetime`` keeps only microseconds; Ollama writes nanoseconds, and a 5 ms
    gap between two tokens needs them all.

    >>> rfc3339_ns("1970-01-01T00:00:01.000000042Z")
    1000000042
    >>> rfc3339_ns("2025-08-20T15:47:54.5+02:00") - rfc3339_ns("2025-08-20T13:47:54Z")
    500000000
    """
    if not isinstance(stamp, str):
        return None
    match = _RFC3339.fullmatch(stamp)
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    try:
        seconds = datetime.fromisoformat(f"{whole}{'+00:00' if zone in 'Zz' else zone}")
    except ValueError:
        return None
    return int(seconds.timestamp()) * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))


def _error_message(payload: Any) -> str:
    """A provider's error object as one line: its message, and its type or code."""
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(error, dict):
        message = error.get("message") or json.dumps(error)[:200]
        code = error.get("type") or error.get("status") or error.get("code")
        return f"{message} ({code})" if code else str(message)
    return _snippet(str(error))


def _json_reason(error: Exception) -> str:
    if isinstance(error, RecursionError):
        return "nested too deep"
    return getattr(error, "msg", None) or str(error)


def _snippet(text: str, size: int = 60) -> str:
    """The start of ``text`` quoted, control characters escaped: model output is data."""
    return repr(text[:size]) + ("..." if len(text) > size else "")
