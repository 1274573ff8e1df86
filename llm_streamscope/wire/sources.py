"""Where a captured stream comes from: a file, standard input, a cassette, and its times.

Every source becomes a ``Source``: the response body as ``Read``s, each with the
time its bytes arrived when the source knows it. Nothing here decodes events;
that is ``decode``'s job, on the reads.

- A plain file is one untimed read, unless a sidecar ``FILE.times`` says when its
  bytes arrived: lines of ``t_seconds<TAB>byte_offset``, each saying that the
  bytes up to that offset had arrived by that time. The reads are cut there.
- Standard input is read as it arrives: every ``os.read`` is timestamped with
  ``perf_counter_ns`` the moment it returns, counted from when reading began, so
  ``curl -N ... | llm streamscope inspect -`` is timed as the stream came in; the
  bytes already waiting in the pipe when reading began have no time (``Read.t_ns``
  None): they arrived while llm started, when is not known.
- A vcrpy / pytest-recording cassette (YAML, as llm and its plugins keep in their
  tests; also Ruby VCR's ``http_interactions``) holds whole request/response pairs,
  with no times: one interaction's response body is the source, by default the
  first that streamed.
- A Go ``httprr`` trace (langchaingo's test recordings) is read like a cassette.

>>> source = read_bytes("reply.sse", b"data: {}\\n\\n")
>>> source.timed, len(source.reads), source.reads[0].data
(False, 1, b'data: {}\\n\\n')
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
import stat
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import IO, Any

from .events import Read, WireError
from .intake import MAX_EVENT_BYTES, SourceCheck, read_checked

READ_SIZE = 65536
"""Bytes asked for per read of standard input: a pipe hands over what it has."""
FILE_READ_SIZE = 1 << 20
"""Bytes per read of a file read under a check (one that may be large or never end)."""

SIDECAR_SUFFIX = ".times"

STREAM_CONTENT_TYPES = ("text/event-stream", "application/x-ndjson", "application/jsonl")
_STREAM_STARTS = (b"data:", b"event:", b"id:", b"retry:", b":")

_CASSETTE_START = re.compile(
    rb"\A(?:\xef\xbb\xbf)?(?:---[^\n]*\n|#[^\n]*\n|\s)*(?:http_)?interactions:"
)
_JSON_CASSETTE_START = re.compile(rb'\s*\{\s*"(?:http_)?interactions"')
_CASSETTE_KEYS = ("interactions", "http_interactions")
_HTTPRR_MAGIC = b"httprr trace v1"
_GEMINI_MODEL = re.compile(r"/models/([^/:?]+)")


class SourceError(ValueError):
    """A source that cannot be read at all: the message is one line, fit for the user."""


@dataclass(frozen=True)
class Source:
    """A response body as it was read, and what is known about where it came from."""

    name: str
    """The file's path, ``-`` for standard input; a cassette's says which interaction."""
    kind: str
    """``file``, ``sidecar`` (a file timed by its ``.times``), ``stdin``, ``command``
    (``inspect -- CMD``) or ``cassette`` (an httprr trace too): ``Wire.source`` of the
    traces built from it."""
    reads: tuple[Read, ...]
    timed: bool
    """Whether the reads carry arrival times (``Read.t_ns`` set)."""
    origin: str | None = None
    """What t=0 is, in words, when timed: ``stdin: when inspect began reading``, ..."""
    url: str | None = None
    """The request's URL without its query string (a cassette, an httprr trace)."""
    method: str | None = None
    model: str | None = None
    """The model the request named, when the source holds the request."""
    status: int | None = None
    """The HTTP status of the recorded response, when the source holds it."""
    content_type: str | None = None
    notes: tuple[str, ...] = ()
    """What the user should know that does not stop the analysis."""
    interrupted: KeyboardInterrupt | None = None
    """What ended the reading before the stream's end (Ctrl-C, SIGTERM): what came is kept."""

    @property
    def body(self) -> bytes:
        return b"".join(read.data for read in self.reads)


# ====================
# Files and standard input
# ====================


