"""``llm streamscope serve``: the simulator as a server for any client (and
``python -m llm_streamscope.sim``, the same thing).

One server answers every format's route at once; ``--format`` says which one
the user means: the base URL printed first, the lines that point a client at
it. :data:`SERVE_FORMATS` is the one list of them. The simulator options given
(profile, seed, the network conditions...) become the server's defaults for
every request that does not set them; a route keeps its own default profile
unless ``--profile`` is given.

``--replay FILE`` serves a captured stream (anything ``inspect`` reads) on the
route of its format, cut and timed as it was captured (:func:`recording_from`).

Nothing heavy is imported with this module: ``cli`` reads the format names.

>>> SERVE_FORMATS["anthropic"].base_url("http://127.0.0.1:8000")
'http://127.0.0.1:8000'
>>> SERVE_FORMATS["openai-chat"].base_url("http://127.0.0.1:8000")
'http://127.0.0.1:8000/v1'
"""

from __future__ import annotations

import ipaddress
import itertools
import pathlib
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .sim.replay import Recording
    from .sim.server import SimServer
    from .wire.sources import Source


class ServeError(Exception):
    """What stops the server from starting, in one line fit for the user."""


@dataclass(frozen=True)
class ServeFormat:
    """One wire format the server speaks, and how a client is pointed at it."""

    name: str
    """The ``--format`` name: its name among ``wire.FORMATS`` (what ``inspect`` detects)."""
    default_profile: str
    """The profile its route uses unless ``--profile`` says otherwise."""
    route: str
    """A regular expression of the paths it answers a POST on."""
    path: str
    """Its main path, as the user is told it."""
    base_path: str
    """What a client's base URL adds to ``http://HOST:PORT``."""
    client: str
    """How a client is pointed at it: ``{url}`` is the server's root URL."""

    def base_url(self, url: str) -> str:
        return url + self.base_path


SERVE_FORMATS: dict[str, ServeFormat] = {
    f.name: f
    for f in (
        ServeFormat(
            name="openai-chat",
            default_profile="gpt-4o-mini",
            route=r"(/v1)?/chat/completions",
            path="/v1/chat/completions",
            base_path="/v1",
            client="OPENAI_BASE_URL={url}/v1 OPENAI_API_KEY=any (the openai SDK; llm's own"
            " OpenAI models); STREAMSCOPE_SIM_URL={url}/v1 (llm's streamscope-sim model)",
        ),
        ServeFormat(
            name="anthropic",
            default_profile="claude-haiku",
            route=r"/v1/messages",
            path="/v1/messages",
            base_path="",
            client="ANTHROPIC_BASE_URL={url} ANTHROPIC_API_KEY=any (llm-anthropic, the anthropic"
            " SDK)",
        ),
        ServeFormat(
            name="openai-responses",
            default_profile="gpt-4o-mini",
            route=r"(/v1)?/responses",
            path="/v1/responses",
            base_path="/v1",
            client="OPENAI_BASE_URL={url}/v1 OPENAI_API_KEY=any (the openai SDK's"
            " client.responses); responses: true in extra-openai-models.yaml for llm",
        ),
        ServeFormat(
            name="ollama",
            default_profile="gpt-4o-mini",
            route=r"/api/(chat|generate)",
            path="/api/chat",
            base_path="",
            client="OLLAMA_HOST={url} (the ollama client, llm-ollama); NDJSON has no comments:"
            " keepalive_ms does not apply",
        ),
        ServeFormat(
            name="gemini",
            default_profile="gemini-flash",
            route=r"/v1beta/models/[^/:]+:streamGenerateContent",
            path="/v1beta/models/MODEL:streamGenerateContent",
            base_path="",
            client="POST {url}/v1beta/models/MODEL:streamGenerateContent[?alt=sse] (a client"
            " that takes a base URL; llm-gemini's is fixed: only through an https proxy);"
            " keep-alives with alt=sse only",
        ),
    )
}
"""Every format ``serve`` speaks, by its ``--format`` name: the one list."""

DEFAULT_FORMAT = "openai-chat"
LOOPBACK = "127.0.0.1"


