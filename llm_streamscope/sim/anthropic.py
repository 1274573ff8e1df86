"""Anthropic's Messages API on the simulator: ``POST /v1/messages``, streamed or whole.

The stream has the shape of the recordings in ``../shared/realstreams``: one SSE
event per HTTP chunk, ``event: <type>`` then ``data: <json>``, in the order

    message_start, content_block_start, ping, content_block_delta...,
    content_block_stop, [next block...], message_delta, message_stop

with raw UTF-8 in the JSON and the 0-15 spaces of padding Anthropic puts before
each object's closing brace (the ping has none). Blocks:

* ``thinking`` (when the request enables thinking): ``thinking_delta`` chunks of
  a sample text, then one ``signature_delta``;
* ``tool_use`` (when the request has ``tools`` and the last user message carries
  no ``tool_result``): a call of the first tool, its arguments as
  ``input_json_delta`` chunks (the first one empty, as real streams start),
  building a JSON object valid for the tool's ``input_schema``;
  ``stop_reason`` is ``tool_use``;
* otherwise ``text``: ``text_delta`` chunks of the sample text.

Every block is cut and paced by the same profile and engine as the OpenAI route
(default profile here: ``claude-haiku``). Usage: ``input_tokens`` is the o200k
count of the prompt's text, ``output_tokens`` that of everything streamed.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import profiles, texts
from .engine import (
    LAST_CHUNK,
    REASONING,
    SSE_KEEPALIVE,
    TEXT,
    TOOL_CALL_ARGS,
    SendLog,
    http_chunk,
    ids,
    name_tokens,
    new_id,
    plan_json,
    send_paced,
    wait_whole,
)
from .options import InvalidOption, SimOptions
from .routing import RouteHandler, route_paths

MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
PATHS = (MESSAGES_PATH, COUNT_TOKENS_PATH)
DEFAULT_PROFILE = "claude-haiku"
THINKING_SAMPLE = "thinking"
"""The sample text a thinking block streams."""
MIN_THINKING_BUDGET = 1024


# --------------------------------------------------------------------------
# Errors


# The error type Anthropic answers each status with, and a message like its own.
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "The request was invalid."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}


class MessagesError(Exception):
    """An error answered the way Anthropic answers it: a status and an ``error`` object."""

    def __init__(self, status: int, message: str, type: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        default = "api_error" if status >= 500 else "invalid_request_error"
        self.type = type or _ERRORS.get(status, (default, ""))[0]

    def body(self, request_id: str) -> dict[str, Any]:
        return {
            "type": "error",
            "error": {"type": self.type, "message": self.message},
            "request_id": request_id,
        }


def simulated_error(status: int) -> MessagesError:
    """The error the ``error`` option answers with."""
    default = "api_error" if status >= 500 else "invalid_request_error"
    type_, message = _ERRORS.get(status, (default, "The request failed."))
    return MessagesError(status, f"{message} (simulated by streamscope-sim: error {status})", type_)


# --------------------------------------------------------------------------
# The request


def _text_of(content: Any) -> str:
    """The text in a message's content: a string, or blocks (tool results included)."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    if isinstance(content, list):
        for block in content:
            if not isinstance(block, dict):
                continue
            if isinstance(block.get("text"), str):
                parts.append(block["text"])
            elif block.get("type") == "tool_result":
                parts.append(_text_of(block.get("content")))
    return "".join(parts)