def read_file(
    path: str | os.PathLike[str],
    *,
    interaction: int | None = None,
    max_event_bytes: int = MAX_EVENT_BYTES,
    format: str | None = None,
) -> Source:
    """The stream in ``path``: a body (timed by ``path.times`` if present), a
    cassette or an httprr trace. ``interaction`` (from 1) picks a cassette's.

    A file that may be larger than one event's cap, or never end (``/dev/zero``, a
    FIFO), is read under a ``BodyCheck``: refused from its first bytes when it is no
    event stream, stopped when one event outgrows ``max_event_bytes``."""
    path = pathlib.Path(path)
    try:
        with open(path, "rb") as file:
            data = _read_limited(str(path), file, max_event_bytes, format)
    except OSError as ex:
        raise SourceError(f"{path}: {ex.strerror or ex}") from None
    source = read_bytes(str(path), data, interaction=interaction)
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if source.url is None and sidecar.is_file():  # a plain body, with its times beside it
        try:
            text = sidecar.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as ex:
            raise SourceError(f"{sidecar}: {getattr(ex, 'strerror', None) or ex}") from None
        reads, notes = sidecar_reads(data, text, str(sidecar))
        return Source(
            name=str(path),
            kind="sidecar",
            reads=reads,
            timed=True,
            origin=f"{sidecar.name}: its t=0",
            notes=notes,
        )
    return source


def read_bytes(name: str, data: bytes, *, interaction: int | None = None) -> Source:
    """An untimed source from bytes already read: a cassette, an httprr trace or a body."""
    if data.startswith(_HTTPRR_MAGIC):
        return _choose(name, _httprr_interactions(name, data), interaction)
    if _is_cassette(name, data[:4096]):
        return _choose(name, _cassette_interactions(name, data), interaction)
    if interaction is not None:
        raise SourceError(f"{name}: --interaction applies to a cassette, and this is a plain body")
    reads = (Read(None, data),) if data else ()
    return Source(name=name, kind="file", reads=reads, timed=False)


def read_stdin(
    stream: IO[bytes],
    *,
    interaction: int | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
    max_event_bytes: int = MAX_EVENT_BYTES,
    format: str | None = None,
) -> Source:
    """Standard input as it arrives, every read timed from when reading began.

    Each ``os.read`` of the stream's file descriptor is timestamped the moment it
    returns, before anything else looks at its bytes. A regular file redirected
    into standard input (``< capture.sse``) is read like a file, untimed: how fast
    a disk hands it over says nothing about the stream. What is no event stream is
    refused from its first bytes, and one event may not outgrow ``max_event_bytes``
    (``intake.BodyCheck``).
    """
    fd = _fileno(stream)
    if fd is not None:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            data = _read_limited("-", stream, max_event_bytes, format)
            return read_bytes("-", data, interaction=interaction)
        if os.isatty(fd):
            raise SourceError("standard input is a terminal: pipe a stream into inspect -")
    waiting = _waiting(fd)
    check = SourceCheck(lambda head: _is_recording("-", head), max_event_bytes, format)
    reads: list[Read] = []
    read = (lambda size: os.read(fd, size)) if fd is not None else _read_some(stream)
    interrupted = None
    try:
        timed_reads(read, reads, clock(), clock=clock, untimed=waiting, check=check)
    except WireError as ex:
        raise SourceError(f"-: {ex}") from None
    except KeyboardInterrupt as ex:  # Ctrl-C (or SIGTERM, as inspect raises it): what came is kept
        interrupted = ex
    notes: tuple[str, ...] = ()
    if waiting:
        notes = (
            f"{waiting:,} bytes had arrived before inspect began reading (while llm "
            "started): they have no arrival time, and no figure counts them as timed "
            "(inspect -- CMD starts the command once inspect is reading)",
        )
    source = piped_source(
        "-", "stdin", reads, "stdin: when inspect began reading", interaction, notes
    )
    return replace(source, interrupted=interrupted) if interrupted is not None else source


def _read_limited(name: str, file: IO[bytes], max_event_bytes: int, format: str | None) -> bytes:
    """All of ``file``: at once when it is a regular file no larger than one event's
    cap, else under a ``SourceCheck`` (it may be huge, or never end)."""
    status = os.fstat(file.fileno())
    if stat.S_ISREG(status.st_mode) and status.st_size <= max_event_bytes:
        return file.read()
    check = SourceCheck(lambda head: _is_recording(name, head), max_event_bytes, format)
    try:
        return b"".join(read_checked(lambda: file.read(FILE_READ_SIZE), check))
    except WireError as ex:
        raise SourceError(f"{name}: {ex}") from None


def _is_recording(name: str, head: bytes) -> bool:
    """Whether a body starting with ``head`` is a recording: an httprr trace, a cassette."""
    return head.startswith(_HTTPRR_MAGIC) or _is_cassette(name, head)


