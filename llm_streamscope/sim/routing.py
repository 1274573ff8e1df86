"""What every route of the simulator is handed, and the table the routes register in.

A route module (``chat``, ``anthropic``, ``gemini``, ``responses``, ``ollama``)
answers its POSTs through a ``RouteHandler`` and registers itself with ``@route``;
the server (``server``) imports the route modules and hands each POST to the
route that takes its path. The routes never import the server.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable
from typing import Any, Protocol, TypeVar

from .engine import SendLog, new_id, record_whole, wait_latency
from .limits import LimitedHandler, LimitedHTTPServer
from .options import SimOptions


class _WithOptions(Protocol):
    @property
    def options(self) -> SimOptions: ...


_Parsed = TypeVar("_Parsed", bound=_WithOptions)
"""A request of an OpenAI route (chat completions, responses)."""


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


class _Sim(Protocol):
    """What a route reads of the server (``server.SimServer``)."""

    verbose: bool
    defaults: dict[str, Any]

    def _add_log(self, log: SendLog) -> None: ...


class SimHTTPServer(LimitedHTTPServer):
    sim: _Sim


class RouteHandler(LimitedHandler):
    """One connection's handler, as every route sees it: its shared ways of answering."""

    protocol_version = "HTTP/1.1"
    server: SimHTTPServer

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
            self.send_header(id_header, new_id("req_"))
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

    def _headers(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("x-request-id", new_id("req_"))
        self.send_header("openai-version", "2020-10-01")
        self.send_header("openai-processing-ms", "0")


Route = Callable[[RouteHandler, str, bytes, int], bool]
"""A route: answers one POST (handler, path, body, arrival time) and returns True,
or returns False at once when the path is not its own."""

ROUTES: list[Route] = []
"""The registered routes, in the order their modules were imported."""


def route(answer: Route) -> Route:
    """Register ``answer`` with the server: its module is imported by ``server``."""
    ROUTES.append(answer)
    return answer


def route_paths(
    paths: Collection[str], answer: Callable[[RouteHandler, str, bytes, int], None]
) -> None:
    """Register ``answer(handler, path, body, t0)`` for exactly ``paths``."""

    @route
    def _answer(handler: RouteHandler, path: str, raw: bytes, t0: int) -> bool:
        if path not in paths:
            return False
        answer(handler, path, raw, t0)
        return True
