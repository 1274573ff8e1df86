"""OpenAI's Responses API on the simulator: ``POST /v1/responses``, streamed or whole.

The stream has the shape of the recordings in ``../shared/realstreams``
(``openai-responses_*``): one SSE event per HTTP chunk, ``event: <type>`` then
``data: <json>``, every event carrying its ``sequence_number`` (0, 1, 2, ...):

    response.created, response.in_progress,
    response.output_item.added, response.content_part.added,
    response.output_text.delta..., response.output_text.done,
    response.content_part.done, response.output_item.done,
    response.completed

Output items, in order:

* ``reasoning`` (when the ``reasoning`` option thinks hidden tokens): an item
  with an empty summary; when the request asks for one (``reasoning.summary``),
  its summary streams as ``response.reasoning_summary_text.delta`` events (the
  ``thinking`` sample) inside ``reasoning_summary_part.added/done``;
* ``function_call`` (when the request has function ``tools`` and its input ends
  in no ``function_call_output``): a call of the first tool, its ``arguments``
  a JSON object valid for the tool's ``parameters``, streamed as
  ``response.function_call_arguments.delta``;
* otherwise a ``message``: ``output_text`` streamed as ``response.output_text.delta``.

Text and argument deltas carry ``obfuscation`` padding as real ones do (in the
recordings the escaped delta and its padding add up to 16 characters). Every
delta is cut and paced by the same profile and engine as the other routes
(default profile: ``gpt-4o-mini``, one token per delta, as in the recordings).
``max_output_tokens`` (at least 16, as OpenAI requires) cuts the answer short:
the stream then ends in ``response.incomplete``. Usage: ``input_tokens`` is the
o200k count of the instructions and input, ``output_tokens`` that of what was
streamed plus the hidden reasoning (``output_tokens_details.reasoning_tokens``).
The recordings report one output token more than they stream; the simulator
counts exactly what it sends.
"""

from __future__ import annotations

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
    THINKING_SAMPLE,
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
from .routing import ApiError, RouteHandler, route

PATHS = ("/v1/responses", "/responses")
MIN_OUTPUT_TOKENS = 16


def _api_error(status: int, message: str, param: str | None = None) -> ApiError:
    return ApiError(status, message, param=param)


# --------------------------------------------------------------------------
# The request


