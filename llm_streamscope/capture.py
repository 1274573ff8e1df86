"""Drive an llm response and timestamp every streamed event the moment it arrives.

The loop does as little as possible per event: read the clock, keep the time
and llm's event, call the callbacks. It builds no object per event: every
container allocated counts toward the garbage collector's next pass, and on a
long stream those passes walk llm's whole, growing heap (a ``Fragment`` per event
cost 4% of throughput that way); the fragments are built once the stream ends.
Tokenizing, statistics and rendering happen after the stream ends; the tokenizer
loads and the database is written on other threads, so nothing delays the clock
read of the next event.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .trace import (
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


def capture(
    response: Any,
    header: Trace,
    *,
    arrivals: Arrivals | None = None,
    on_event: Callable[[Any, int], None] | None = None,
    timeout_s: float | None = None,
) -> Trace:
    """Stream ``response`` (an llm ``Response`` not yet iterated) into a ``Trace``.

    ``header`` comes from ``new_trace``. Events and times go into ``arrivals`` (for
    other threads to read) as they arrive, and ``arrivals.flowing`` is set after the
    first; ``on_event(event, t_ns)`` is called with each.

    Never raises for a failure of the stream itself: a provider error, a dropped
    connection, a stall longer than ``timeout_s``, Ctrl-C or SIGTERM end the trace
    with status ``error`` or ``interrupted`` and keep every fragment received before.
    """
    clock = time.perf_counter_ns
    arrivals = arrivals if arrivals is not None else Arrivals()
    events, times = arrivals.events, arrivals.times
    keep_event, keep_time = events.append, times.append
    status, error = STATUS_COMPLETE, None
    stream = iter(response.stream_events())
    connects = _watch_connects()
    # Everything alive now (modules, llm's models and plugins) outlives the stream:
    # frozen, the collector's full passes skip it, and such a pass over the whole
    # heap would otherwise stall a timestamp mid-stream (measured: ~1.7 ms, p99 of
    # the gap error from 0.8 to 0.5 ms).
    gc.freeze()
    # No collection from the request leaving until the second event: llm's client
    # allocates heavily while it builds (setup) and reads the first event, and
    # where the pass those allocations trigger falls depends on all the process
    # did before. In streamscope's process a ~1.6 ms pass fell on the first event
    # (TTFT +1.7 ms, TTST -1.7 ms against plain llm, whose same pass fell inside
    # setup). Deferred, it is not needed at all: what llm allocated by the second
    # event lives as long as the stream, and is frozen then. (Off from the start
    # of setup instead, setup itself grew by 40-70 ms in half the runs: so it goes
    # off at the socket connect, see _on_audit.)
    collecting = gc.isenabled()
    _collector_off_at_connect[0] = collecting
    # llm's model.prompt() is lazy: the request starts with the first next() below.
    t0 = origin = clock()
    setup_ns = None
    try:
        with _stop_on_stall(arrivals, timeout_s), _stop_on_sigterm():
            for event in stream:  # the first event: settle the time origin first
                t = clock()
                setup_ns = _first_after(connects, t0)
                if setup_ns is not None:
                    origin = t0 + setup_ns
                keep_event(event)
                keep_time(t - origin)
                arrivals.flowing.set()
                if on_event is not None:
                    on_event(event, t - origin)
                break
            for event in stream:  # the second event
                t = clock() - origin
                keep_event(event)
                keep_time(t)
                if on_event is not None:
                    on_event(event, t)
                break
            _collector_off_at_connect[0] = False
            # What llm built for this request lives as long as the stream: frozen
            # too, so no pass has to walk it when the collector comes back.
            gc.freeze()
            if collecting:
                gc.enable()
            for event in stream:
                t = clock() - origin
                keep_event(event)
                keep_time(t)
                if on_event is not None:
                    on_event(event, t)
    except KeyboardInterrupt:
        status, error = STATUS_INTERRUPTED, "interrupted (Ctrl-C)"
    except StreamStopped as stop:
        status, error = stop.status, stop.message
    except Exception as ex:
        status, error = STATUS_ERROR, one_line(ex)
    finally:
        _collector_off_at_connect[0] = False
        if collecting:
            gc.enable()
        gc.unfreeze()
        arrivals.flowing.set()
    end = clock()
    if setup_ns is None:  # no fragment arrived: the connect may still have happened
        setup_ns = _first_after(connects, t0)
        origin = t0 + setup_ns if setup_ns is not None else t0
    # Read usage straight off the response: response.usage() would re-run a
    # request that failed part way.
    fragments = tuple(
        Fragment(i, e.type, e.chunk, t, e.tool_call_id)
        for i, (e, t) in enumerate(zip(events, times))
    )
    if not is_clean("".join(f.text for f in fragments)):
        fragments = tuple(dataclasses.replace(f, text=clean_text(f.text)) for f in fragments)
    return dataclasses.replace(
        header,
        fragments=fragments,
        status=status,
        error=error,
        setup_ns=setup_ns,
        end_ns=end - origin,
        usage_input=getattr(response, "input_tokens", None),
        usage_output=getattr(response, "output_tokens", None),
        usage_details=getattr(response, "token_details", None),
    )


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
def _stop_on_stall(arrivals: Arrivals, timeout_s: float | None) -> Iterator[None]:
    """End the stream when nothing arrives for ``timeout_s`` seconds.

    A watchdog thread looks at the arrival list a few times a second (the hot loop
    does nothing extra) and, on a stall, signals the main thread: the signal
    interrupts the blocked socket read and its handler raises ``StreamStopped``.
    """
    if not timeout_s or not _in_main_thread():
        yield
        return
    done = threading.Event()
    times, flowing = arrivals.times, arrivals.flowing
    main = threading.main_thread().ident
    fired = threading.Event()

    def on_alarm(signum: int, frame: Any) -> None:
        if fired.is_set() and not done.is_set():
            raise StreamStopped(
                STATUS_ERROR, f"stalled: nothing arrived for {timeout_s:g} s (--timeout)"
            )

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
def _stop_on_sigterm() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while streaming, so the partial trace is kept."""
    if not _in_main_thread():
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        raise StreamStopped(STATUS_INTERRUPTED, TERMINATED)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