def _is_cassette(name: str, head: bytes) -> bool:
    """Whether a body starting with ``head`` is a cassette (YAML, or JSON by name)."""
    return bool(
        _CASSETTE_START.match(head)
        or name.endswith((".yaml", ".yml"))  # no body is YAML: a cassette, or nothing
        or (name.endswith(".json") and _JSON_CASSETTE_START.match(head))
    )


def timed_reads(
    read: Callable[[int], bytes],
    reads: list[Read],
    start: int,
    *,
    clock: Callable[[], int] = time.perf_counter_ns,
    untimed: int = 0,
    check: SourceCheck | None = None,
) -> None:
    """Append to ``reads`` every read of ``read`` until it returns nothing, each
    timed by ``clock`` the moment it returns, from ``start``; the first ``untimed``
    bytes (already waiting when reading began) get no time.

    Nothing else runs between two reads: a stream's gaps are the reads' gaps. The
    list is the caller's, so what arrived is kept when a read is interrupted.
    ``check`` (after each read's time is taken) ends the reading early where the
    stream can be no event stream, or raises ``WireError`` for an event over its cap.
    """
    while True:
        # What was already waiting arrived at some time before now, unknown: no time.
        data = read(min(untimed, READ_SIZE) if untimed else READ_SIZE)
        t = clock()
        if not data:
            return
        reads.append(Read(None if untimed else t - start, data))
        untimed -= min(untimed, len(data))
        if check is not None and not check.add(data):
            return


def piped_source(
    name: str,
    kind: str,
    reads: list[Read],
    origin: str,
    interaction: int | None = None,
    notes: tuple[str, ...] = (),
) -> Source:
    """The source of a stream read from a pipe (standard input, a command's output):
    timed reads, unless what came through is a recording, which says what it holds."""
    head = b"".join(r.data for r in reads[:4])[:4096]
    if _is_recording(name, head):
        # A recording piped in: its own contents say what the stream was, not the pipe.
        return read_bytes(name, b"".join(r.data for r in reads), interaction=interaction)
    if interaction is not None:
        raise SourceError(f"{name}: --interaction applies to a cassette, and this is a plain body")
    return Source(name=name, kind=kind, reads=tuple(reads), timed=True, origin=origin, notes=notes)


def _fileno(stream: IO[bytes]) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None  # an in-memory stream (a test runner's)


def _waiting(fd: int | None) -> int:
    """Bytes already waiting in a pipe, unread (0 when the platform cannot tell)."""
    if fd is None:
        return 0
    try:
        import array
        import fcntl
        import termios

        count = array.array("i", [0])
        fcntl.ioctl(fd, termios.FIONREAD, count)
    except (ImportError, OSError, AttributeError):
        return 0
    return count[0]


def _read_some(stream: IO[bytes]) -> Callable[[int], bytes]:
    read1 = getattr(stream, "read1", None)
    return read1 if read1 is not None else stream.read


# ====================
# Sidecar times
# ====================


def sidecar_reads(
    data: bytes, text: str, name: str = SIDECAR_SUFFIX
) -> tuple[tuple[Read, ...], tuple[str, ...]]:
    """``data`` cut into timed reads where the sidecar ``text`` says its bytes arrived.

    Each line is ``t_seconds<TAB>byte_offset``: the bytes up to ``byte_offset``
    had arrived by ``t_seconds``. Blank lines and ``#`` comments are skipped.
    Times and offsets never go back. Bytes past the last offset are given the
    last time, with a note saying so.

    >>> reads, notes = sidecar_reads(b"abcdef", "0.5\\t2\\n1.25\\t6\\n")
    >>> [(r.t_ns, r.data) for r in reads], notes
    ([(500000000, b'ab'), (1250000000, b'cdef')], ())
    """
    reads: list[Read] = []
    offset = 0
    last_t = 0
    seen = False
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        where = f"{name} line {number}"
        if len(fields) != 2:
            raise SourceError(f"{where}: expected t_seconds<TAB>byte_offset, got {line[:60]!r}")
        try:
            seconds, end = float(fields[0]), int(fields[1])
        except ValueError:
            raise SourceError(
                f"{where}: expected t_seconds<TAB>byte_offset, got {line[:60]!r}"
            ) from None
        if not math.isfinite(seconds) or seconds < 0:
            raise SourceError(f"{where}: the time must be a number of seconds >= 0")
        t = round(seconds * 1e9)
        if t < last_t:
            raise SourceError(f"{where}: the time goes back ({fields[0]} s)")
        if end < offset:
            raise SourceError(f"{where}: the byte offset goes back ({end} after {offset})")
        if end > len(data):
            raise SourceError(f"{where}: byte offset {end} is past the end ({len(data)} bytes)")
        if end > offset:
            reads.append(Read(t, data[offset:end]))
        offset, last_t, seen = end, t, True
    if not seen:
        raise SourceError(f"{name}: no times in it (lines of t_seconds<TAB>byte_offset)")
    notes: tuple[str, ...] = ()
    if offset < len(data):
        reads.append(Read(last_t, data[offset:]))
        notes = (
            f"{name} times the first {offset:,} of {len(data):,} bytes; "
            "the rest is given its last time",
        )
    return tuple(reads), notes


