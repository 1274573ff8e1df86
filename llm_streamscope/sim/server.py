"""A loopback server that speaks OpenAI's chat.completions API, streaming a sample text.

Every ``streamscope-sim`` prompt travels through llm's real OpenAI client over real
HTTP to this server, so what streamscope measures is the same path a real OpenAI
model takes. The wire format follows the recordings in ``../shared/realstreams``
byte for byte in structure: chunked transfer encoding, one SSE event per chunk,
a role-only first chunk, one content chunk per event, a finish chunk, a
``choices: []`` usage chunk when ``stream_options.include_usage`` is set, then
``data: [DONE]``.

Simulator options travel in the request body under ``"streamscope"`` (the openai
client's ``extra_body``); see :class:`SimRequest`. A server can be given defaults
for them (``SimServer(defaults=...)``), used when a request does not say; the
body wins. ``POST /v1/messages`` speaks Anthropic Messages instead
(:mod:`.anthropic`), ``POST /v1beta/models/{model}:streamGenerateContent`` Gemini
(:mod:`.gemini`), ``POST /v1/responses`` OpenAI Responses (:mod:`.responses`),
``POST /api/chat`` and ``/api/generate`` Ollama (:mod:`.ollama`), on the same
engine (:mod:`.engine`) and profiles.

Each response leaves a :class:`SendLog`: the ``perf_counter_ns`` taken right after
each content chunk's ``sendall``, the ground truth for tests and benchmarks.
``perf_counter_ns`` is CLOCK_MONOTONIC on Linux, shared by all processes, so an
out-of-process client (``GET /v1/streamscope/sendlog/<id>``) can compare it with
its own ``time.perf_counter_ns()``.
"""

from __future__ import annotations

import hashlib
import json
import random
import string
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any, Protocol, TypeVar

from . import anthropic, gemini, ollama, profiles, replay, responses
from .engine import (
    LAST_CHUNK,
    SSE_KEEPALIVE,
    TEXT,
    TOOL_CALL_ARGS,
    TOOL_CALL_NAME,
    SendLog,
    cap_bandwidth,
    http_chunk,
    int_or_none,
    name_tokens,
    new_id,
    plan_json,
    record_whole,
    send_paced,
    wait_latency,
    wait_whole,
)
from .limits import DEFAULT_LIMITS, BodyError, LimitedHandler, LimitedHTTPServer, Limits, url_host
from .options import InvalidOption, SimOptions

__all__ = ["ApiError", "SendLog", "SimOptions", "SimRequest", "SimServer", "get_server"]

COMPLETIONS_PATH = "/v1/chat/completions"
SENDLOG_PATH = "/v1/streamscope/sendlog/"
SEND_LOGS_KEPT = 64
"""The server keeps the send logs of this many most recent responses."""

_ALNUM = string.ascii_letters + string.digits


class _WithOptions(Protocol):
    @property
    def options(self) -> SimOptions: ...


_Parsed = TypeVar("_Parsed", bound=_WithOptions)
"""A request of an OpenAI route (chat completions, responses)."""
_ids = random.Random()  # fresh randomness for ids and padding; never the seeded streams


