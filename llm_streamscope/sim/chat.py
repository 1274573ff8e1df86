"""OpenAI's chat completions on the simulator: ``POST /v1/chat/completions``.

The wire format follows the recordings in ``../shared/realstreams`` byte for byte
in structure: chunked transfer encoding, one SSE event per chunk, a role-only first
chunk, one content chunk per event, a finish chunk, a ``choices: []`` usage chunk
when ``stream_options.include_usage`` is set, then ``data: [DONE]``.

Simulator options travel in the request body under ``"streamscope"`` (the openai
client's ``extra_body``); see :class:`SimRequest`.
"""

from __future__ import annotations

import hashlib
import json
import random
import string
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any

from . import profiles, texts
from .engine import (
    LAST_CHUNK,
    SSE_KEEPALIVE,
    TEXT,
    TOOL_CALL_ARGS,
    TOOL_CALL_NAME,
    SendLog,
    http_chunk,
    int_or_none,
    name_tokens,
    new_id,
    plan_json,
    send_paced,
    wait_whole,
)
from .options import InvalidOption, SimOptions
from .routing import ApiError, RouteHandler, route

COMPLETIONS_PATH = "/v1/chat/completions"

_ALNUM = string.ascii_letters + string.digits
_ids = random.Random()  # fresh randomness for ids and padding; never the seeded streams


@dataclass(frozen=True)
class SimRequest:
    """What one POST to /v1/chat/completions asks for.

    The simulator options (:class:`~.options.SimOptions`) come from the body's
    ``"streamscope"`` object, then a top-level ``seed``, then the server's
    defaults; ``max_tokens`` (or ``max_completion_tokens``), ``stream``,
    ``stream_options`` and ``tools`` are the ordinary OpenAI parameters.
    """

    model: str
    messages: list[Any]
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    options: SimOptions = field(default_factory=SimOptions)
    tools: list[dict[str, Any]] = field(default_factory=list)
    """The ``function`` objects of the request's tools."""
    tool_result: bool = False
    """The last message is a ``tool`` message: answer with text."""
    schema: dict[str, Any] | None = None
    """The JSON schema of ``response_format`` (``{}`` for ``json_object``): answer with JSON."""

    @classmethod
    def parse(cls, body: Any, defaults: Mapping[str, Any] | None = None) -> SimRequest:
        """Validate a decoded JSON body; raises :class:`ApiError` (400) like OpenAI would."""
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ApiError(400, "you must provide a model parameter", param="model")
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise ApiError(400, "Missing required parameter: 'messages'.", param="messages")
        options = body.get("streamscope") or {}
        if not isinstance(options, dict):
            raise ApiError(400, "'streamscope' must be an object.", param="streamscope")
        if "seed" in body:
            options = {"seed": body["seed"], **options}
        stream_options = body.get("stream_options") or {}
        tools = body.get("tools") or []
        if not isinstance(tools, list):
            raise ApiError(400, "'tools' must be an array.", param="tools")
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise ApiError(
                    400, f"Missing required parameter: 'tools[{i}].function.name'.", param="tools"
                )
        last = messages[-1] if messages else None
        response_format = body.get("response_format") or {}
        if not isinstance(response_format, dict):
            raise ApiError(400, "'response_format' must be an object.", param="response_format")
        schema = None
        if response_format.get("type") == "json_schema":
            json_schema = response_format.get("json_schema")
            schema = (json_schema.get("schema") if isinstance(json_schema, dict) else None) or {}
        elif response_format.get("type") == "json_object":
            schema = {}
        try:
            return cls(
                model=model,
                messages=messages,
                stream=bool(body.get("stream", False)),
                include_usage=bool(
                    isinstance(stream_options, dict) and stream_options.get("include_usage")
                ),
                max_tokens=int_or_none(
                    body.get("max_completion_tokens", body.get("max_tokens")), "max_tokens", 1
                ),
                options=SimOptions.parse({**(defaults or {}), **options}),
                tools=[tool["function"] for tool in tools],
                tool_result=isinstance(last, dict) and last.get("role") == "tool",
                schema=schema,
            )
        except InvalidOption as e:
            raise ApiError(400, e.message, param=e.param) from None

    def prompt_text(self) -> str:
        """The text of every message, joined (what prompt_tokens counts)."""
        parts: list[str] = []
        for message in self.messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(
                    p["text"]
                    for p in content
                    if isinstance(p, dict) and isinstance(p.get("text"), str)
                )
        return "".join(parts)


# --------------------------------------------------------------------------
# The handler


