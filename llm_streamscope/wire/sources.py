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

import math
import os
import pathlib
import re
import stat
import time
from collections.abc import Callable
from dataclasses import replace
from typing import IO

from .events import Read, Source, SourceError, WireError
from .intake import MAX_EVENT_BYTES, SourceCheck, read_checked
from .recordings import cassette_interactions, choose, httprr_interactions

READ_SIZE = 65536
"""Bytes asked for per read of standard input: a pipe hands over what it has."""
FILE_READ_SIZE = 1 << 20
"""Bytes per read of a file read under a check (one that may be large or never end)."""

SIDECAR_SUFFIX = ".times"

_CASSETTE_START = re.compile(
    rb"\A(?:\xef\xbb\xbf)?(?:---[^\n]*\n|#[^\n]*\n|\s)*(?:http_)?interactions:"
)
_JSON_CASSETTE_START = re.compile(rb'\s*\{\s*"(?:http_)?interactions"')
_HTTPRR_MAGIC = b"httprr trace v1"


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
        return choose(name, httprr_interactions(name, data), interaction)
    if _is_cassette(name, data[:4096]):
        return choose(name, cassette_interactions(name, data), interaction)
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
    check = SourceCheck(lambda head: is_recording("-", head), max_event_bytes, format)
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
    check = SourceCheck(lambda head: is_recording(name, head), max_event_bytes, format)
    try:
        return b"".join(read_checked(lambda: file.read(FILE_READ_SIZE), check))
    except WireError as ex:
        raise SourceError(f"{name}: {ex}") from None


def is_recording(name: str, head: bytes) -> bool:
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
    if is_recording(name, head):
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