class ApiError(Exception):
    """An error answered the way OpenAI answers it: a status and an ``error`` object."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


# Realistic messages, types and codes for `-o error STATUS`.
_SIMULATED_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("The request was invalid.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to use this model.", "invalid_request_error", None),
    404: ("The model does not exist.", "invalid_request_error", "model_not_found"),
    408: ("The request timed out.", "invalid_request_error", None),
    409: ("The request conflicted with another request.", "invalid_request_error", None),
    422: ("The request could not be processed.", "invalid_request_error", None),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
    504: ("Gateway timeout.", "server_error", None),
}


def simulated_error(status: int) -> ApiError:
    """The error ``-o error STATUS`` answers with."""
    message, type_, code = _SIMULATED_ERRORS.get(
        status,
        (
            "The request failed.",
            "server_error" if status >= 500 else "invalid_request_error",
            None,
        ),
    )
    return ApiError(
        status, f"{message} (simulated by streamscope-sim: -o error {status})", type_, None, code
    )


# --------------------------------------------------------------------------
# The request


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
            plan = options.plan(profiles.sample_text(options.text), max_tokens=request.max_tokens)
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


_new_id = new_id


def _fingerprint(profile: str) -> str:
    return "fp_" + hashlib.sha1(profile.encode()).hexdigest()[:10]


class _Handler(LimitedHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def version_string(self) -> str:
        return "streamscope-sim"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.sim.verbose:
            super().log_message(format, *args)

    # ---- plain JSON answers

    def _send_json(
        self,
        status: int,
        data: Any,
        headers: dict[str, str] | None = None,
        id_header: str | None = "x-request-id",
    ) -> None:
        """Answer with ``data`` as JSON, and a fresh request id in ``id_header`` (if any)."""
        body = json.dumps(data, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if id_header:
            self.send_header(id_header, _new_id("req_"))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, error: ApiError, headers: dict[str, str] | None = None) -> None:
        self._send_json(error.status, error.body(), headers)

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    def _send_whole(
        self,
        data: bytes,
        headers: Callable[[str], None],
        log: SendLog,
        parts: Iterable[tuple[str, str]],
    ) -> None:
        """A whole JSON answer; ``headers(content_type)`` starts the format's headers.
        ``parts`` (``(kind, text)``) go to the send log first: a client that holds the
        answer finds its log complete."""
        headers("application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        record_whole(log, parts)
        self.connection.sendall(data)

    def _respond(self, log: SendLog, respond: Callable[[], bool]) -> None:
        """Keep ``log`` (for the sendlog route) and run ``respond``, which sends the
        response and returns False when it dropped the connection on purpose; not
        before the response's latency has passed."""
        self.server.sim._add_log(log)
        try:
            wait_latency(log)
            if not respond():
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            log.status = "client_gone"
            self.close_connection = True

    # ---- routes

    def do_GET(self) -> None:
        path = self._path()
        if path.startswith(SENDLOG_PATH):
            completion_id = path[len(SENDLOG_PATH) :]
            try:
                log = self.server.sim.send_log(completion_id)
            except KeyError:
                self._send_error(
                    ApiError(404, f"No send log for {completion_id!r}.", code="not_found")
                )
                return
            self._send_json(200, log.to_dict())
        elif path in ("/v1/models", "/models"):
            model = {"id": "streamscope-sim", "object": "model", "created": 0, "owned_by": "sim"}
            self._send_json(200, {"object": "list", "data": [model]})
        else:
            self._send_error(ApiError(404, f"Invalid URL (GET {path})"))

    def do_POST(self) -> None:
        self.server.sim._count_post()
        cap_bandwidth(self.connection, None)  # until this response says otherwise
        path = self._path()
        try:
            raw = self.read_body()
        except BodyError as ex:  # the body left unread: this connection cannot go on
            self._send_error(ApiError(ex.status, str(ex)), {"Connection": "close"})
            return
        t0 = time.perf_counter_ns()
        recording = self.server.sim.replay
        # A replay leaves what it does not answer (an error to simulate) to the route.
        if recording and recording.serves(path) and replay.handle(self, recording, raw, t0):
            return
        if path in anthropic.PATHS:
            anthropic.handle(self, path, raw, t0)
            return
        gemini_route = gemini.PATH.match(path)
        if gemini_route:
            gemini.handle(self, gemini_route["model"], raw, t0)
            return
        if path in responses.PATHS:
            responses.handle(self, raw, t0)
            return
        if path in ollama.PATHS:
            ollama.handle(self, path, raw, t0)
            return
        if path not in (COMPLETIONS_PATH, "/chat/completions"):
            self._send_error(ApiError(404, f"Invalid URL (POST {path})"))
            return
        request = self._openai_request(raw, SimRequest.parse)
        if request is not None:
            self._complete(request, t0)

    def _openai_request(self, raw: bytes, parse: Callable[[Any, Any], _Parsed]) -> _Parsed | None:
        """The request of an OpenAI route, ``parse(body, defaults)`` of its JSON body; None
        once it has been answered with an error (a bad body, or the ``error`` option)."""
        try:
            try:
                body = json.loads(raw)
            except ValueError:
                raise ApiError(
                    400,
                    "We could not parse the JSON body of your request. (HINT: This likely "
                    "means you aren't using your HTTP library correctly.)",
                ) from None
            request = parse(body, self.server.sim.defaults)
        except ApiError as e:
            self._send_error(e)
            return None
        status = request.options.error
        if status is not None:
            # retry-after-ms keeps the openai client's automatic retries of 429/5xx short.
            self._send_error(simulated_error(status), {"retry-after-ms": "1"})
            return None
        return request

    # ---- the completion

    def _complete(self, request: SimRequest, t0: int) -> None:
        planned = ChatAnswer.of(request)
        log = SendLog.begin(
            _new_id("chatcmpl-"),
            request.options,
            t0,
            stream=request.stream,
            include_usage=request.include_usage,
        )
        if request.stream:
            self._respond(log, lambda: self._stream(request, planned, log))
        else:
            self._respond(log, lambda: self._whole(request, planned, log))

    def _headers(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("x-request-id", _new_id("req_"))
        self.send_header("openai-version", "2020-10-01")
        self.send_header("openai-processing-ms", "0")

    def _stream(self, request: SimRequest, planned: ChatAnswer, log: SendLog) -> bool:
        self._headers("text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()  # one sendall: the client sees the headers at once

        send = self.connection.sendall
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
            self.connection,
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
            log.prompt_tokens = profiles.count_tokens(request.prompt_text())
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

    def _whole(self, request: SimRequest, planned: ChatAnswer, log: SendLog) -> bool:
        """``stream: false``: wait as long as the stream would take, then answer at once."""
        content = planned.plan.text()
        if not wait_whole(self.connection, log, request.options, planned.n_chunks):
            return False
        prompt_tokens = profiles.count_tokens(request.prompt_text())
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
        self._send_whole(json.dumps(body, ensure_ascii=False).encode(), self._headers, log, parts)
        return True


# --------------------------------------------------------------------------
# The server


class _HTTPServer(LimitedHTTPServer):
    sim: SimServer


class SimServer:
    """The simulator's HTTP server on 127.0.0.1.

    ``SimServer().start()`` serves from a daemon thread; ``serve_forever()`` in
    the foreground. ``port=0`` picks a free ephemeral port.

    ``defaults`` holds simulator options (the names of :data:`~.options.SIM_OPTIONS`,
    e.g. ``{"profile": "claude-haiku", "seed": 1}``) for requests that do not set
    them, on both routes: clients such as llm-anthropic cannot send the
    ``"streamscope"`` object. A bad value raises :class:`~.options.InvalidOption`.

    ``replay`` (a :class:`~.replay.Recording`) answers the POSTs to its route with
    a captured stream instead of a simulated one. ``limits``: what a client can
    hold (:mod:`.limits`); ``host`` may be IPv6 (``::1``).
    """

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        verbose: bool = False,
        defaults: Mapping[str, Any] | None = None,
        replay: replay.Recording | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.replay = replay
        self.defaults: dict[str, Any] = {k: v for k, v in (defaults or {}).items() if v is not None}
        SimOptions.parse(self.defaults, prefix="")  # fail here, not on every request
        self.verbose = verbose
        self._httpd = _HTTPServer((host, port), _Handler, limits)
        self._httpd.sim = self
        self._thread: threading.Thread | None = None
        self._logs: OrderedDict[str, SendLog] = OrderedDict()
        self._logs_lock = threading.Lock()
        self.last_completion_id: str | None = None
        """The id of the most recent response (racy if several clients share the server)."""
        self.post_count = 0
        """POST requests received, errors and retries included."""

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{url_host(self.host)}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: what an OpenAI client takes as ``base_url``."""
        return self.url + "/v1"

    def start(self) -> SimServer:
        """Serve from a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"streamscope-sim-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        self._httpd.serve_forever(poll_interval=0.1)

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _count_post(self) -> None:
        with self._logs_lock:
            self.post_count += 1

    def _add_log(self, log: SendLog) -> None:
        with self._logs_lock:
            self._logs[log.id] = log
            while len(self._logs) > SEND_LOGS_KEPT:
                self._logs.popitem(last=False)
            self.last_completion_id = log.id

    def send_log(self, completion_id: str) -> SendLog:
        """The send log of one response, by its ``chatcmpl-...`` or ``msg_...`` id
        (KeyError if unknown)."""
        with self._logs_lock:
            return self._logs[completion_id]


_shared: SimServer | None = None
_shared_lock = threading.Lock()


def get_server() -> SimServer:
    """The process's shared server, started on first use (thread-safe)."""
    global _shared
    server = _shared
    if server is None:
        with _shared_lock:
            server = _shared
            if server is None:
                server = _shared = SimServer().start()
    return server


def server_started() -> bool:
    """Whether this process has started the shared server (``llm models`` must not)."""
    return _shared is not None
