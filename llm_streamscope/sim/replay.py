"""A captured stream served again: ``llm streamscope serve --replay FILE``.

A :class:`Recording` holds a captured response body cut where it was first cut
(its reads, as a sidecar ``.times`` file or standard input timed them; else
its events), and when each piece is due. The server answers a POST to the
recording's route with those bytes, one HTTP chunk per piece, through the same
paced sender as every simulated format (:func:`~.engine.send_paced`): the
network conditions, ``stall_after`` and ``drop_after`` apply to a replay too,
counted in pieces. ``error`` is left to the format's own route, which answers
it with the provider's error body.

Building a recording from a file is :func:`llm_streamscope.serving.recording_from`'s
job; this module only serves one.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .engine import LAST_CHUNK, SSE_KEEPALIVE, SendLog, http_chunk, new_id, send_paced
from .options import InvalidOption, SimOptions

if TYPE_CHECKING:
    from .routing import RouteHandler

REPLAY = "replay"
"""The kind a replay's pieces have in the send log: bytes, not one kind of llm event."""


@dataclass(frozen=True)
class Recording:
    """A captured stream, cut into the pieces it is served in.

    ``times_ns``: when each piece is due, in ns after the request, from the
    capture; None to take the profile's timing, each piece then being one
    event that carried model output with the events before it. ``closing`` goes
    right after the last piece (the events after the last model output, when
    timed by the profile). ``keepalive`` is True for an SSE stream.

    >>> recording = Recording("x.sse", r"/v1/chat/completions", "text/event-stream",
    ...                       (b"data: 1\\n\\n", b"data: 2\\n\\n"), (10**6, 3 * 10**6))
    >>> [round(d, 3) for d in recording.delays()]
    [0.001, 0.002]
    """

    name: str
    route: str
    """A regular expression the request's path must match (the format's routes)."""
    content_type: str
    pieces: tuple[bytes, ...]
    times_ns: tuple[int, ...] | None = None
    closing: bytes = b""
    keepalive: bool = False
    status: int = 200
    profile: str | None = None
    """The profile that times it when the capture has no times, unless the server's
    defaults or the request name one (its format's default profile)."""

    def serves(self, path: str) -> bool:
        return re.fullmatch(self.route, path) is not None

    def delays(self) -> Iterator[float] | None:
        """The wait before each piece (seconds), as :func:`~.engine.send_paced` takes them."""
        if self.times_ns is None:
            return None
        times = (0, *self.times_ns)
        return ((b - a) / 1e9 for a, b in itertools.pairwise(times))


def handle(handler: RouteHandler, recording: Recording, raw: bytes, t0: int) -> bool:
    """Answer one POST with the recording; False to leave it to the format's route
    (an ``error`` to simulate, or bad simulator options: that route answers them).

    The options are the server's defaults and the body's ``"streamscope"`` object
    (the recording's profile first).
    """
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return False
    given = body.get("streamscope") if isinstance(body, dict) else None
    try:
        own = {"profile": recording.profile} if recording.profile else {}
        options = SimOptions.parse(
            {**own, **handler.server.sim.defaults, **(given if isinstance(given, dict) else {})}
        )
    except InvalidOption:
        return False
    if options.error is not None:
        return False
    log = SendLog.begin(
        new_id("replay-", 24), options, t0, stream=True, include_usage=False, api=REPLAY
    )
    handler._respond(log, lambda: _stream(handler, recording, options, log))
    return True


def _stream(handler: RouteHandler, recording: Recording, options: SimOptions, log: SendLog) -> bool:
    handler.send_response(recording.status)
    handler.send_header("Content-Type", recording.content_type)
    handler.send_header("Cache-Control", "no-cache")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    pieces = ((REPLAY, piece.decode("utf-8", "replace")) for piece in recording.pieces)
    raw = iter(recording.pieces)  # the bytes themselves: text may have cut a character

    def frame(kind: str, text: str) -> bytes:
        return http_chunk(next(raw))

    if not send_paced(
        handler.connection,
        log,
        options,
        pieces,
        frame,
        lambda kind: b"",
        keepalive=(lambda: SSE_KEEPALIVE) if recording.keepalive else None,
        delays=recording.delays(),
    ):
        return False
    handler.connection.sendall(
        (http_chunk(recording.closing) if recording.closing else b"") + LAST_CHUNK
    )
    log.done_ns = time.perf_counter_ns()
    log.status = "complete"
    return True
