"""Ollama's API on the simulator: ``POST /api/chat`` and ``POST /api/generate``, NDJSON.

The stream has the shape of the Ollama recordings in ``../shared/realstreams``:
``application/x-ndjson``, one JSON object per line and per HTTP chunk, each with
``model`` and ``created_at`` (the server's UTC clock at the moment of sending,
RFC 3339 with nanoseconds and trailing zeros dropped, as Go writes it), then

* ``/api/chat``: ``"message": {"role": "assistant", "content": ...}``
  (``"thinking"`` in place of ``content`` for a thinking chunk);
* ``/api/generate``: ``"response": ...`` (and ``"thinking"``);

and ``"done": false``. The last line has empty content, ``done: true``,
``done_reason`` (``stop``, or ``length`` after ``options.num_predict``) and the
counters: ``prompt_eval_count`` (o200k tokens of the prompt), ``eval_count``
(tokens streamed, thinking and hidden ``reasoning`` included), and
``total_duration``, ``load_duration``, ``prompt_eval_duration`` and
``eval_duration`` in nanoseconds, measured on the simulator's own clock: the
prompt's evaluation is the wait before the first chunk, the evaluation the time
from the first chunk to the last. ``stream: false`` answers with that last
object alone, its content whole.

``think: true`` streams the ``thinking`` sample first, as ``thinking``. Simulator
options come from the body's ``"streamscope"`` object, then ``options.seed``
(Ollama's own seed), then the server's defaults; default profile
``gpt-4o-mini`` (one token per line, as Ollama streams). Tools are not answered
with calls: the answer is text. Errors are Ollama's: a status and
``{"error": "..."}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from . import texts
from .engine import (
    LAST_CHUNK,
    REASONING,
    TEXT,
    SendLog,
    ThoughtsThenText,
    http_chunk,
    new_id,
    send_paced,
    wait_whole,
)
from .options import InvalidOption, SimOptions
from .routing import RouteHandler, route_paths

CHAT_PATH = "/api/chat"
GENERATE_PATH = "/api/generate"
PATHS = (CHAT_PATH, GENERATE_PATH)


class OllamaError(Exception):
    """An error answered the way Ollama answers it: a status and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": self.message}


# --------------------------------------------------------------------------
# The request


@dataclass(frozen=True)
class OllamaRequest:
    """What one POST to ``/api/chat`` or ``/api/generate`` asks for.

    ``model`` is required; ``stream`` is true unless the body says false, as on
    Ollama. ``options.num_predict`` limits the answer's tokens (-1: no limit).
    """

    model: str
    chat: bool
    """``/api/chat`` (``message``) rather than ``/api/generate`` (``response``)."""
    prompt: str
    stream: bool = True
    think: bool = False
    max_tokens: int | None = None
    options: SimOptions = field(default_factory=SimOptions)

    @classmethod
    def parse(
        cls, path: str, body: Any, defaults: Mapping[str, Any] | None = None
    ) -> OllamaRequest:
        """Validate a decoded JSON body; raises :class:`OllamaError` (400) as Ollama would."""
        if not isinstance(body, dict):
            raise OllamaError(400, "json: cannot unmarshal into Go value of type api.Request")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise OllamaError(400, "model is required")
        chat = path == CHAT_PATH
        if chat:
            messages = body.get("messages") or []
            if not isinstance(messages, list):
                raise OllamaError(400, "json: cannot unmarshal messages into []api.Message")
            prompt = "".join(
                m["content"]
                for m in messages
                if isinstance(m, dict) and isinstance(m.get("content"), str)
            )
        else:
            prompt = body.get("prompt") or ""
            if not isinstance(prompt, str):
                raise OllamaError(400, "json: cannot unmarshal prompt into string")
            system = body.get("system")
            prompt = (system if isinstance(system, str) else "") + prompt
        model_options = body.get("options") or {}
        if not isinstance(model_options, dict):
            raise OllamaError(400, "json: cannot unmarshal options into map[string]any")
        num_predict = model_options.get("num_predict")
        if num_predict is not None and (
            isinstance(num_predict, bool) or not isinstance(num_predict, int)
        ):
            raise OllamaError(400, "invalid option 'num_predict': expected an integer")
        sim = body.get("streamscope") or {}
        if not isinstance(sim, dict):
            raise OllamaError(400, "'streamscope' must be an object")
        if "seed" in model_options:
            sim = {"seed": model_options["seed"], **sim}
        try:
            sim_options = SimOptions.parse({**(defaults or {}), **sim})
        except InvalidOption as e:
            raise OllamaError(400, e.message) from None
        return cls(
            model=model,
            chat=chat,
            prompt=prompt,
            stream=body.get("stream") is not False,
            think=body.get("think") is True,
            max_tokens=num_predict if num_predict is not None and num_predict > 0 else None,
            options=sim_options,
        )


# --------------------------------------------------------------------------
# The wire