def _text_of(content: Any) -> str:
    """The text of an input item's content: a string, or parts with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


@dataclass(frozen=True)
class ResponsesRequest:
    """What one POST to /v1/responses asks for.

    ``model`` and ``input`` (a string, or a list of input items) are required.
    Simulator options come from the body's ``"streamscope"`` object (the openai
    client's ``extra_body``), then the server's defaults.
    """

    model: str
    input: str | list[Any]
    instructions: str | None = None
    stream: bool = False
    max_tokens: int | None = None
    reasoning: dict[str, Any] = field(default_factory=dict)
    """The request's ``reasoning`` object (``effort``, ``summary``), echoed back."""
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_result: bool = False
    """The input ends in a ``function_call_output``: answer with text."""
    options: SimOptions = field(default_factory=SimOptions)

    @classmethod
    def parse(cls, body: Any, defaults: Mapping[str, Any] | None = None) -> ResponsesRequest:
        """Validate a decoded JSON body; raises ``ApiError`` (400) as OpenAI would."""
        if not isinstance(body, dict):
            raise _api_error(400, "The request body must be a JSON object.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _api_error(400, "Missing required parameter: 'model'.", "model")
        input_ = body.get("input")
        if not isinstance(input_, (str, list)):
            raise _api_error(400, "Missing required parameter: 'input'.", "input")
        instructions = body.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise _api_error(400, "Invalid type for 'instructions': expected a string.")
        max_tokens = body.get("max_output_tokens")
        if max_tokens is not None:
            if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
                raise _api_error(
                    400,
                    "Invalid type for 'max_output_tokens': expected an integer.",
                    "max_output_tokens",
                )
            if max_tokens < MIN_OUTPUT_TOKENS:
                raise _api_error(
                    400,
                    "Invalid 'max_output_tokens': integer below minimum value. Expected a "
                    f"value >= {MIN_OUTPUT_TOKENS}, but got {max_tokens} instead.",
                    "max_output_tokens",
                )
        reasoning = body.get("reasoning") or {}
        if not isinstance(reasoning, dict):
            raise _api_error(400, "Invalid type for 'reasoning': expected an object.", "reasoning")
        tools = body.get("tools") or []
        if not isinstance(tools, list):
            raise _api_error(400, "Invalid type for 'tools': expected an array.", "tools")
        for i, tool in enumerate(tools):
            function = isinstance(tool, dict) and tool.get("type") == "function"
            if function and not isinstance(tool.get("name"), str):
                raise _api_error(400, f"Missing required parameter: 'tools[{i}].name'.", "tools")
        last = input_[-1] if isinstance(input_, list) and input_ else None
        options = body.get("streamscope") or {}
        if not isinstance(options, dict):
            raise _api_error(400, "'streamscope' must be an object.", "streamscope")
        try:
            sim_options = SimOptions.parse({**(defaults or {}), **options})
        except InvalidOption as e:
            raise _api_error(400, e.message, e.param) from None
        return cls(
            model=model,
            input=input_,
            instructions=instructions,
            stream=bool(body.get("stream", False)),
            max_tokens=max_tokens,
            reasoning=reasoning,
            tools=tools,
            tool_result=isinstance(last, dict) and last.get("type") == "function_call_output",
            options=sim_options,
        )

    @property
    def functions(self) -> list[dict[str, Any]]:
        """The function tools (the built-in ones, such as web search, are not called)."""
        return [t for t in self.tools if isinstance(t, dict) and t.get("type") == "function"]

    def prompt_text(self) -> str:
        """The instructions and the text of every input item, joined (what input_tokens counts)."""
        if isinstance(self.input, str):
            return (self.instructions or "") + self.input
        parts = [self.instructions or ""]
        for item in self.input:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "function_call_output":
                parts.append(_text_of(item.get("output")))
            else:
                parts.append(_text_of(item.get("content")))
        return "".join(parts)


# --------------------------------------------------------------------------
# What to answer


def _item_id(prefix: str) -> str:
    """An item id like OpenAI's: a prefix and 50 hex digits."""
    return prefix + ids.randbytes(25).hex()


@dataclass(frozen=True)
class Item:
    """One output item of the answer; its deltas come lazily from its plan."""

    kind: str
    """The kind of its deltas: ``reasoning`` (summary), ``text`` or ``tool_call_args``."""
    plan: profiles.Plan | None
    """None for an item that streams no delta (reasoning without a summary)."""
    id: str
    call: dict[str, Any] = field(default_factory=dict)
    """A function call's ``call_id`` and ``name``."""

    @property
    def n_chunks(self) -> int:
        return self.plan.n_chunks if self.plan else 0

    def text(self) -> str:
        return self.plan.text() if self.plan else ""

    def added(self) -> dict[str, Any]:
        """The item as ``response.output_item.added`` carries it: in progress, empty."""
        if self.kind == REASONING:
            return {"id": self.id, "type": "reasoning", "summary": []}
        if self.kind == TOOL_CALL_ARGS:
            return {
                "id": self.id,
                "type": "function_call",
                "status": "in_progress",
                "arguments": "",
                **self.call,
            }
        return {
            "id": self.id,
            "type": "message",
            "status": "in_progress",
            "content": [],
            "role": "assistant",
        }

    def done(self, status: str = "completed") -> dict[str, Any]:
        """The whole item, as ``response.output_item.done`` and the response carry it."""
        text = self.text()
        if self.kind == REASONING:
            summary = [_summary_part(text)] if self.plan else []
            return {"id": self.id, "type": "reasoning", "summary": summary}
        if self.kind == TOOL_CALL_ARGS:
            return {**self.added(), "status": status, "arguments": text}
        return {**self.added(), "status": status, "content": [_text_part(text)]}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _summary_part(text: str) -> dict[str, Any]:
    return {"type": "summary_text", "text": text}


@dataclass(frozen=True)
class Answer:
    """The planned answer: its output items, and the usage it will report."""

    items: tuple[Item, ...]
    incomplete: bool
    """``max_output_tokens`` cut the answer short."""
    output_tokens: int
    reasoning_tokens: int

    def chunks(self) -> Iterator[tuple[str, str]]:
        for item in self.items:
            if item.plan:
                for text in item.plan.chunks():
                    yield item.kind, text

    @property
    def n_chunks(self) -> int:
        return sum(item.n_chunks for item in self.items)


def answer(request: ResponsesRequest) -> Answer:
    """The items the simulator answers ``request`` with (planned, nothing sent).

    ``max_output_tokens`` covers the hidden reasoning and the answer together, as
    on OpenAI's API; a summary is written apart and counts for nothing.
    """
    options = request.options
    items: list[Item] = []
    left = request.max_tokens
    hidden = options.reasoning
    if hidden:
        summary = None
        if request.reasoning.get("summary"):
            summary = options.plan(texts.sample_text(THINKING_SAMPLE), whole=True)
        items.append(Item(REASONING, summary, _item_id("rs_")))
        if left is not None:
            left = max(left - hidden, 0)
    functions = request.functions
    if left == 0:
        plan = options.plan("", max_tokens=None)
        items.append(Item(TEXT, plan, _item_id("msg_")))
        return Answer(tuple(items), True, hidden, hidden)
    if functions and not request.tool_result:
        function = functions[0]
        _, plan = plan_json(function.get("parameters"), options, left, compact=True)
        call = {"call_id": new_id("call_", 24), "name": function["name"]}
        items.append(Item(TOOL_CALL_ARGS, plan, _item_id("fc_"), call))
    else:
        plan = options.plan(texts.sample_text(options.text), max_tokens=left)
        items.append(Item(TEXT, plan, _item_id("msg_")))
    tokens = hidden + plan.completion_tokens
    if items[-1].kind == TOOL_CALL_ARGS:
        tokens += name_tokens(function["name"])
    return Answer(tuple(items), plan.finish_reason == "length", tokens, hidden)


def _usage(input_tokens: int, planned: Answer) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": planned.output_tokens,
        "output_tokens_details": {"reasoning_tokens": planned.reasoning_tokens},
        "total_tokens": input_tokens + planned.output_tokens,
    }