def _has_tool_result(messages: list[Any]) -> bool:
    """Whether the conversation's last user message carries a ``tool_result``."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return isinstance(content, list) and any(
                isinstance(b, dict) and b.get("type") == "tool_result" for b in content
            )
    return False


@dataclass(frozen=True)
class MessagesRequest:
    """What one POST to /v1/messages asks for.

    ``model``, ``messages`` and ``max_tokens`` are required, as Anthropic requires
    them. ``thinking`` of type ``enabled`` (or ``adaptive``) asks for a thinking
    block, ``display: "omitted"`` for one without its text. Simulator options come
    from the body's ``"streamscope"`` object (as on the OpenAI route), then the
    server's defaults, then this route's default profile, ``claude-haiku``.
    """

    model: str
    messages: list[Any]
    max_tokens: int
    stream: bool = False
    system: str = ""
    thinking: bool = False
    thinking_budget: int | None = None
    thinking_shown: bool = True
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_result: bool = False
    """The last user message carries a tool result: answer with text."""
    options: SimOptions = field(default_factory=SimOptions)

    @classmethod
    def parse(cls, body: Any, defaults: Mapping[str, Any] | None = None) -> MessagesRequest:
        """Validate a decoded JSON body; raises :class:`MessagesError` (400) as Anthropic would."""
        if not isinstance(body, dict):
            raise MessagesError(400, "Input should be a valid dictionary")
        for name in ("model", "messages", "max_tokens"):
            if name not in body:
                raise MessagesError(400, f"{name}: Field required")
        model, messages, max_tokens = body["model"], body["messages"], body["max_tokens"]
        if not isinstance(model, str) or not model:
            raise MessagesError(400, "model: Input should be a valid string")
        if not isinstance(messages, list):
            raise MessagesError(400, "messages: Input should be a valid list")
        if not messages:
            raise MessagesError(400, "messages: at least one message is required")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise MessagesError(400, "max_tokens: Input should be a valid integer")
        if max_tokens < 1:
            raise MessagesError(400, "max_tokens: Input should be greater than or equal to 1")
        system = body.get("system") or ""
        thinking = body.get("thinking") or {}
        if not isinstance(thinking, dict):
            raise MessagesError(400, "thinking: Input should be a valid dictionary")
        thinks = thinking.get("type") in ("enabled", "adaptive")
        budget = thinking.get("budget_tokens") if thinking.get("type") == "enabled" else None
        if thinking.get("type") == "enabled":
            if isinstance(budget, bool) or not isinstance(budget, int):
                raise MessagesError(400, "thinking.enabled.budget_tokens: Field required")
            if budget < MIN_THINKING_BUDGET:
                raise MessagesError(
                    400,
                    "thinking.enabled.budget_tokens: Input should be greater than or equal "
                    f"to {MIN_THINKING_BUDGET}",
                )
            if max_tokens <= budget:
                raise MessagesError(
                    400, "`max_tokens` must be greater than `thinking.budget_tokens`."
                )
        tools = body.get("tools") or []
        if not isinstance(tools, list) or not all(
            isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools
        ):
            raise MessagesError(400, "tools: each tool needs a name")
        options = body.get("streamscope") or {}
        if not isinstance(options, dict):
            raise MessagesError(400, "streamscope: Input should be a valid dictionary")
        try:
            sim_options = SimOptions.parse(
                {"profile": DEFAULT_PROFILE, **(defaults or {}), **options}
            )
        except InvalidOption as e:
            raise MessagesError(400, f"{e.param}: {e.message}") from None
        return cls(
            model=model,
            messages=messages,
            max_tokens=max_tokens,
            stream=bool(body.get("stream", False)),
            system=_text_of(system),
            thinking=thinks,
            thinking_budget=budget,
            thinking_shown=thinking.get("display") != "omitted",
            tools=tools,
            tool_result=_has_tool_result(messages),
            options=sim_options,
        )

    def prompt_text(self) -> str:
        """The system prompt and the text of every message, joined (what input_tokens counts)."""
        return self.system + "".join(
            _text_of(m.get("content")) for m in self.messages if isinstance(m, dict)
        )


# --------------------------------------------------------------------------
# What to answer


# Each kind of chunk travels in its delta type, under its field name.
_DELTA_TYPES = {REASONING: "thinking_delta", TEXT: "text_delta", TOOL_CALL_ARGS: "input_json_delta"}
_DELTA_FIELDS = {REASONING: "thinking", TEXT: "text", TOOL_CALL_ARGS: "partial_json"}


@dataclass(frozen=True)
class Block:
    """One content block of the answer; its chunks come lazily from its plan."""

    kind: str
    """The kind of its chunks: ``reasoning`` (thinking), ``text`` or ``tool_call_args``."""
    plan: profiles.Plan | None
    """None for a block that streams no delta (thinking with ``display: "omitted"``)."""
    start: dict[str, Any]
    """The ``content_block`` of its ``content_block_start``."""
    extra: dict[str, Any] = field(default_factory=dict)
    """What the whole block carries besides its streamed text: a signature, a tool's input."""
    lead: tuple[str, ...] = ()
    """Chunks sent before the plan's (a tool call's empty first ``partial_json``)."""

    @property
    def tokens(self) -> int:
        streamed = self.plan.completion_tokens if self.plan else 0
        return streamed + (name_tokens(self.start["name"]) if self.kind == TOOL_CALL_ARGS else 0)

    @property
    def n_chunks(self) -> int:
        return len(self.lead) + (self.plan.n_chunks if self.plan else 0)

    def chunks(self) -> Iterator[str]:
        yield from self.lead
        if self.plan:
            yield from self.plan.chunks()

    def whole(self) -> dict[str, Any]:
        """The block as a non-streamed message carries it."""
        if self.kind == TOOL_CALL_ARGS:
            return {**self.start, **self.extra}
        text = self.plan.text() if self.plan else ""
        return {**self.start, _DELTA_FIELDS[self.kind]: text, **self.extra}


