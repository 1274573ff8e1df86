"""Time every event of an llm response the moment it arrives, and pass it on.

``timed_events`` (and ``atimed_events`` for async responses) wrap a response's
``stream_events()``: the loop reads the clock, keeps llm's event and the time, and
yields the event on. It builds no object per event: every container allocated
counts toward the garbage collector's next pass, and on a long stream those
passes walk llm's whole, growing heap; the fragments are built once the stream
ends (``Capture.trace``). Tokenizing, statistics and rendering happen after the
stream ends, and the database is written from another thread, so nothing delays
the clock read of the next event.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import signal
import sys
import threading
import time
from asyncio import CancelledError
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..analysis.trace import (
    STATUS_COMPLETE,
    STATUS_ERROR,
    STATUS_INTERRUPTED,
    Arrivals,
    Fragment,
    Trace,
    clean_text,
    is_clean,
    one_line,
)

TERMINATED = "terminated (SIGTERM)"
"""The error of a stream that SIGTERM ended (its run exits 143, as the shell's 128 + 15)."""
INTERRUPTED = "interrupted (Ctrl-C)"
UNFINISHED = "the stream never finished"
ABANDONED = "the stream was abandoned"


class StreamStopped(BaseException):
    """Raised into the capture loop to end a stream early (stall timeout, SIGTERM).

    A BaseException, like KeyboardInterrupt, so that no client library catches it
    on its way out of a blocked socket read.
    """

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def new_trace_id() -> str:
    """A ULID: sortable by creation time, like llm's own ids."""
    from ulid import ULID  # python-ulid, a dependency of llm

    return str(ULID()).lower()


def new_trace(
    *,
    model_id: str,
    encoding_name: str,
    encoding_exact: bool,
    prompt: str | None = None,
    system: str | None = None,
    options: dict | None = None,
) -> Trace:
    """A trace with everything known before the request: id, model, prompt, start time."""
    return Trace(
        id=new_trace_id(),
        model_id=model_id,
        encoding_name=encoding_name,
        encoding_exact=encoding_exact,
        prompt=prompt,
        system=system,
        started_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(),
        fragments=(),
        options=dict(options or {}),
    )


@dataclass(eq=False)
class Capture:
    """One response's capture: its events as they arrive, then how its stream ended.

    Filled by ``timed_events`` / ``atimed_events``; ``trace()`` builds the Trace once
    the stream is over. Until the stream ends its status says it never finished, so
    a capture that something outside cut short (asyncio cancelling the task, the
    process ending) still reads honestly.
    """

    arrivals: Arrivals = field(default_factory=Arrivals)
    status: str = STATUS_INTERRUPTED
    error: str | None = UNFINISHED
    start_ns: int | None = None
    """perf_counter_ns when llm started the request (the first ``next()``)."""
    setup_ns: int | None = None
    """From ``start_ns`` to the socket connect, when one was seen."""
    end_ns: int | None = None
    """perf_counter_ns when the stream ended or failed."""
    stopped: StreamStopped | None = None
    """Set by the stall watchdog or SIGTERM before they stop the stream."""

    @property
    def origin_ns(self) -> int | None:
        """perf_counter_ns of time zero: the request leaving (see ``Trace.setup_ns``)."""
        if self.start_ns is None:
            return None
        return self.start_ns + (self.setup_ns or 0)

    def failed(self, error: BaseException) -> None:
        """Record how the stream ended early."""
        if self.stopped is not None:
            self.status, self.error = self.stopped.status, self.stopped.message
        elif isinstance(error, StreamStopped):
            self.status, self.error = error.status, error.message
        elif isinstance(error, (KeyboardInterrupt, CancelledError)):
            # asyncio.run turns Ctrl-C into cancelling the task that streams.
            self.status, self.error = STATUS_INTERRUPTED, INTERRUPTED
        elif isinstance(error, GeneratorExit):
            self.status, self.error = STATUS_INTERRUPTED, ABANDONED
        else:
            self.status, self.error = STATUS_ERROR, one_line(error)

    def trace(self, header: Trace, response: Any = None) -> Trace:
        """The finished Trace: ``header`` (from ``new_trace``) with what arrived.

        Usage is read straight off llm's ``response``: ``response.usage()`` would
        re-run a request that failed part way.
        """
        origin = self.origin_ns
        events, times = self.arrivals.events, self.arrivals.times
        fragments = tuple(
            Fragment(i, e.type, e.chunk, t, e.tool_call_id)
            for i, (e, t) in enumerate(zip(events, times))
        )
        if not is_clean("".join(f.text for f in fragments)):
            fragments = tuple(dataclasses.replace(f, text=clean_text(f.text)) for f in fragments)
        return dataclasses.replace(
            header,
            fragments=fragments,
            status=self.status,
            error=self.error,
            setup_ns=self.setup_ns,
            end_ns=None if self.end_ns is None or origin is None else self.end_ns - origin,
            usage_input=getattr(response, "input_tokens", None),
            usage_output=getattr(response, "output_tokens", None),
            usage_details=getattr(response, "token_details", None),
        )


def timed_events(
    events: Iterable[Any],
    record: Capture,
    *,
    timeout_s: float | None = None,
    on_end: Callable[[Capture], None] | None = None,
) -> Iterator[Any]:
    """Pass llm's StreamEvents through, timestamping each the moment it arrives.

    ``events`` is a response's ``stream_events()`` not yet started: llm's prompts
    are lazy, and the request leaves with the first ``next()``. Events and times go
    into ``record.arrivals`` (for other threads to read) and ``arrivals.flowing`` is
    set after the first. A failure of the stream (a provider error, a dropped
    connection, a stall longer than ``timeout_s``, Ctrl-C, SIGTERM) is recorded and
    raised on, so that llm stops as it would have; every event received is kept.
    ``on_end(record)`` runs once the stream is over, however it ended.
    """
    clock = time.perf_counter_ns
    arrivals = record.arrivals
    keep_event, keep_time = arrivals.events.append, arrivals.times.append
    stream = iter(events)
    with _capturing(record, timeout_s, on_end) as first:
        for event in stream:
            origin = first(event, clock())
            yield event
            break
        for event in stream:  # the second event: the collector comes back on after it
            keep_event(event)
            keep_time(clock() - origin)
            yield event
            break
        _collector_back_on()
        for event in stream:
            t = clock() - origin
            keep_event(event)
            keep_time(t)
            yield event
        record.status, record.error = STATUS_COMPLETE, None


async def atimed_events(
    events: AsyncIterable[Any],
    record: Capture,
    *,
    timeout_s: float | None = None,
    on_end: Callable[[Capture], None] | None = None,
) -> AsyncIterator[Any]:
    """``timed_events`` for an async response's ``astream_events()``."""
    clock = time.perf_counter_ns
    arrivals = record.arrivals
    keep_event, keep_time = arrivals.events.append, arrivals.times.append
    stream = aiter(events)
    with _capturing(record, timeout_s, on_end) as first:
        async for event in stream:
            origin = first(event, clock())
            yield event
            break
        async for event in stream:
            keep_event(event)
            keep_time(clock() - origin)
            yield event
            break
        _collector_back_on()
        async for event in stream:
            t = clock() - origin
            keep_event(event)
            keep_time(t)
            yield event
        record.status, record.error = STATUS_COMPLETE, None


@contextmanager
def _capturing(
    record: Capture, timeout_s: float | None, on_end: Callable[[Capture], None] | None
) -> Iterator[Callable[[Any, int], int]]:
    """Everything around a capture loop: the clock's start, the collector, the
    watchdogs, and recording how the stream ended. Yields ``first(event, t)``, which
    the loop calls with the first event and its clock reading: it settles the time
    origin (returned), keeps the event and says the stream flows."""
    connects = _watch_connects()
    # Everything alive now (modules, llm's models and plugins) outlives the stream:
    # frozen, the collector's full passes skip it, and such a pass over the whole
    # heap would otherwise stall a timestamp mid-stream.
    gc.freeze()
    # No collection from the request leaving until the second event: llm's client
    # allocates heavily while it builds (setup) and reads the first event, and
    # where the pass those allocations trigger falls depends on all the process
    # did before; in streamscope's process it fell on the first event (TTFT up,
    # TTST down against plain llm). What llm allocated by the second event lives
    # as long as the stream, and is frozen then, so the pass is never needed. It
    # goes off at the socket connect (see _on_audit): off from the start of setup,
    # llm's own setup grew.
    _collector_was_on[0] = gc.isenabled()
    _collector_off_at_connect[0] = _collector_was_on[0]
    t0 = record.start_ns = time.perf_counter_ns()

    def first(event: Any, t: int) -> int:
        record.setup_ns = _first_after(connects, t0)
        origin = t0 + (record.setup_ns or 0)
        record.arrivals.events.append(event)
        record.arrivals.times.append(t - origin)
        record.arrivals.flowing.set()
        return origin

    try:
        with _stop_on_stall(record, timeout_s), _stop_on_sigterm(record):
            yield first
    except BaseException as ex:
        record.failed(ex)
        raise
    finally:
        record.end_ns = time.perf_counter_ns()
        _collector_off_at_connect[0] = False
        if _collector_was_on[0]:
            gc.enable()
        gc.unfreeze()
        record.arrivals.flowing.set()
        if record.setup_ns is None:  # no event arrived: the connect may still have happened
            record.setup_ns = _first_after(connects, t0)
        if on_end is not None:
            on_end(record)


def _collector_back_on() -> None:
    _collector_off_at_connect[0] = False
    # What llm built for this request lives as long as the stream: frozen too, so
    # no pass has to walk it when the collector comes back.
    gc.freeze()
    if _collector_was_on[0]:
        gc.enable()


def capture(
    response: Any,
    header: Trace,
    *,
    arrivals: Arrivals | None = None,
    on_event: Callable[[Any, int], None] | None = None,
    timeout_s: float | None = None,
) -> Trace:
    """Stream ``response`` (an llm ``Response`` not yet iterated) into a ``Trace``.

    ``header`` comes from ``new_trace``; ``on_event(event, t_ns)`` is called with
    each event. Never raises for a failure of the stream itself: it ends the trace
    with status ``error`` or ``interrupted``, keeping every fragment received.
    """
    record = Capture(arrivals if arrivals is not None else Arrivals())
    times = record.arrivals.times
    try:
        for event in timed_events(response.stream_events(), record, timeout_s=timeout_s):
            if on_event is not None:
                on_event(event, times[-1])
    except (Exception, KeyboardInterrupt, StreamStopped):
        pass  # recorded in record
    return record.trace(header, response)


# When the request leaves. llm builds a new client for every prompt (~20 ms, more
# for the first in a process) before the HTTP request is even sent; tools like
# AIPerf and vLLM count TTFT from the request, so streamscope does too and reports
# llm's own part as setup. The moment is seen through the interpreter's audit hook
# for socket.connect (the only way to observe it without patching llm or the
# client library); plugins that reuse a pooled connection open none, and then
# times count from the start of the request.
_connects: list[int] = []
_hook_installed = False
_collector_off_at_connect = [False]
_collector_was_on = [True]


def _on_audit(event: str, args: tuple) -> None:
    if event == "socket.connect":
        _connects.append(time.perf_counter_ns())
        if _collector_off_at_connect[0]:
            gc.disable()


def _watch_connects() -> list[int]:
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_on_audit)  # cannot be removed: it stays cheap instead
        _hook_installed = True
    _connects.clear()
    return _connects


