"""The live view: the answer filling in with its tokens and chunks, a status line and
a strip of gaps, drawn while the response streams.

Nothing of it draws in the capturing process. The run's tokenizer process (see
``tokenizer``: it holds the encoding the run needs anyway) draws it on the
terminal, from what ``LiveView`` sends it down a pipe: the fragments and their
times, read from the capture's arrival lists (a fragment is timestamped and kept
first, sent later), in batches at most 30 a second, and at most a tenth of a
second late when the stream pauses. A slow terminal slows only that process's
frames: it reads its pipe at once whatever the terminal does, so the capture
never waits on the screen.

Three layers, data flowing one way:

- ``LiveView`` (capturing process): batches the arrivals into messages;
- ``LiveRenderer`` (tokenizer process): receives them and draws frames at most 30
  times a second, on rich's ``Live``, which it takes off the screen when a
  response ends (the run then prints the full views);
- ``LiveScreen`` (``livescreen``): what a frame shows, from the fragments so far
  and the time. Pure: the tests drive it with a fixed-width console and a clock
  of their own.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .live import StallFlusher
from .livescreen import LiveScreen
from .sanitize import LIVE_TABLE

if TYPE_CHECKING:
    from ..analysis.tokens import Tokens
    from ..analysis.trace import Trace
    from ..capture.timing import Capture
    from ..capture.tokenizer import TokenizerProcess
    from .live import LiveText

FRAME_NS = 1_000_000_000 // 30
"""At most 30 frames (and 30 messages) a second."""
SHOWN_KINDS = ("text", "reasoning")
"""What llm shows of a stream, and so the live view: not tool-call arguments."""


# =====================================================================
# The capturing process: batches of what arrived, down the pipe
# =====================================================================


class LiveView:
    """Sends each response's arrivals to the live view in ``process``.

    The same calls as ``live.LiveText``. ``write`` runs in llm's display loop
    right after the capture kept the event: it reads the clock and, at most 30
    times a second, sends what arrived since the last message (one JSON line, one
    pipe write). A ``StallFlusher`` sends what is left when the stream pauses.
    """

    STALL_FLUSH_S = 0.1

    def __init__(self, process: TokenizerProcess, *, stall_ms: float):
        self.process = process
        self.stall_ms = stall_ms
        self.show_reasoning = True
        self._record: Capture | None = None
        self._sent = 0
        self._sent_ns = 0
        self._origin_sent = False
        self._on = True
        self._shown = False  # a response has begun: there is a view to take off the screen
        self._plain: LiveText | None = None  # the answers as text, after each view
        self._lock = threading.Lock()  # the flusher sends too: keep batches in order
        self._flusher = StallFlusher(self._send_rest, self.STALL_FLUSH_S)

    def starting(self) -> None:
        """The run has started: show its status line ("starting…") until a request leaves."""
        with self._lock:
            self._shown = True
            begin = {"model": "", "encoding": "", "start_ns": time.perf_counter_ns()}
            self._message({"begin": begin | {"stall_ms": self.stall_ms, "starting": True}})

    def start(self, record: Capture, header: Trace) -> None:
        """A response is about to be requested: its model, and the clock's start."""
        with self._lock:
            self._record, self._sent, self._origin_sent = record, 0, False
            self._shown = True
            self._message(
                {
                    "begin": {
                        "model": header.model_id,
                        "encoding": header.encoding_name,
                        "start_ns": time.perf_counter_ns(),
                        "stall_ms": self.stall_ms,
                    }
                }
            )
        self._flusher.start(record.arrivals.flowing)

    def write(self, event: Any, t_ns: int = 0) -> None:
        """An event llm displays has arrived: send the batch if one is due."""
        if time.perf_counter_ns() - self._sent_ns >= FRAME_NS:
            self._send_rest()

    def write_text(self, text: str) -> None:  # -x shows plain live text, never this view
        pass

    def flush(self) -> None:
        """The response has ended: send the rest and how it ended, and wait (a frame
        or so) until its view is off the screen, so that what llm prints next
        (a tool's output) does not land in it. Then print its answer as plain text."""
        self._send_rest()
        record = self._record
        if record is None:
            return
        with self._lock:
            self._record = None
            sent = self._message(
                {"end": {"status": record.status, "error": record.error}}, closes=True
            )
        if sent:
            self.process.wait_closed(5.0)
        self._print_plain(record)

    def _print_plain(self, record: Capture) -> None:
        """The answer as ``llm prompt`` prints it, once its view has left the screen:
        the view marks tokens and chunks, so its text cannot be copied from it."""
        from .live import LiveText

        if self._plain is None:
            self._plain = LiveText(LIVE_TABLE, show_reasoning=self.show_reasoning)
        self._plain.show_reasoning = self.show_reasoning
        for event in list(record.arrivals.events):
            self._plain.write(event)
        self._plain.flush()

    def close(self, *, final_newline: bool = True) -> None:
        """Take the view off the screen for good; later calls do nothing. The plain
        text ends on a fresh line unless ``final_newline`` is False (llm prints it)."""
        self._flusher.close()
        if self._record is not None:
            self.flush()
        if self._plain is not None:
            self._plain.close(final_newline=final_newline)
        with self._lock:
            # Nothing drawn yet (llm stopped before a request): no need to wait for a
            # process that may still be loading its encoding.
            sent = self._shown and self._message({"close": True}, closes=True)
            self._on = False
        if sent:
            self.process.wait_closed(5.0)

    def _send_rest(self) -> None:
        with self._lock:
            record = self._record
            if record is None:
                return
            arrivals = record.arrivals
            n = len(arrivals.times)  # appended after its event: both are there
            self._sent_ns = time.perf_counter_ns()
            if n == self._sent:
                return
            shown = SHOWN_KINDS if self.show_reasoning else SHOWN_KINDS[:1]
            batch = [
                (event.type, event.chunk, t)
                for event, t in zip(arrivals.events[self._sent : n], arrivals.times[self._sent : n])
                if event.type in shown and event.chunk
            ]
            self._sent = n
            message: dict[str, Any] = {"add": batch}
            if not self._origin_sent and record.origin_ns is not None:
                message["origin_ns"] = record.origin_ns
                self._origin_sent = True
            if batch or "origin_ns" in message:
                self._message(message)

    def _message(self, message: dict[str, Any], *, closes: bool = False) -> bool:
        if not self._on:
            return False
        self._on = self.process.send_live(json.dumps(message).encode("utf-8"), closes=closes)
        return self._on


