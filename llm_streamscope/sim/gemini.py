"""Google's Gemini API on the simulator: ``POST /v1beta/models/{model}:streamGenerateContent``.

Two framings, as the real API sends them (see the recordings in
``../shared/realstreams`` and llm-gemini's test cassettes):

* without a query (what llm-gemini requests): one JSON array, streamed; each
  element is a ``GenerateContentResponse`` pretty-printed with two-space
  indents, the first after ``[``, the others after ``,\\r\\n``, each followed by
  ``\\n``; ``]`` closes it. Content type ``application/json; charset=UTF-8``.
* ``?alt=sse``: ``data: <json>`` events ending in CRLF CRLF, the JSON on one line
  with ``": "`` after keys. Content type ``text/event-stream``.

Every element goes out as one HTTP chunk. When the request accepts gzip (httpx
does) the body is gzip-encoded as Google encodes it, each chunk flushed
(``Z_SYNC_FLUSH``) so it decompresses on arrival.

Each element carries one part of ``candidates[0].content.parts``: a thought
summary (``"thought": true``; when ``generationConfig.thinkingConfig``
has ``includeThoughts`` and a ``thinkingBudget`` other than 0) streaming the
``thinking`` sample, then the answer text, both cut and paced by the profile
(default here: ``gemini-flash``, ~100 characters a chunk). The last element
carries ``finishReason`` (``STOP``, or ``MAX_TOKENS`` after
``maxOutputTokens``). Every element has ``usageMetadata`` (``promptTokenCount``,
``thoughtsTokenCount`` when thinking; ``candidatesTokenCount`` on the last
only, where llm-gemini reads it), ``modelVersion`` (the model in the path) and
``responseId``, the send log's id. Tools are not answered with calls: the
answer is text.
"""

from __future__ import annotations

import json
import re
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import texts
from .engine import (
    LAST_CHUNK,
    REASONING,
    SendLog,
    ThoughtsThenText,
    http_chunk,
    new_id,
    send_paced,
)
from .options import InvalidOption, SimOptions
from .routing import RouteHandler, route

PATH = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):streamGenerateContent$")
DEFAULT_PROFILE = "gemini-flash"