def created_at(ns: int) -> str:
    """A UTC time in nanoseconds since the epoch as Go's RFC 3339 with nanoseconds
    writes it: trailing zeros of the fraction dropped, no fraction when it is zero.

    >>> created_at(1_755_697_674_490_267_000)
    '2025-08-20T13:47:54.490267Z'
    >>> created_at(1_000_000_000)
    '1970-01-01T00:00:01Z'
    """
    seconds, fraction = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{fraction:09d}".rstrip("0")
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class _Lines:
    """The NDJSON objects of one answer, each stamped with the time it is made."""

    def __init__(self, request: OllamaRequest) -> None:
        self.request = request
        self.head = '{"model":' + _dumps(request.model) + ',"created_at":"'

    def body(self, content: str, thinking: str | None = None) -> str:
        """The content fields: ``message`` for chat, ``response`` for generate."""
        if self.request.chat:
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking is not None:
                message["thinking"] = thinking
            return '"message":' + _dumps(message)
        out = '"response":' + _dumps(content)
        if thinking is not None:
            out += ',"thinking":' + _dumps(thinking)
        return out

    def line(self, fields: str) -> bytes:
        """One object as one line, as one HTTP chunk."""
        text = self.head + created_at(time.time_ns()) + '",' + fields + "}\n"
        return http_chunk(text.encode())

    def frame(self, kind: str, text: str) -> bytes:
        if kind == REASONING:
            return self.line(self.body("", text) + ',"done":false')
        return self.line(self.body(text) + ',"done":false')


def _counters(
    planned: ThoughtsThenText, prompt_tokens: int, log: SendLog, done_ns: int
) -> dict[str, Any]:
    """The ``done`` object's counters, its durations on the simulator's own clock."""
    first = log.sent_ns[0] if log.sent_ns else done_ns
    return {
        "done_reason": _done_reason(planned),
        "done": True,
        "total_duration": done_ns - log.t0_ns,
        "load_duration": 0,
        "prompt_eval_count": prompt_tokens,
        "prompt_eval_duration": first - log.t0_ns,
        "eval_count": planned.tokens,
        "eval_duration": done_ns - first,
    }


def _done_reason(planned: ThoughtsThenText) -> str:
    return "length" if planned.cut_short else "stop"


def handle(handler: RouteHandler, path: str, raw: bytes, t0: int) -> None:
    """Answer one POST to ``/api/chat`` or ``/api/generate``."""
    try:
        try:
            body = json.loads(raw)
        except ValueError:
            raise OllamaError(400, "invalid character in request body: not JSON") from None
        request = OllamaRequest.parse(path, body, handler.server.sim.defaults)
    except OllamaError as e:
        _send_error(handler, e)
        return
    if request.options.error is not None:
        status = request.options.error
        message = f"the request failed (simulated by streamscope-sim: error {status})"
        _send_error(handler, OllamaError(status, message))
        return
    planned = ThoughtsThenText.of(
        request.options, think=request.think, max_tokens=request.max_tokens
    )
    log = SendLog.begin(
        new_id("ollama-", 16),
        request.options,
        t0,
        stream=request.stream,
        include_usage=True,
        api="ollama-chat" if request.chat else "ollama-generate",
    )
    if request.stream:
        handler._respond(log, lambda: _stream(handler, request, planned, log))
    else:
        handler._respond(log, lambda: _whole(handler, request, planned, log))


def _send_error(handler: RouteHandler, error: OllamaError) -> None:
    handler._send_json(error.status, error.body(), id_header=None)


def _stream(
    handler: RouteHandler, request: OllamaRequest, planned: ThoughtsThenText, log: SendLog
) -> bool:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/x-ndjson")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()  # one sendall: the client sees the headers at once

    lines = _Lines(request)
    sock = handler.connection
    # No keep-alive: an NDJSON line of whitespace would be no JSON object.
    if not send_paced(sock, log, request.options, planned.chunks(), lines.frame, lambda kind: b""):
        return False
    prompt_tokens = texts.count_tokens(request.prompt)
    log.settle(prompt_tokens, planned.tokens, _done_reason(planned))
    counters = _counters(planned, prompt_tokens, log, time.perf_counter_ns())
    sock.sendall(lines.line(lines.body("") + "," + _dumps(counters)[1:-1]) + LAST_CHUNK)
    log.done_ns = time.perf_counter_ns()
    log.status = "complete"
    return True


def _whole(
    handler: RouteHandler, request: OllamaRequest, planned: ThoughtsThenText, log: SendLog
) -> bool:
    """``stream: false``: wait as long as the stream would take, then answer at once."""
    if not wait_whole(handler.connection, log, request.options, planned.n_chunks):
        return False
    prompt_tokens = texts.count_tokens(request.prompt)
    log.settle(prompt_tokens, planned.tokens, _done_reason(planned))
    text = planned.text.text()
    thinking = planned.thinking.text() if planned.thinking else None
    lines = _Lines(request)
    counters = _counters(planned, prompt_tokens, log, time.perf_counter_ns())
    fields = lines.body(text, thinking) + "," + _dumps(counters)[1:-1]
    data = (lines.head + created_at(time.time_ns()) + '",' + fields + "}").encode()
    parts = [(REASONING, thinking)] if thinking else []

    def headers(content_type: str) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json; charset=utf-8")

    handler._send_whole(data, headers, log, [*parts, (TEXT, text)])
    return True


route_paths(PATHS, handle)