def format_for_wire(wire_format: str) -> ServeFormat:
    """The served format of a stream ``inspect`` detected as ``wire_format``."""
    return SERVE_FORMATS[wire_format]


# ====================
# Starting
# ====================


@dataclass(frozen=True)
class ServeSettings:
    """What ``serve`` was asked for."""

    format: str = DEFAULT_FORMAT
    port: int = 8000
    host: str = LOOPBACK
    defaults: Mapping[str, Any] | None = None
    """Simulator options as given on the command line (None = not given)."""
    replay: pathlib.Path | None = None
    timing: pathlib.Path | None = None
    verbose: bool = False


@dataclass(frozen=True)
class Serving:
    """A started server, and what to tell the user about it."""

    server: SimServer
    format: ServeFormat
    """The format the user means (a replay's own)."""
    profile: str
    recording: Recording | None = None
    source_name: str | None = None

    @property
    def base_url(self) -> str:
        return self.format.base_url(self.server.url)


def start(settings: ServeSettings) -> Serving:
    """Check the options, read a replay, bind the port; raises :class:`ServeError`, or
    :class:`~.sim.options.InvalidOption` for a simulator option's bad value.

    The samples are tokenized before the first request, which would otherwise
    wait for it (~600 ms, then a burst).
    """
    from .sim import profiles
    from .sim.options import SimOptions
    from .sim.server import SimServer

    given = SimOptions.from_strings(settings.defaults or {})  # InvalidOption: bad input
    if not settings.host.strip():  # the socket module would take it for 0.0.0.0
        raise ServeError("--host is empty: give an address (0.0.0.0 or :: listens on every one)")
    if settings.timing is not None and settings.replay is None:
        raise ServeError("--timing goes with --replay FILE: it says when FILE's bytes arrived")
    chosen = SERVE_FORMATS[settings.format]
    recording, source_name = None, None
    if settings.replay is not None:
        recording, wire_format, source_name = recording_from(settings.replay, settings.timing)
        chosen = format_for_wire(wire_format)
    defaults = given.model_dump(exclude_unset=True)
    try:
        server = SimServer(
            settings.port,
            host=settings.host,
            verbose=settings.verbose,
            defaults=defaults,
            replay=recording,
        )
    except OSError as ex:
        hint = " (--port 0 takes a free one)" if settings.port else ""
        raise ServeError(
            f"Cannot listen on {settings.host}:{settings.port}: {ex.strerror or ex}{hint}"
        ) from None
    try:
        profiles.prepare_samples()
    except BaseException:  # Ctrl-C while it loads: close the port all the same
        server.stop()
        raise
    return Serving(
        server,
        chosen,
        defaults.get("profile", chosen.default_profile),
        recording,
        source_name,
    )


def exposed(host: str) -> bool:
    """Whether binding ``host`` lets other machines in (anything but loopback).

    >>> exposed("127.0.0.1"), exposed("localhost"), exposed("0.0.0.0")
    (False, False, True)
    """
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name: it may resolve anywhere


def instructions(serving: Serving) -> list[str]:
    """How to point clients at the server: its format's lines first, then the others'."""
    url = serving.server.url
    chosen = serving.format
    lines = []
    if serving.recording is not None:
        lines.append(
            f"Replaying {serving.source_name} ({len(serving.recording.pieces)} pieces,"
            f" {'its own timing' if serving.recording.times_ns else 'timed by the profile'})"
            f" on POST {chosen.path}; other routes simulate."
        )
    lines.append(f"{chosen.name} format, profile {serving.profile}: {chosen.base_url(url)}")
    if chosen.base_path == "/v1":
        responses = "  responses: true\n" if chosen.name == "openai-responses" else ""
        lines.append(
            "extra-openai-models.yaml (in llm's user directory, `llm logs path`'s folder):\n"
            # gpt-4o-mini: the name tiktoken knows for o200k, the simulator's tokens.
            "- model_id: streamscope-serve\n  model_name: gpt-4o-mini\n"
            f"  api_base: {chosen.base_url(url)}\n{responses}"
            "then: llm streamscope -m streamscope-serve 'hi'"
        )
    lines.append("environment: " + chosen.client.format(url=url))
    others = [f for f in SERVE_FORMATS.values() if f is not chosen]
    lines.append("Also served:")
    lines += [f"  {f.name}: " + f.client.format(url=url) for f in others]
    lines.append("Ctrl-C stops the server.")
    return lines