def _frame(event: str) -> bytes:
    """One SSE event (``data: ...``) as one HTTP chunk."""
    return http_chunk(f"data: {event}\n\n".encode())


class _Padding:
    """The ``obfuscation`` field real OpenAI streams carry.

    In the recordings ``len(escaped content) + len(obfuscation)`` is a constant
    per stream (10-13), or that constant plus a multiple of 16 for longer
    content: the padding hides the length of each token from traffic analysis.
    Other chunks get a short random padding.
    """

    _pool = "".join(_ids.choices(_ALNUM, k=4096))  # made once: a response starts at no cost

    def __init__(self) -> None:
        self.base = _ids.randint(9, 13)
        self._pos = _ids.randrange(len(self._pool))

    def _take(self, n: int) -> str:
        if self._pos + n > len(self._pool):
            self._pos = 0
        s = self._pool[self._pos : self._pos + n]
        self._pos += n
        return s

    def for_content(self, escaped_len: int) -> str:
        total = self.base
        if escaped_len > total:
            total += 16 * -(-(escaped_len - total) // 16)
        return self._take(total - escaped_len)

    def other(self) -> str:
        return self._take(_ids.randint(1, 11))


# --------------------------------------------------------------------------
# What to answer


@dataclass(frozen=True)
class ChatAnswer:
    """What the simulator answers a chat request with (planned, nothing sent).

    With ``tools`` in the request and no ``tool`` message last, a call of the
    first tool: its arguments a JSON object valid for the tool's ``parameters``,
    cut and paced like text, after one chunk that names the call (kind
    ``tool_call_name``); ``finish_reason`` is ``tool_calls``. Else, with a
    ``response_format``, JSON text valid for its schema. Otherwise the sample
    text. ``completion_tokens`` counts what is streamed and the hidden
    ``reasoning`` tokens, as OpenAI's usage does.
    """

    plan: profiles.Plan
    finish_reason: str
    completion_tokens: int
    reasoning_tokens: int = 0
    tool: dict[str, Any] | None = None
    """The tool called: its ``name``, and the ``id`` of the call."""

    @classmethod
    def of(cls, request: SimRequest) -> ChatAnswer:
        options = request.options
        tool = None
        if request.tools and not request.tool_result:
            function = request.tools[0]
            _, plan = plan_json(
                function.get("parameters"), options, request.max_tokens, compact=True
            )
            tool = {"name": function["name"], "id": new_id("call_", 24)}
            finish_reason = "length" if plan.finish_reason == "length" else "tool_calls"
        elif request.schema is not None:
            _, plan = plan_json(request.schema, options, request.max_tokens, compact=True)
            finish_reason = plan.finish_reason
        else:
            plan = options.plan(texts.sample_text(options.text), max_tokens=request.max_tokens)
            finish_reason = plan.finish_reason
        return cls(
            plan,
            finish_reason,
            plan.completion_tokens + options.reasoning + (name_tokens(tool["name"]) if tool else 0),
            options.reasoning,
            tool,
        )

    @property
    def n_chunks(self) -> int:
        return self.plan.n_chunks + (self.tool is not None)

    def chunks(self) -> Iterator[tuple[str, str]]:
        """``(kind, text)`` of each content chunk, in order."""
        if self.tool is None:
            return zip(repeat(TEXT), self.plan.chunks())
        name = ((TOOL_CALL_NAME, self.tool["name"]),)
        return chain(name, zip(repeat(TOOL_CALL_ARGS), self.plan.chunks()))

    def tool_call(self, arguments: str = "") -> dict[str, Any]:
        """The tool call as a message carries it (a stream's first chunk: no arguments)."""
        assert self.tool is not None
        function = {"name": self.tool["name"], "arguments": arguments}
        return {"id": self.tool["id"], "type": "function", "function": function}


def _usage(prompt_tokens: int, planned: ChatAnswer) -> dict[str, Any]:
    completion_tokens = planned.completion_tokens
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": planned.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _fingerprint(profile: str) -> str:
    return "fp_" + hashlib.sha1(profile.encode()).hexdigest()[:10]


def complete(handler: RouteHandler, request: SimRequest, t0: int) -> None:
    planned = ChatAnswer.of(request)
    log = SendLog.begin(
        new_id("chatcmpl-"),
        request.options,
        t0,
        stream=request.stream,
        include_usage=request.include_usage,
    )
    if request.stream:
        handler._respond(log, lambda: _stream(handler, request, planned, log))
    else:
        handler._respond(log, lambda: _whole(handler, request, planned, log))


def _stream(handler: RouteHandler, request: SimRequest, planned: ChatAnswer, log: SendLog) -> bool:
    handler._headers("text/event-stream; charset=utf-8")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()  # one sendall: the client sees the headers at once

    send = handler.connection.sendall
    pad = _Padding()
    usage_null = ',"usage":null' if request.include_usage else ""
    head = (
        f'{{"id":"{log.id}","object":"chat.completion.chunk","created":{int(time.time())},'
        f'"model":{json.dumps(request.model)},"service_tier":"default",'
        f'"system_fingerprint":"{_fingerprint(log.profile)}",'
        '"choices":[{"index":0,"delta":'
    )
    content_tail = ',"logprobs":null,"finish_reason":null}]' + usage_null + ',"obfuscation":"'
    dumps = json.dumps
    role_sent = False

    def opening(kind: str | None) -> bytes:
        """The role-only chunk, once, right before the first content chunk
        (a tool call's first chunk carries the role itself)."""
        nonlocal role_sent
        if role_sent:
            return b""
        role_sent = True
        if kind == TOOL_CALL_NAME:
            return b""
        return _frame(
            head
            + '{"role":"assistant","content":"","refusal":null}'
            + content_tail
            + pad.other()
            + '"}'
        )

    def frame(kind: str, text: str) -> bytes:
        escaped = dumps(text, ensure_ascii=False)
        if kind == TEXT:
            delta = '{"content":' + escaped + "}"
        elif kind == TOOL_CALL_ARGS:
            delta = '{"tool_calls":[{"index":0,"function":{"arguments":' + escaped + "}}]}"
        else:  # the call's first chunk: the role, its id and name, no arguments yet
            call = {"index": 0, **planned.tool_call()}
            return _frame(
                head
                + '{"role":"assistant","content":null,"tool_calls":['
                + dumps(call, ensure_ascii=False, separators=(",", ":"))
                + '],"refusal":null}'
                + content_tail
                + pad.other()
                + '"}'
            )
        return _frame(head + delta + content_tail + pad.for_content(len(escaped) - 2) + '"}')

    if not send_paced(
        handler.connection,
        log,
        request.options,
        planned.chunks(),
        frame,
        opening,
        keepalive=lambda: SSE_KEEPALIVE,
    ):
        return False

    log.finish_reason = planned.finish_reason
    log.completion_tokens = planned.completion_tokens
    send(
        _frame(
            head
            + "{}"
            + ',"logprobs":null,"finish_reason":'
            + dumps(planned.finish_reason)
            + "}]"
            + usage_null
            + ',"obfuscation":"'
            + pad.other()
            + '"}'
        )
    )
    if request.include_usage:
        log.prompt_tokens = texts.count_tokens(request.prompt_text())
        usage = dumps(_usage(log.prompt_tokens, planned), separators=(",", ":"))
        send(
            _frame(
                head[: head.index('"choices"')]
                + '"choices":[],"usage":'
                + usage
                + ',"obfuscation":"'
                + pad.other()
                + '"}'
            )
        )
    send(_frame("[DONE]") + LAST_CHUNK)
    log.done_ns = time.perf_counter_ns()
    log.status = "complete"
    return True


def _whole(handler: RouteHandler, request: SimRequest, planned: ChatAnswer, log: SendLog) -> bool:
    """``stream: false``: wait as long as the stream would take, then answer at once."""
    content = planned.plan.text()
    if not wait_whole(handler.connection, log, request.options, planned.n_chunks):
        return False
    prompt_tokens = texts.count_tokens(request.prompt_text())
    log.settle(prompt_tokens, planned.completion_tokens, planned.finish_reason)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if planned.tool is not None:
        message["content"] = None
        message["tool_calls"] = [planned.tool_call(content)]
    body = {
        "id": log.id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": [
            {
                "index": 0,
                "message": {**message, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": planned.finish_reason,
            }
        ],
        "usage": _usage(prompt_tokens, planned),
        "service_tier": "default",
        "system_fingerprint": _fingerprint(log.profile),
    }
    parts = [(TEXT, content)]
    if planned.tool is not None:
        parts = [(TOOL_CALL_NAME, planned.tool["name"]), (TOOL_CALL_ARGS, content)]
    handler._send_whole(json.dumps(body, ensure_ascii=False).encode(), handler._headers, log, parts)
    return True


@route
def _answer(handler: RouteHandler, path: str, raw: bytes, t0: int) -> bool:
    if path not in (COMPLETIONS_PATH, "/chat/completions"):
        return False
    request = handler._openai_request(raw, SimRequest.parse)
    if request is not None:
        complete(handler, request, t0)
    return True