@dataclass(frozen=True)
class Answer:
    blocks: tuple[Block, ...]
    stop_reason: str
    hidden_tokens: int = 0
    """Thought before the first block, never sent (the ``reasoning`` option)."""

    @property
    def output_tokens(self) -> int:
        return self.hidden_tokens + sum(b.tokens for b in self.blocks)

    def chunks(self) -> Iterator[tuple[str, str]]:
        for block in self.blocks:
            for text in block.chunks():
                yield block.kind, text


def _stop_reason(plan: profiles.Plan, otherwise: str) -> str:
    return "max_tokens" if plan.finish_reason == "length" else otherwise


def answer(request: MessagesRequest) -> Answer:
    """The blocks the simulator answers ``request`` with (planned, nothing sent).

    ``max_tokens`` covers thinking and answer together, as on Anthropic's API.
    """
    options = request.options
    blocks: list[Block] = []
    left = request.max_tokens
    if request.thinking:
        limit = min(left, request.thinking_budget or left)
        plan = options.plan(texts.sample_text(THINKING_SAMPLE), max_tokens=limit, whole=True)
        signature = base64.b64encode(ids.randbytes(240)).decode()
        blocks.append(
            Block(
                REASONING,
                plan if request.thinking_shown else None,
                {"type": "thinking", "thinking": "", "signature": ""},
                {"signature": signature},
            )
        )
        left -= plan.completion_tokens  # hidden thinking is generated all the same
        if plan.finish_reason == "length":
            return Answer(tuple(blocks), "max_tokens", options.reasoning)
    if request.tools and not request.tool_result:
        tool = request.tools[0]
        arguments, plan = plan_json(tool.get("input_schema"), options, left)
        tool_id = new_id("toolu_01", 22)
        start = {"type": "tool_use", "id": tool_id, "name": tool["name"], "input": {}}
        # Real streams open a tool call with an empty partial_json.
        blocks.append(Block(TOOL_CALL_ARGS, plan, start, {"input": arguments}, lead=("",)))
        return Answer(tuple(blocks), _stop_reason(plan, "tool_use"), options.reasoning)
    plan = options.plan(texts.sample_text(options.text), max_tokens=left)
    blocks.append(Block(TEXT, plan, {"type": "text", "text": ""}))
    return Answer(tuple(blocks), _stop_reason(plan, "end_turn"), options.reasoning)


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


# --------------------------------------------------------------------------
# The wire


_PING = http_chunk(b'event: ping\ndata: {"type": "ping"}\n\n')


def _event(type_: str, data: str) -> bytes:
    """One SSE event as one HTTP chunk; ``data`` is its JSON object, which gets
    Anthropic's padding: 0-15 spaces before the closing brace."""
    padded = data[:-1] + " " * ids.randrange(16) + "}"
    return http_chunk(f"event: {type_}\ndata: {padded}\n\n".encode())


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class _Stream:
    """The events around the deltas: which block is open, what opens and closes one."""

    def __init__(self, answer: Answer, message_start: bytes) -> None:
        self.blocks = answer.blocks
        self.message_start = message_start
        self.index = -1  # the open block
        self.open_kind: str | None = None

    def _start_next(self) -> bytes:
        self.index += 1
        block = self.blocks[self.index]
        self.open_kind = block.kind
        start = f'{{"type":"content_block_start","index":{self.index},"content_block":'
        return _event("content_block_start", start + _dumps(block.start) + "}")

    def _stop(self) -> bytes:
        block = self.blocks[self.index]
        out = b""
        if block.kind == REASONING:
            signature = _dumps({"type": "signature_delta", "signature": block.extra["signature"]})
            out = _event(
                "content_block_delta",
                f'{{"type":"content_block_delta","index":{self.index},"delta":{signature}}}',
            )
        self.open_kind = None
        stop = f'{{"type":"content_block_stop","index":{self.index}}}'
        return out + _event("content_block_stop", stop)

    def opening(self, kind: str | None) -> bytes:
        """What goes before a chunk of ``kind``: the message's start and a ping before the
        first; closing the open block and opening the next when the kind changes."""
        out = b""
        if self.index < 0:
            out = self.message_start + self._start_next() + _PING
        elif kind == self.open_kind:
            return out
        while kind is not None and self.open_kind != kind:
            out += self._stop() + self._start_next()
        return out

    def frame(self, kind: str, text: str) -> bytes:
        delta = f'{{"type":"{_DELTA_TYPES[kind]}","{_DELTA_FIELDS[kind]}":{_dumps(text)}}}'
        return _event(
            "content_block_delta",
            f'{{"type":"content_block_delta","index":{self.index},"delta":{delta}}}',
        )

    def closing(self) -> bytes:
        """Close the open block, then open and close any block that sent no chunk."""
        out = self._stop()
        while self.index + 1 < len(self.blocks):
            out += self._start_next() + self._stop()
        return out