# ====================
# Cassettes and httprr traces
# ====================


@dataclass(frozen=True)
class _Interaction:
    method: str | None
    url: str | None
    request_body: bytes | None
    status: int | None
    headers: dict[str, str]
    """Response headers, names in lower case."""
    body: bytes

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    def streamed(self) -> bool:
        """Whether the response is a stream: its type says so, or its body, or the request."""
        kind = (self.content_type or "").split(";")[0].strip().lower()
        if kind in STREAM_CONTENT_TYPES:
            return True
        if self.body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(_STREAM_STARTS):
            return True
        if self.url and ":streamGenerateContent" in self.url:  # Gemini's JSON-array stream
            return True
        request = _json_object(self.request_body)
        return bool(request and request.get("stream") is True)


def _choose(name: str, interactions: list[_Interaction], number: int | None) -> Source:
    """The interaction numbered ``number`` (from 1), else the first that streamed."""
    total = len(interactions)
    if not total:
        raise SourceError(f"{name}: the recording holds no interactions")
    if number is not None:
        if not 1 <= number <= total:
            raise SourceError(f"{name}: no interaction {number}: it holds {total} (1 to {total})")
        chosen = number
    else:
        chosen = next((i for i, x in enumerate(interactions, 1) if x.streamed()), 0)
        if not chosen:
            raise SourceError(
                f"{name}: none of its {total} interaction{'s' if total != 1 else ''} streamed "
                "(choose one with --interaction N)"
            )
    x = interactions[chosen - 1]
    body = _decompressed(name, x)
    return Source(
        name=f"{name} (interaction {chosen} of {total})",
        kind="cassette",
        reads=(Read(None, body),) if body else (),
        timed=False,
        url=x.url,
        method=x.method,
        model=_request_model(x),
        status=x.status,
        content_type=x.content_type,
    )


def _decompressed(name: str, x: _Interaction) -> bytes:
    """The body as the client read it: a recorder may keep the gzip bytes on the wire."""
    encoding = x.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return x.body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise SourceError(
            f"{name}: the response body is {encoding}-encoded, which inspect cannot read"
        )
    # wbits 47: a gzip or zlib header, whichever it is; -15: deflate without one.
    for wbits in (47, -15) if encoding == "deflate" else (47,):
        try:
            return zlib.decompress(x.body, wbits)
        except zlib.error:
            pass
    return x.body  # the recorder decoded it and kept the header


def _request_model(x: _Interaction) -> str | None:
    request = _json_object(x.request_body)
    model = request.get("model") if request else None
    if isinstance(model, str) and model:
        return model
    found = _GEMINI_MODEL.search(x.url or "")
    return found.group(1) if found else None


def _json_object(body: bytes | None) -> dict | None:
    if not body or body.lstrip()[:1] != b"{":
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _without_query(url: Any) -> str | None:
    # A URL can carry a key (Gemini's ?key=): never keep the query.
    return url.split("?", 1)[0].split("#", 1)[0] if isinstance(url, str) else None


