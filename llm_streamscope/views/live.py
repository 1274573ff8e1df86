"""The live text of a run: what arrives, shown as it arrives, as ``llm prompt`` shows it.

Two layers, in the shape of httpx-sse's decoders: ``LiveBatcher`` is pure (text
in, writes out, the time passed in) and ``LiveText`` is the thin writer that owns
the output streams and the one helper thread.

Text goes to stdout and reasoning to stderr, as llm sends them; control
characters are made visible before anything reaches a terminal, and written as
they are to a pipe or a file. Output is
gathered and written at most 60 times a second rather than once per fragment (no
screen shows more frames than that): each write is a system call that wakes the
terminal or the reading process, and Python's own buffering cannot be relied on
(PYTHONUNBUFFERED is common).

>>> batcher = LiveBatcher({}, interval_ns=100)
>>> batcher.feed("text", "Hel", now_ns=1_000)      # the first write is due at once
[('out', 'Hel')]
>>> batcher.feed("text", "lo", now_ns=1_050)        # 50 ns later: held back
()
>>> batcher.feed("reasoning", "hmm", now_ns=1_060)  # a switch of stream flushes first
[('out', 'lo')]
>>> batcher.flush(now_ns=1_070)
[('err', 'hmm')]
>>> batcher.close(now_ns=1_080)                     # back to a fresh line on stdout
[('err', '\\n'), ('out', '\\n')]
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from typing import Any

import click

from .sanitize import PIPE_TABLE, is_terminal

OUT = "out"
ERR = "err"
NOTHING: tuple = ()
"""What ``feed`` returns when nothing is due: one shared empty value, no allocation."""


class LiveBatcher:
    """Gathers text (stdout) and reasoning (stderr) into writes at most ``interval_ns`` apart.

    ``feed`` returns the writes due now, as ``(OUT | ERR, text)`` pairs, or
    ``NOTHING``; ``flush`` returns everything held back; ``close`` ends the output
    on a fresh line of stdout, as ``llm prompt`` does. Other event kinds (tool-call
    arguments, tool results) are not shown, as llm does not show them.
    """

    def __init__(
        self,
        table: dict[int, str],
        *,
        interval_ns: int = 1_000_000_000 // 60,
        dim_reasoning: bool = False,
        show_reasoning: bool = True,
        reasoning_table: dict[int, str] | None = None,
    ):
        self.table = table
        self.reasoning_table = table if reasoning_table is None else reasoning_table
        self.interval_ns = interval_ns
        self.dim_reasoning = dim_reasoning
        self.show_reasoning = show_reasoning
        self._stream = OUT
        self._pending: list[str] = []
        self._flushed_ns: int | None = None
        self._last = "\n"
        """The last character written to stdout: a fresh line needs no newline."""

    def feed(self, kind: str, text: str, now_ns: int) -> list[tuple[str, str]] | tuple:
        if not text:
            return NOTHING
        writes: list[tuple[str, str]] | tuple = NOTHING
        if kind == "text":
            if self._stream is not OUT:  # after reasoning: a fresh line, in order
                self._pending.append("\n")
                writes = self._switch(OUT)
            self._last = text[-1]
            piece = text.translate(self.table)
        elif kind == "reasoning" and self.show_reasoning:
            if self._stream is not ERR:
                writes = self._switch(ERR)
            piece = text.translate(self.reasoning_table)
            if self.dim_reasoning:
                piece = click.style(piece, dim=True)
        else:
            return NOTHING
        self._pending.append(piece)
        if writes:
            return writes
        if self._flushed_ns is None or now_ns - self._flushed_ns >= self.interval_ns:
            return self.flush(now_ns)
        return NOTHING

    def _switch(self, stream: str) -> list[tuple[str, str]]:
        writes = self._take()
        self._stream = stream
        return writes

    def _take(self) -> list[tuple[str, str]]:
        if not self._pending:
            return []
        text = "".join(self._pending)
        self._pending = []
        return [(self._stream, text)]

    def flush(self, now_ns: int) -> list[tuple[str, str]]:
        self._flushed_ns = now_ns
        return self._take()

    @property
    def holding(self) -> bool:
        return bool(self._pending)

    def close(self, now_ns: int, *, final_newline: bool = True) -> list[tuple[str, str]]:
        """Everything held back, then stdout again, on a fresh line unless ``final_newline``
        is False (``llm prompt`` prints that newline itself)."""
        if self._stream is not OUT:
            self._pending.append("\n")
            writes = self._switch(OUT)
        else:
            writes = []
        if self._last != "\n" and final_newline:
            self._pending.append("\n")
        self._last = "\n"
        return writes + self.flush(now_ns)


class LiveText:
    """Writes a ``LiveBatcher``'s output to stdout and stderr.

    The caller's thread writes whatever ``feed`` says is due; a ``StallFlusher``
    catches text left over when the stream pauses. Reasoning is
    dimmed only when stderr is a terminal (llm's click.echo strips styles otherwise)
    and not with ``NO_COLOR`` set.

    A reader that goes away (piped into ``head``) ends the live text, not the run.
    """

    STALL_FLUSH_S = 0.1

    def __init__(
        self,
        table: dict[int, str],
        out: Any = None,
        err: Any = None,
        *,
        show_reasoning: bool = True,
    ):
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        # Stand-ins only where a terminal would act on a character: text going to
        # a pipe or a file is data, kept exact (but for what has no UTF-8 form).
        self.batcher = LiveBatcher(
            table if is_terminal(self.out) else PIPE_TABLE,
            dim_reasoning=is_terminal(self.err) and not os.environ.get("NO_COLOR"),
            show_reasoning=show_reasoning,
            reasoning_table=table if is_terminal(self.err) else PIPE_TABLE,
        )
        self.closed_by_reader = False
        self._closed = False
        self._lock = threading.Lock()  # the helper thread flushes too: keep pieces in order
        self._flusher = StallFlusher(self._flush_held, self.STALL_FLUSH_S)

    @property
    def show_reasoning(self) -> bool:
        return self.batcher.show_reasoning

    @show_reasoning.setter
    def show_reasoning(self, value: bool) -> None:
        self.batcher.show_reasoning = value

    def start(self, record: Any, header: Any = None) -> None:
        """A response's request is about to leave (a ``capture.Capture``): the stall
        flusher waits for its first event before doing anything."""
        self._flusher.start(record.arrivals.flowing)

    def write(self, event: Any, t_ns: int = 0) -> None:
        """Show one llm StreamEvent (a capture callback: ``t_ns`` is unused)."""
        with self._lock:
            writes = self.batcher.feed(event.type, event.chunk, time.perf_counter_ns())
            if writes:
                self._write(writes)

    def write_text(self, text: str) -> None:
        """Show text that is not an event (the code block -x extracts)."""
        with self._lock:
            self.batcher.feed("text", text, time.perf_counter_ns())
            self._write(self.batcher.flush(time.perf_counter_ns()))

    def flush(self) -> None:
        """Write everything held back (a response has ended)."""
        with self._lock:
            self._write(self.batcher.flush(time.perf_counter_ns()))

    def _write(self, writes: list[tuple[str, str]] | tuple) -> None:
        if self.closed_by_reader:
            return
        try:
            for target, text in writes:
                stream = self.out if target == OUT else self.err
                stream.write(text)
                stream.flush()
        except OSError:
            # e.g. piped into `head`, which has exited: the live text has no reader
            # any more, but the stream and its trace go on.
            self.closed_by_reader = True

    def _flush_held(self) -> None:
        if self.batcher.holding:
            self.flush()

    def close(self, *, final_newline: bool = True) -> None:
        """Write what is left and stop the helper thread; later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        self._flusher.close()
        with self._lock:
            self._write(self.batcher.close(time.perf_counter_ns(), final_newline=final_newline))


class StallFlusher:
    """A helper thread that calls ``flush`` every ``interval_s`` while a stream flows,
    for what a batching writer holds back when the stream pauses.

    It wakes rarely, because every wake-up of another thread costs the capture
    thread a GIL hand-off, and it does nothing at all before the first event of a
    response (``start`` gives it that response's ``flowing``).
    """

    def __init__(self, flush: Any, interval_s: float) -> None:
        self._flush = flush
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._flowing: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self, flowing: threading.Event) -> None:
        self._flowing = flowing
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="streamscope-live", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            flowing = self._flowing
            if flowing is not None:
                flowing.wait()  # nothing to show, and nothing to run, before the first event
            if self._stop.wait(self._interval_s):
                return
            self._flush()

    def close(self) -> None:
        """Stop the thread (it flushes no more)."""
        self._stop.set()
        if self._flowing is not None:
            self._flowing.set()
        if self._thread is not None:
            self._thread.join()


class LlmOutputToStderr(io.TextIOBase):
    """What llm writes to standard output during a ``--json`` run, sent to standard error.

    Standard output carries the document alone. llm's own words pass through as
    they come (a tool approval's question); the empty line llm prints after each
    stream carries nothing, and would be a stray line on standard error.
    """

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text != "\n":
            sys.stderr.write(text)
        return len(text)

    def flush(self) -> None:
        sys.stderr.flush()


def can_draw(stream: Any) -> bool:
    """Whether the live view can draw on ``stream``: a terminal that takes colour."""
    return (
        os.name == "posix"  # the terminal is handed to the tokenizer process (pass_fds)
        and is_terminal(stream)
        and not os.environ.get("NO_COLOR")
        and os.environ.get("TERM") != "dumb"
        and hasattr(stream, "fileno")
    )