def handle(handler: RouteHandler, path: str, raw: bytes, t0: int) -> None:
    """Answer one POST to ``/v1/messages`` (or ``/v1/messages/count_tokens``)."""
    sim = handler.server.sim
    try:
        try:
            body = json.loads(raw)
        except ValueError:
            raise MessagesError(400, "There was an error parsing the body as JSON.") from None
        if path == COUNT_TOKENS_PATH:
            body = {"max_tokens": 1, **body} if isinstance(body, dict) else body
        request = MessagesRequest.parse(body, sim.defaults)
    except MessagesError as e:
        _send_error(handler, e)
        return
    if path == COUNT_TOKENS_PATH:
        count = texts.count_tokens(request.prompt_text())
        handler._send_json(200, {"input_tokens": count}, id_header="request-id")
        return
    if request.options.error is not None:
        # retry-after-ms keeps the anthropic client's automatic retries of 429/5xx short.
        _send_error(handler, simulated_error(request.options.error), {"retry-after-ms": "1"})
        return
    planned = answer(request)
    log = SendLog.begin(
        new_id("msg_01", 22),
        request.options,
        t0,
        stream=request.stream,
        include_usage=True,
        api="messages",
    )
    if request.stream:
        handler._respond(log, lambda: _stream(handler, request, planned, log))
    else:
        handler._respond(log, lambda: _whole(handler, request, planned, log))


def _send_error(
    handler: RouteHandler, error: MessagesError, headers: dict[str, str] | None = None
) -> None:
    request_id = new_id("req_011C", 20)
    handler._send_json(
        error.status, error.body(request_id), {"request-id": request_id, **(headers or {})}, None
    )


def _headers(handler: RouteHandler, content_type: str) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Cache-Control", "no-cache")
    handler.send_header("request-id", new_id("req_011C", 20))


def _stream(handler: RouteHandler, request: MessagesRequest, planned: Answer, log: SendLog) -> bool:
    _headers(handler, "text/event-stream; charset=utf-8")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()  # one sendall: the client sees the headers at once

    prompt_tokens = texts.count_tokens(request.prompt_text())
    message: dict[str, Any] = {
        "id": log.id,
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(prompt_tokens, 1),
    }
    start = _event("message_start", '{"type":"message_start","message":' + _dumps(message) + "}")
    events = _Stream(planned, start)
    sock = handler.connection
    if not send_paced(
        sock,
        log,
        request.options,
        planned.chunks(),
        events.frame,
        events.opening,
        keepalive=lambda: SSE_KEEPALIVE,
    ):
        return False
    log.settle(prompt_tokens, planned.output_tokens, planned.stop_reason)
    usage = _usage(prompt_tokens, planned.output_tokens)
    del usage["cache_creation"], usage["service_tier"]
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": planned.stop_reason, "stop_sequence": None},
        "usage": usage,
    }
    sock.sendall(
        events.closing()
        + _event("message_delta", _dumps(delta))
        + _event("message_stop", '{"type":"message_stop"}')
        + LAST_CHUNK
    )
    log.done_ns = time.perf_counter_ns()
    log.status = "complete"
    return True


def _whole(handler: RouteHandler, request: MessagesRequest, planned: Answer, log: SendLog) -> bool:
    """``stream: false``: wait as long as the stream would take, then answer at once."""
    n_chunks = sum(b.n_chunks for b in planned.blocks)
    if not wait_whole(handler.connection, log, request.options, n_chunks):
        return False
    prompt_tokens = texts.count_tokens(request.prompt_text())
    log.settle(prompt_tokens, planned.output_tokens, planned.stop_reason)
    body = {
        "id": log.id,
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": [b.whole() for b in planned.blocks],
        "stop_reason": planned.stop_reason,
        "stop_sequence": None,
        "usage": _usage(prompt_tokens, planned.output_tokens),
    }
    parts = [(b.kind, "".join(b.chunks())) for b in planned.blocks]
    handler._send_whole(_dumps(body).encode(), lambda kind: _headers(handler, kind), log, parts)
    return True


route_paths(PATHS, handle)