# =====================================================================
# The tokenizer process: frames on the terminal
# =====================================================================


class LiveRenderer:
    """Draws ``LiveScreen`` on terminal ``fd`` from the messages ``LiveView`` sends.

    ``receive`` (the process's reading thread) only updates the screen and wakes
    the drawing thread; the drawing thread alone touches the terminal, at most 30
    frames a second, and spends at most about a tenth of its time drawing (a long
    answer, or a slow terminal, lowers the frame rate instead).
    """

    def __init__(
        self,
        fd: int,
        encoding_name: str,
        tokenize: Callable[[str], Tokens],
        *,
        clock: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        from rich.console import Console

        self.fd = fd
        self.encoding_name = encoding_name
        self._tokenize = tokenize
        self._clock = clock
        """The capture's clock: ``perf_counter_ns`` is the system's monotonic clock
        (CLOCK_MONOTONIC, QueryPerformanceCounter), the same in both processes."""
        self.screen = LiveScreen()
        stream = open(fd, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        self.console = Console(file=stream, force_terminal=True, highlight=False)
        self._lock = threading.Lock()
        self._arrived: deque[tuple[Sequence[Sequence[Any]], int | None]] = deque()
        """Fragments not yet on the screen (``add``)."""
        self._wake = threading.Event()
        self._urgent = threading.Event()  # the view is to leave the screen: no pause first
        self._showing = False
        self._want = False  # the view is to leave the screen
        self._left = threading.Event()
        self._stop = False
        self._warm_up()
        self._thread = threading.Thread(target=self._draw_loop, name="live-view", daemon=True)
        self._thread.start()

    def _warm_up(self) -> None:
        """Draw a frame off screen now, while the run still waits for the tokenizer
        (before the request leaves): the first frame's imports and caches otherwise
        cost milliseconds of CPU right when the first chunk arrives, beside llm's
        client on a machine of two cores."""
        import io

        from rich.console import Console
        from rich.live import Live  # noqa: F401 (imported now, not at the first frame)

        screen = LiveScreen(self._tokenize)
        screen.begin("", start_ns=0)
        screen.add([("text", "Warm-up text\nof two lines.", 1), ("text", "!", 2)], origin_ns=0)
        console = Console(file=io.StringIO(), force_terminal=True, width=80)
        console.print(screen.frame(console, 3, 10))

    def receive(self, data: bytes) -> bool:
        """One message of ``LiveView``'s. Returns True once the view it ends has left
        the screen."""
        message = json.loads(data)
        if "begin" in message:
            self.begin(**message["begin"])
        if "add" in message:
            self.add(message["add"], origin_ns=message.get("origin_ns"))
        if "end" in message or "close" in message:
            self.end()
            return True
        return False

    def begin(
        self, model: str, encoding: str, start_ns: int, stall_ms: float, starting: bool = False
    ) -> None:
        """A response's request leaves (``start_ns``, on the clock): show its view.
        ``starting``: the run has started, and no request has left yet."""
        with self._lock:
            self.screen.tokenize = self._tokenize if encoding == self.encoding_name else None
            self.screen.stall_ms = stall_ms
            self.screen.begin(model, start_ns=start_ns, starting=starting)
            self._showing = True
        self._wake.set()

    def add(self, fragments: Sequence[Sequence[Any]], origin_ns: int | None = None) -> None:
        """Fragments that arrived (``LiveScreen.add``). Only queued (a deque's append
        takes no lock): the drawing thread takes them at its next frame, so the
        process's reading thread never waits on a frame and the pipe is read as fast
        as it is written."""
        self._arrived.append((fragments, origin_ns))
        self._wake.set()

    def end(self) -> None:
        """The response has ended: returns once its view has left the screen."""
        with self._lock:
            self._want = True
            self._left.clear()
            self._urgent.set()
        self._wake.set()
        self._left.wait(2.0)

    def close(self) -> None:
        """For good (the run is over, or its pipe has closed): leave the screen clean."""
        with self._lock:
            self._want, self._stop = True, True
        self._urgent.set()
        self._wake.set()
        self._thread.join(2.0)

    def _draw_loop(self) -> None:
        from rich.control import Control
        from rich.live import Live

        live: Live | None = None
        size = (0, 0)  # the terminal's, when the view on it was drawn
        while True:
            self._wake.wait(0.1 if live is not None else None)
            self._wake.clear()
            started = time.perf_counter_ns()
            frame = None
            with self._lock:  # the screen's state only: the terminal is written outside
                while self._arrived:
                    fragments, origin_ns = self._arrived.popleft()
                    self.screen.add(fragments, origin_ns=origin_ns)
                leave, stop, showing = self._want, self._stop, self._showing
                if not leave and showing:
                    width, height = resized = _terminal_size(self.fd)
                    self.console.size = (width, height)
                    try:
                        frame = self.screen.frame(self.console, self._clock(), height)
                    except Exception:  # a bug of the view must not leave the screen in a mess
                        leave = stop = True
            try:
                if frame is not None and live is not None and resized != size:
                    # A resized terminal re-wraps the rows drawn, each its own way: where
                    # they are is not known, so the view starts again on a cleared screen.
                    live.stop()
                    self.console.control(Control.clear(), Control.home())
                    live = None
                if frame is not None:
                    size = resized
                    if live is None:
                        live = Live(
                            console=self.console,
                            auto_refresh=False,
                            transient=True,
                            redirect_stdout=False,
                            redirect_stderr=False,
                            vertical_overflow="crop",
                        )
                        live.start()
                    live.update(frame, refresh=True)
                if leave and live is not None:
                    live.stop()  # erases the view and shows the cursor again
                    live = None
            except OSError:  # the terminal has gone: nothing left to draw on
                live, stop = None, True
            if leave:
                with self._lock:
                    self._want = self._showing = False
                    self._urgent.clear()
                self._left.set()
            if stop:
                return
            spent = time.perf_counter_ns() - started
            self._urgent.wait(max(FRAME_NS, 10 * spent) / 1e9)


def _terminal_size(fd: int) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(fd)
        return max(20, size.columns), max(4, size.lines)
    except OSError:
        return 80, 24