def _response(
    request: ResponsesRequest,
    log: SendLog,
    created_at: int,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The response object, as ``response.created`` ... ``response.completed`` carry it."""
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    return {
        "id": log.id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": request.instructions,
        "max_output_tokens": request.max_tokens,
        "max_tool_calls": None,
        "model": request.model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {
            "effort": request.reasoning.get("effort"),
            "summary": request.reasoning.get("summary"),
        },
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": request.tools,
        "top_logprobs": 0,
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


# --------------------------------------------------------------------------
# The wire


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _obfuscation(escaped_len: int) -> str:
    """Padding that brings an escaped delta to a multiple of 16 characters (at least 1)."""
    return new_id("", 16 - escaped_len % 16)


# The event each kind of delta travels in, and the events around its item.
_DELTA_EVENTS = {
    REASONING: "response.reasoning_summary_text.delta",
    TEXT: "response.output_text.delta",
    TOOL_CALL_ARGS: "response.function_call_arguments.delta",
}


class _Stream:
    """The events around the deltas: sequence numbers, which item is open, what opens and
    closes one."""

    def __init__(self, request: ResponsesRequest, planned: Answer, log: SendLog) -> None:
        self.request = request
        self.items = planned.items
        self.planned = planned
        self.log = log
        self.created_at = int(time.time())
        self.sequence = 0
        self.index = -1  # the open item
        self.open_kind: str | None = None

    def event(self, type_: str, fields: dict[str, Any]) -> bytes:
        """One SSE event as one HTTP chunk, with the next sequence number."""
        data = _dumps({"type": type_, "sequence_number": self.sequence, **fields})
        self.sequence += 1
        return http_chunk(f"event: {type_}\ndata: {data}\n\n".encode())

    def response(self, status: str, output: list[dict[str, Any]], usage: Any = None) -> dict:
        return _response(self.request, self.log, self.created_at, status, output, usage)

    def _where(self, item: Item) -> dict[str, Any]:
        where: dict[str, Any] = {"item_id": item.id, "output_index": self.index}
        if item.kind == TEXT:
            where["content_index"] = 0
        elif item.kind == REASONING:
            where["summary_index"] = 0
        return where

    def _start_next(self) -> bytes:
        self.index += 1
        item = self.items[self.index]
        self.open_kind = item.kind
        out = self.event(
            "response.output_item.added", {"output_index": self.index, "item": item.added()}
        )
        if item.kind == TEXT:
            part = {**self._where(item), "part": _text_part("")}
            out += self.event("response.content_part.added", part)
        elif item.kind == REASONING and item.plan:
            part = {**self._where(item), "part": _summary_part("")}
            out += self.event("response.reasoning_summary_part.added", part)
        return out

    def _stop(self, status: str = "completed") -> bytes:
        item = self.items[self.index]
        where = self._where(item)
        text = item.text()
        out = b""
        if item.kind == TEXT:
            out += self.event("response.output_text.done", {**where, "text": text, "logprobs": []})
            out += self.event("response.content_part.done", {**where, "part": _text_part(text)})
        elif item.kind == TOOL_CALL_ARGS:
            out += self.event("response.function_call_arguments.done", {**where, "arguments": text})
        elif item.plan:
            out += self.event("response.reasoning_summary_text.done", {**where, "text": text})
            out += self.event(
                "response.reasoning_summary_part.done", {**where, "part": _summary_part(text)}
            )
        self.open_kind = None
        done = {"output_index": self.index, "item": item.done(status)}
        return out + self.event("response.output_item.done", done)

    def opening(self, kind: str | None) -> bytes:
        """What goes before a delta of ``kind``: the response's first events and its first
        item before the first; closing the open item and opening the next when the kind
        changes."""
        out = b""
        if self.index < 0:
            out = self.event("response.created", {"response": self.response("in_progress", [])})
            out += self.event(
                "response.in_progress", {"response": self.response("in_progress", [])}
            )
            out += self._start_next()
        elif kind == self.open_kind:
            return out
        while kind is not None and self.open_kind != kind:
            out += self._stop() + self._start_next()
        return out

    def frame(self, kind: str, text: str) -> bytes:
        escaped = _dumps(text)
        fields = self._where(self.items[self.index])
        fields["delta"] = text
        if kind == TEXT:
            fields["logprobs"] = []
        if kind != REASONING:
            fields["obfuscation"] = _obfuscation(len(escaped) - 2)
        return self.event(_DELTA_EVENTS[kind], fields)

    def closing(self, input_tokens: int) -> bytes:
        """Close the open item, then open and close any item that sent no delta, then
        ``response.completed`` (or ``response.incomplete``) with the usage."""
        status = "incomplete" if self.planned.incomplete else "completed"
        out = self._stop(status)
        while self.index + 1 < len(self.items):
            out += self._start_next() + self._stop(status)
        output = [item.done(status) for item in self.items]
        response = self.response(status, output, _usage(input_tokens, self.planned))
        return out + self.event(f"response.{status}", {"response": response})


def handle(handler: RouteHandler, raw: bytes, t0: int) -> None:
    """Answer one POST to ``/v1/responses``."""
    request = handler._openai_request(raw, ResponsesRequest.parse)
    if request is None:
        return
    planned = answer(request)
    log = SendLog.begin(
        _item_id("resp_"),
        request.options,
        t0,
        stream=request.stream,
        include_usage=True,
        api="responses",
    )
    if request.stream:
        handler._respond(log, lambda: _stream(handler, request, planned, log))
    else:
        handler._respond(log, lambda: _whole(handler, request, planned, log))


def _stream(
    handler: RouteHandler, request: ResponsesRequest, planned: Answer, log: SendLog
) -> bool:
    handler._headers("text/event-stream; charset=utf-8")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()  # one sendall: the client sees the headers at once

    events = _Stream(request, planned, log)
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
    input_tokens = texts.count_tokens(request.prompt_text())
    finish = "length" if planned.incomplete else "stop"
    log.settle(input_tokens, planned.output_tokens, finish)
    sock.sendall(events.closing(input_tokens) + LAST_CHUNK)
    log.done_ns = time.perf_counter_ns()
    log.status = "complete"
    return True


def _whole(handler: RouteHandler, request: ResponsesRequest, planned: Answer, log: SendLog) -> bool:
    """``stream: false``: wait as long as the stream would take, then answer at once."""
    if not wait_whole(handler.connection, log, request.options, planned.n_chunks):
        return False
    input_tokens = texts.count_tokens(request.prompt_text())
    status = "incomplete" if planned.incomplete else "completed"
    log.settle(input_tokens, planned.output_tokens, "length" if planned.incomplete else "stop")
    output = [item.done(status) for item in planned.items]
    body = _response(request, log, int(time.time()), status, output, _usage(input_tokens, planned))
    parts = [(item.kind, item.text()) for item in planned.items if item.plan]
    handler._send_whole(_dumps(body).encode(), handler._headers, log, parts)
    return True


@route
def _answer(handler: RouteHandler, path: str, raw: bytes, t0: int) -> bool:
    if path not in PATHS:
        return False
    handle(handler, raw, t0)
    return True
