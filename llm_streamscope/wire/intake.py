"""A body read under limits: refused from its first bytes when it is no event
stream, and stopped when one event (or the bytes between events) grows past a cap.

Standard input and anything else that may never end (``/dev/zero``, a FIFO, a
server that sends one endless event) are read through a ``BodyCheck``: the
framing is told from the first bytes and the first data event must say its
provider format, so binary garbage fails at byte 0 after one read rather than
after gigabytes; then a framing decoder follows the body, keeping nothing but the
event in progress, so memory grows with the events kept, not with the bytes a
broken source can send. What the check refuses is a ``WireError`` naming the byte.

>>> check = BodyCheck(max_event_bytes=64)
>>> check.add(b'data: {"choices": []}\\n\\n')
True
>>> try:
...     check.add(b"data: " + b"x" * 100)
... except WireError as error:
...     print(error.reason)
an event is over the 64-byte cap: raise the cap with --max-event-mb
"""

from __future__ import annotations

from collections.abc import Callable

from .decoder import BOM, Decoder
from .events import Read, WireError
from .formats import detect_format
from .framing import decoder_for, detect_framing

MAX_EVENT_MB = 64
"""The cap on one event, in MiB (``inspect --max-event-mb``): far above any real
event (the largest in the recordings is a few hundred KiB of web search results)."""
MAX_EVENT_BYTES = MAX_EVENT_MB * 2**20

_SPACE = b" \t\r\n"
RECORDING_HEAD = 4096
"""The first bytes that tell a recording (a cassette, an httprr trace) from a body."""
_FRAMING_BYTES = 16
"""Bytes past leading whitespace that tell the framing (``detect_framing``)."""


class BodyCheck:
    """Follows a body read by read; raises ``WireError`` as soon as it can tell the
    body is no event stream, or that one event is over the cap.

    ``add`` returns False once the framing itself is broken (bytes that are no SSE,
    NDJSON or JSON array from some point): nothing after them can be decoded, so
    reading may stop there, and ``decode`` reports the error on what was read. A
    body too short to tell anything is left to ``decode``.
    """

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES, format: str | None = None):
        self.max_event_bytes = max_event_bytes
        self.format = format
        """The provider format when given; None: the first data event must tell one."""
        self._head = b""
        """The first bytes, until they tell the framing."""
        self._decoder: Decoder | None = None
        self._event_end = 0
        """Body offset where the last complete event ended: what follows is in none yet."""
        self._before_data: list[Read] | None = []
        """The reads until the first data event (for the line numbers of its error);
        None once it has been seen."""

    def add(self, data: bytes) -> bool:
        """Check the next read of the body; False when reading may stop."""
        decoder = self._decoder
        if decoder is None:
            self._head += data
            if len(self._head.removeprefix(BOM).lstrip(_SPACE)) < _FRAMING_BYTES:
                if len(self._head) > self.max_event_bytes:
                    raise WireError(
                        f"not an event stream: only whitespace in its first {len(self._head):,} "
                        "bytes",
                        offset=0,
                    )
                return True
            decoder = self._decoder = decoder_for(detect_framing(self._head))
            data, self._head = self._head, b""
        try:
            events = decoder.feed(data)
        except WireError:
            return False
        if self._before_data is not None:
            self._before_data.append(Read(None, data))
            if any(not e.comment for e in events):
                if self.format is None:
                    detect_format(events, tuple(self._before_data))
                self._before_data = None
        if events:
            self._event_end = events[-1].byte_end
        outside = decoder.bytes_fed - self._event_end
        if outside > self.max_event_bytes:
            raise WireError(
                f"an event is over the {_size(self.max_event_bytes)} cap: "
                "raise the cap with --max-event-mb",
                offset=self._event_end,
            )
        return True


def _size(cap: int) -> str:
    """``64 MiB`` / ``100-byte``: a cap as the error names it."""
    return f"{cap // 2**20} MiB" if cap >= 2**20 and not cap % 2**20 else f"{cap:,}-byte"


class SourceCheck:
    """A ``BodyCheck`` for a source that may also be a recording (a cassette, an
    httprr trace: ``is_recording`` tells it from the first ``RECORDING_HEAD``
    bytes), which is read whole, unchecked."""

    def __init__(
        self,
        is_recording: Callable[[bytes], bool],
        max_event_bytes: int = MAX_EVENT_BYTES,
        format: str | None = None,
    ) -> None:
        self.is_recording = is_recording
        self.body: BodyCheck | None = BodyCheck(max_event_bytes, format)
        self.head: bytes | None = b""
        """The first bytes, until there are enough to tell a recording."""

    def add(self, data: bytes) -> bool:
        """Check the next read; False when reading may stop (see ``BodyCheck.add``)."""
        if self.body is None:
            return True
        if self.head is not None:
            self.head += data
            if len(self.head) < RECORDING_HEAD:
                return True
            data, self.head = self.head, None
            if self.is_recording(data[:RECORDING_HEAD]):
                self.body = None
                return True
        return self.body.add(data)


def read_checked(read: Callable[[], bytes], check: SourceCheck) -> list[bytes]:
    """Every chunk ``read`` hands over until it hands over none (or ``check`` says
    nothing more can be decoded)."""
    chunks = []
    while data := read():
        chunks.append(data)
        if not check.add(data):
            break
    return chunks