def serve(settings: ServeSettings, announce: Callable[[Serving], None]) -> None:
    """Start the server, ``announce`` it, and serve in the foreground until Ctrl-C or
    SIGTERM; returns cleanly after either, whenever it comes (starting up too).
    Raises what :func:`start` raises when the server cannot start."""

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell starts a background job with it ignored (`serve &`, then kill -INT).
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    serving = None
    try:
        serving = start(settings)
        announce(serving)
        serving.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if serving is not None:
            serving.server.stop()


# ====================
# Replaying a capture
# ====================


def recording_from(
    path: pathlib.Path, timing: pathlib.Path | None = None
) -> tuple[Recording, str, str]:
    """A captured stream as the server will replay it: the recording, its wire format
    and the source's name; raises :class:`ServeError`.

    ``path`` is anything ``inspect`` reads. Its pieces are the reads as they
    arrived when the capture is timed (by ``timing``, a ``.times`` file; by
    ``path.times`` beside it; by a stream that carries its own times, Ollama's
    ``created_at``: then its events); otherwise each event that carried model
    output, with the events before it, timed by the profile.
    """
    from .wire.events import WireError
    from .wire.formats import decode
    from .wire.sources import SourceError, read_file

    try:
        source = read_file(path)
        if timing is not None:
            source = _timed_by(source, timing)
        decoded = decode(source.reads)
    except SourceError as ex:
        raise ServeError(str(ex)) from None
    except WireError as ex:
        raise ServeError(f"{source.name}: {ex}") from None
    from .sim.replay import Recording

    served = format_for_wire(decoded.format)
    content_type = {
        "sse": "text/event-stream; charset=utf-8",
        "ndjson": "application/x-ndjson",
        "json-array": "application/json; charset=UTF-8",
    }[decoded.framing]
    body = source.body
    closing = b""
    times: tuple[int, ...] | None = None
    if source.timed:
        pieces = tuple(read.data for read in source.reads)
        times = tuple(read.t_ns or 0 for read in source.reads)
    elif decoded.server_times_ns is not None and decoded.events:
        ends = [e.byte_end for e in decoded.events]
        ends[-1] = len(body)  # whatever follows the last event goes with it
        pieces = _cut(body, ends)
        times = tuple(t or 0 for t in decoded.server_times_ns)
    else:
        # Each event that carried model output, with the events before it; the rest closes.
        by_index = {event.index: event for event in decoded.events}
        carrying = sorted({piece.event_index for piece in decoded.pieces})
        ends = [by_index[i].byte_end for i in carrying]
        pieces = _cut(body, ends)
        closing = body[ends[-1] if ends else 0 :]
    recording = Recording(
        source.name,
        route=served.route,
        content_type=content_type,
        pieces=pieces,
        times_ns=times,
        closing=closing,
        keepalive=decoded.framing == "sse",
        status=source.status or 200,
        profile=served.default_profile,
    )
    return recording, decoded.format, source.name


def _timed_by(source: Source, timing: pathlib.Path) -> Source:
    """``source`` timed by the sidecar file ``timing`` (given with --timing)."""
    from .wire.sources import SourceError, sidecar_reads

    try:
        text = timing.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as ex:
        raise SourceError(f"{timing}: {getattr(ex, 'strerror', None) or ex}") from None
    reads, notes = sidecar_reads(source.body, text, str(timing))
    return replace(
        source,
        kind="sidecar",
        reads=reads,
        timed=True,
        origin=f"{timing.name}: its t=0",
        notes=notes,
    )


def _cut(body: bytes, ends: list[int]) -> tuple[bytes, ...]:
    """``body`` cut at each of ``ends`` (ascending): the pieces up to the last one."""
    return tuple(body[a:b] for a, b in itertools.pairwise([0, *ends]))