# Google's error status names, by HTTP status.
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class GeminiError(Exception):
    """An error answered the way Google answers it: ``{"error": {code, message, status}}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict[str, Any]:
        name = _STATUS_NAMES.get(self.status, "INTERNAL" if self.status >= 500 else "UNKNOWN")
        return {"error": {"code": self.status, "message": self.message, "status": name}}


def _text_of(content: Any) -> str:
    """The text of a ``Content`` (``{"parts": [{"text": ...}]}``)."""
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        return ""
    return "".join(
        p["text"]
        for p in content["parts"]
        if isinstance(p, dict) and isinstance(p.get("text"), str)
    )


@dataclass(frozen=True)
class GenerateRequest:
    """What one POST to ``:streamGenerateContent`` asks for.

    ``contents`` is required, as Google requires it. Simulator options come from
    the body's ``"streamscope"`` object, then the server's defaults, then this
    route's default profile, ``gemini-flash``.
    """

    model: str
    contents: list[Any]
    system: str = ""
    max_tokens: int | None = None
    thoughts: bool = False
    sse: bool = False
    options: SimOptions = field(default_factory=SimOptions)

    @classmethod
    def parse(
        cls, model: str, body: Any, sse: bool, defaults: Mapping[str, Any] | None = None
    ) -> GenerateRequest:
        """Validate a decoded JSON body; raises :class:`GeminiError` (400) as Google would."""
        if not isinstance(body, dict):
            raise GeminiError(400, "Invalid JSON payload received. Expected an object.")
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise GeminiError(400, "* GenerateContentRequest.contents: contents is not specified")
        config = body.get("generationConfig") or {}
        if not isinstance(config, dict):
            raise GeminiError(400, "Invalid value at 'generation_config'")
        max_tokens = config.get("maxOutputTokens")
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            raise GeminiError(400, "Invalid value at 'generation_config.max_output_tokens'")
        thinking = config.get("thinkingConfig") or {}
        thoughts = (
            isinstance(thinking, dict)
            and bool(thinking.get("includeThoughts"))
            and thinking.get("thinkingBudget") != 0
        )
        options = body.get("streamscope") or {}
        if not isinstance(options, dict):
            raise GeminiError(400, 'Invalid JSON payload received. Unknown name "streamscope"')
        try:
            sim_options = SimOptions.parse(
                {"profile": DEFAULT_PROFILE, **(defaults or {}), **options}
            )
        except InvalidOption as e:
            raise GeminiError(400, f"{e.param}: {e.message}") from None
        return cls(
            model=model,
            contents=contents,
            system=_text_of(body.get("systemInstruction")),
            max_tokens=max_tokens,
            thoughts=thoughts,
            sse=sse,
            options=sim_options,
        )

    def prompt_text(self) -> str:
        """The system instruction and the text of every content, joined."""
        return self.system + "".join(_text_of(c) for c in self.contents)


# --------------------------------------------------------------------------
# The wire


class _Body:
    """The body's bytes: JSON-array or SSE framing, one HTTP chunk per element,
    gzip-encoded (each chunk flushed) when the client accepts it."""

    def __init__(self, sse: bool, gzip: bool) -> None:
        self.sse = sse
        self.count = 0
        self._z = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS) if gzip else None

    def _chunk(self, payload: bytes, last: bool = False) -> bytes:
        if self._z is not None:
            payload = self._z.compress(payload) + self._z.flush(
                zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH
            )
        return http_chunk(payload) if payload else b""

    def element(self, value: dict[str, Any]) -> bytes:
        """One ``GenerateContentResponse`` as one HTTP chunk."""
        if self.sse:
            text = "data: " + json.dumps(value, ensure_ascii=False, separators=(",", ": "))
            payload = text + "\r\n\r\n"
        else:
            payload = (
                ("[" if self.count == 0 else ",\r\n")
                + json.dumps(value, ensure_ascii=False, indent=2)
                + "\n"
            )
        self.count += 1
        return self._chunk(payload.encode())

    def keepalive(self) -> bytes:
        """An SSE comment (``alt=sse`` only: a JSON array has no comments)."""
        return self._chunk(b": keep-alive\r\n\r\n")

    def end(self) -> bytes:
        """The closing ``]`` (JSON array; ``[]`` if nothing was sent), the gzip trailer,
        the last chunk."""
        tail = b""
        if not self.sse:
            tail = b"]" if self.count else b"[]"
        return self._chunk(tail, last=True) + LAST_CHUNK


def _usage(prompt_tokens: int, thoughts: int, candidates: int | None) -> dict[str, Any]:
    usage: dict[str, Any] = {"promptTokenCount": prompt_tokens}
    if candidates is not None:
        usage["candidatesTokenCount"] = candidates
    usage["totalTokenCount"] = prompt_tokens + thoughts + (candidates or 0)
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt_tokens}]
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _with_last(
    chunks: Iterable[tuple[str, str]], state: dict[str, bool]
) -> Iterator[tuple[str, str]]:
    """``chunks``, with ``state["last"]`` true while the last one is being sent."""
    iterator = iter(chunks)
    current = next(iterator, None)
    while current is not None:
        following = next(iterator, None)
        state["last"] = following is None
        yield current
        current = following


def handle(handler: RouteHandler, model: str, raw: bytes, t0: int) -> None:
    """Answer one POST to ``/v1beta/models/{model}:streamGenerateContent``."""
    query = handler.path.partition("?")[2]
    sse = "alt=sse" in query.split("&")
    try:
        try:
            body = json.loads(raw)
        except ValueError:
            raise GeminiError(400, "Invalid JSON payload received.") from None
        request = GenerateRequest.parse(model, body, sse, handler.server.sim.defaults)
    except GeminiError as e:
        _send_error(handler, e, sse)
        return
    if request.options.error is not None:
        error = GeminiError(
            request.options.error,
            f"The request failed. (simulated by streamscope-sim: error {request.options.error})",
        )
        _send_error(handler, error, sse)
        return
    planned = ThoughtsThenText.of(
        request.options, think=request.thoughts, max_tokens=request.max_tokens
    )
    log = SendLog.begin(
        new_id("", 23),
        request.options,
        t0,
        stream=True,
        include_usage=True,
        api="generateContent",
    )
    accepts = handler.headers.get("Accept-Encoding") or ""
    gzip = "gzip" in [a.split(";")[0].strip() for a in accepts.split(",")]
    handler._respond(log, lambda: _stream(handler, request, planned, log, gzip))


def _send_error(handler: RouteHandler, error: GeminiError, sse: bool) -> None:
    """An error status; without ``alt=sse`` its body is a JSON array of one error,
    which llm-gemini reads as the stream's one element."""
    body = error.body() if sse else [error.body()]
    handler._send_json(error.status, body, id_header=None)


def _stream(
    handler: RouteHandler,
    request: GenerateRequest,
    planned: ThoughtsThenText,
    log: SendLog,
    gzip: bool,
) -> bool:
    handler.send_response(200)
    handler.send_header(
        "Content-Type", "text/event-stream" if request.sse else "application/json; charset=UTF-8"
    )
    if gzip:
        handler.send_header("Content-Encoding", "gzip")
    handler.send_header("Server-Timing", "gfet4t7; dur=0")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()

    out = _Body(request.sse, gzip)
    prompt_tokens = texts.count_tokens(request.prompt_text())
    thoughts = planned.thoughts_tokens
    completion = planned.text.completion_tokens
    finish_reason = "MAX_TOKENS" if planned.cut_short else "STOP"
    state = {"last": False}

    def element(parts: list[dict[str, Any]], last: bool) -> bytes:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if last:
            candidate["finishReason"] = finish_reason
        candidate["index"] = 0
        return out.element(
            {
                "candidates": [candidate],
                "usageMetadata": _usage(prompt_tokens, thoughts, completion if last else None),
                "modelVersion": request.model,
                "responseId": log.id,
            }
        )

    def frame(kind: str, text: str) -> bytes:
        part: dict[str, Any] = {"text": text}
        if kind == REASONING:
            part["thought"] = True
        return element([part], state["last"])

    def opening(kind: str | None) -> bytes:
        # With nothing to stream, the one element says how it finished.
        return element([{"text": ""}], True) if kind is None else b""

    sock = handler.connection
    if not send_paced(
        sock,
        log,
        request.options,
        _with_last(planned.chunks(), state),
        frame,
        opening,
        keepalive=out.keepalive if request.sse else None,
    ):
        return False
    log.settle(prompt_tokens, thoughts + completion, finish_reason)
    sock.sendall(out.end())
    log.done_ns = time.perf_counter_ns()
    log.status = "complete"
    return True


@route
def _answer(handler: RouteHandler, path: str, raw: bytes, t0: int) -> bool:
    matched = PATH.match(path)
    if not matched:
        return False
    handle(handler, matched["model"], raw, t0)
    return True