def _first_after(connects: list[int], t0: int) -> int | None:
    """Nanoseconds from t0 to the first connect after it, if any."""
    for t in connects:
        if t >= t0:
            return t - t0
    return None


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def _stop_on_stall(record: Capture, timeout_s: float | None) -> Iterator[None]:
    """End the stream when nothing arrives for ``timeout_s`` seconds.

    A watchdog thread looks at the arrival list a few times a second (the hot loop
    does nothing extra) and, on a stall, signals the main thread: the signal
    interrupts the blocked socket read and its handler raises ``StreamStopped``.
    """
    if not timeout_s or not _in_main_thread():
        yield
        return
    done = threading.Event()
    times, flowing = record.arrivals.times, record.arrivals.flowing
    main = threading.main_thread().ident
    fired = threading.Event()

    def on_alarm(signum: int, frame: Any) -> None:
        if fired.is_set() and not done.is_set():
            record.stopped = StreamStopped(
                STATUS_ERROR, f"stalled: nothing arrived for {timeout_s:g} s (--timeout)"
            )
            raise record.stopped

    def watch() -> None:
        # One blocking wait until the first event (or the stall), then a look a few
        # times a second: nothing runs here while the request waits for its first token.
        if not flowing.wait(timeout_s) and not done.is_set():
            fired.set()
            signal.pthread_kill(main, signal.SIGALRM)  # type: ignore[arg-type]
            return
        seen, last = 0, time.monotonic()
        while not done.wait(min(0.1, timeout_s / 4)):
            now = time.monotonic()
            if len(times) != seen:
                seen, last = len(times), now
            elif now - last > timeout_s:
                fired.set()
                signal.pthread_kill(main, signal.SIGALRM)  # type: ignore[arg-type]
                return

    previous = signal.signal(signal.SIGALRM, on_alarm)
    watcher = threading.Thread(target=watch, name="streamscope-timeout", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        flowing.set()  # the stream is over: wake a watchdog still waiting for the first event
        watcher.join()
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _stop_on_sigterm(record: Capture) -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while streaming, so the partial trace is kept."""
    if not _in_main_thread():
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        record.stopped = StreamStopped(STATUS_INTERRUPTED, TERMINATED)
        raise record.stopped

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
