"""A loopback server speaking the simulator's routes, and the process's shared one.

Every ``streamscope-sim`` prompt travels through llm's real OpenAI client over real
HTTP to this server, so what streamscope measures is the same path a real OpenAI
model takes. Each route lives in its own module and registers with ``@route``
(:mod:`.routing`): ``POST /v1/chat/completions`` OpenAI chat completions
(:mod:`.chat`), ``POST /v1/messages`` Anthropic Messages (:mod:`.anthropic`),
``POST /v1beta/models/{model}:streamGenerateContent`` Gemini (:mod:`.gemini`),
``POST /v1/responses`` OpenAI Responses (:mod:`.responses`), ``POST /api/chat`` and
``/api/generate`` Ollama (:mod:`.ollama`), on the same engine (:mod:`.engine`) and
profiles. A server can be given defaults for the simulator options
(``SimServer(defaults=...)``), used when a request does not say; the body wins.

Each response leaves a :class:`SendLog`: the ``perf_counter_ns`` taken right after
each content chunk's ``sendall``, the ground truth for tests and benchmarks.
``perf_counter_ns`` is CLOCK_MONOTONIC on Linux, shared by all processes, so an
out-of-process client (``GET /v1/streamscope/sendlog/<id>``) can compare it with
its own ``time.perf_counter_ns()``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

# Each route module registers its route on import (the order does not matter: no
# two routes take the same path).
from . import anthropic, gemini, ollama, replay, responses  # noqa: F401
from .chat import COMPLETIONS_PATH, ChatAnswer, SimRequest  # noqa: F401 (their names here too)
from .engine import SendLog, cap_bandwidth
from .limits import DEFAULT_LIMITS, BodyError, Limits, url_host
from .options import InvalidOption, SimOptions  # noqa: F401 (InvalidOption: its name here too)
from .routing import ROUTES, ApiError, RouteHandler, SimHTTPServer, simulated_error  # noqa: F401

__all__ = ["ApiError", "SendLog", "SimOptions", "SimRequest", "SimServer", "get_server"]

SENDLOG_PATH = "/v1/streamscope/sendlog/"
SEND_LOGS_KEPT = 64
"""The server keeps the send logs of this many most recent responses."""


class _Handler(RouteHandler):
    server: _HTTPServer

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
        for answer in ROUTES:
            if answer(self, path, raw, t0):
                return
        self._send_error(ApiError(404, f"Invalid URL (POST {path})"))


# --------------------------------------------------------------------------
# The server


class _HTTPServer(SimHTTPServer):
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