def _cassette_interactions(name: str, data: bytes) -> list[_Interaction]:
    """Every interaction of a vcrpy / pytest-recording cassette (YAML or JSON) or a
    Ruby VCR one; bodies as bytes, whether stored as text or binary."""
    import yaml  # PyYAML: llm depends on it

    try:
        document = yaml.load(data, Loader=_cassette_loader())
    except yaml.YAMLError as ex:
        mark = getattr(ex, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(ex, "problem", None) or "invalid YAML"
        raise SourceError(f"{name}: not a readable cassette{where}: {problem}") from None
    entries = None
    if isinstance(document, dict):
        entries = next((document[k] for k in _CASSETTE_KEYS if k in document), None)
    if not isinstance(entries, list):
        raise SourceError(f"{name}: not a cassette (no list of interactions)")
    interactions = []
    for number, entry in enumerate(entries, 1):
        request = entry.get("request") if isinstance(entry, dict) else None
        response = entry.get("response") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or not isinstance(response, dict):
            raise SourceError(f"{name}: interaction {number} has no request and response")
        interactions.append(
            _Interaction(
                method=request.get("method") if isinstance(request.get("method"), str) else None,
                url=_without_query(request.get("uri")),
                request_body=_cassette_body(request.get("body")),
                status=_cassette_status(response),
                headers=_cassette_headers(response.get("headers")),
                body=_cassette_body(response.get("body", response.get("content"))) or b"",
            )
        )
    return interactions


def _cassette_loader() -> Any:
    """PyYAML's safe loader (its C one when built), also reading Ruby VCR's ``!binary``
    (base64 bytes, as older Ruby wrote them) like ``!!binary``."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class CassetteLoader(base):  # type: ignore[valid-type,misc]
        pass

    CassetteLoader.add_constructor("!binary", base.construct_yaml_binary)
    return CassetteLoader


def _cassette_body(body: Any) -> bytes | None:
    """A recorded body: text, ``!!binary`` bytes, or a mapping holding one
    (vcrpy ``{string: ...}``, Ruby VCR ``{encoding, string}`` or ``{base64_string}``)."""
    if isinstance(body, dict):
        if "base64_string" in body:
            import base64

            try:
                return base64.b64decode(body["base64_string"])
            except (TypeError, ValueError):
                return None
        body = body.get("string")
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")
    return None


def _cassette_status(response: dict) -> int | None:
    status = response.get("status", response.get("status_code"))
    if isinstance(status, dict):
        status = status.get("code")
    try:
        return int(status) if status is not None else None
    except (TypeError, ValueError):
        return None


def _cassette_headers(headers: Any) -> dict[str, str]:
    """Header names in lower case, each with its (first) value; lists as vcrpy keeps them."""
    found: dict[str, str] = {}
    if not isinstance(headers, dict):
        return found
    for key, value in headers.items():
        if isinstance(value, list):
            value = value[0] if value else ""
        found.setdefault(str(key).lower(), str(value))
    return found


def _httprr_interactions(name: str, data: bytes) -> list[_Interaction]:
    """The records of a Go httprr trace: ``httprr trace v1``, then per record a line
    ``N1 N2`` and N1 bytes of request, N2 bytes of response, as HTTP/1.1 sends them."""
    rest = data.split(b"\n", 1)[1] if b"\n" in data else b""
    interactions: list[_Interaction] = []
    while rest:
        record = len(interactions) + 1
        line, _, rest = rest.partition(b"\n")
        sizes = line.strip().split()
        if len(sizes) != 2 or not all(s.isdigit() for s in sizes):
            raise SourceError(f"{name}: not a readable httprr trace (record {record})")
        n1, n2 = int(sizes[0]), int(sizes[1])
        if n1 + n2 > len(rest):
            raise SourceError(f"{name}: the httprr trace ends inside record {record}")
        request, response, rest = rest[:n1], rest[n1 : n1 + n2], rest[n1 + n2 :]
        interactions.append(_httprr_interaction(name, request, response))
    return interactions


def _httprr_interaction(name: str, request: bytes, response: bytes) -> _Interaction:
    from .events import WireError
    from .http1 import parse_response

    request_head, _, request_body = request.partition(b"\r\n\r\n")
    request_line, *request_fields = request_head.decode("latin-1").split("\r\n")
    method, _, target = request_line.partition(" ")
    target = target.rsplit(" ", 1)[0]
    host = next(
        (
            v.strip()
            for k, _, v in (f.partition(":") for f in request_fields)
            if k.lower() == "host"
        ),
        None,
    )
    url = target if "://" in target else (f"https://{host}{target}" if host else target)
    try:
        # The connection's end follows the response: a body without a length ends there.
        parsed = parse_response([(0, response), (0, b"")])
    except WireError as ex:
        raise SourceError(f"{name}: a recorded response that is not HTTP: {ex}") from None
    if parsed.error is not None:
        raise SourceError(f"{name}: {parsed.error}")
    # De-chunked and decompressed already: its framing headers no longer apply.
    headers = {
        k: v
        for k, v in parsed.headers
        if k not in ("content-encoding", "transfer-encoding", "content-length")
    }
    return _Interaction(
        method=method or None,
        url=_without_query(url),
        request_body=request_body,
        status=parsed.status,
        headers=headers,
        body=parsed.body_bytes,
    )
