"""Ctrl-C and SIGTERM at any moment of a command: nothing received is lost, no traceback.

A run is covered from the first request to the last commit (``RunSignals``):
while llm's command runs, Ctrl-C is Python's ``KeyboardInterrupt`` and SIGTERM
raises ``StreamStopped`` (the capture loop records either as the stream's end);
while what arrived is being saved (``held``), a signal is noted and the saving
goes on, and the command then ends 130 or 143 with one line. Before a command
starts (llm loading its plugins) and while it prints its report, Ctrl-C ends the
process with 130 and nothing more (``quiet_at_start_up``, ``QuietInterruptGroup``).

The tokenizer process ignores both signals (``tokenizer.PARENT_SIGNALS``): what
they mean is the run's to decide.

>>> exit_code(signal.SIGINT), exit_code(signal.SIGTERM)
(130, 143)
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from click_default_group import DefaultGroup

HANDLED = (signal.SIGINT, signal.SIGTERM)


def exit_code(signum: int) -> int:
    """128 + the signal, as a shell reports a process the signal ended."""
    return 128 + signum


def describe(signum: int) -> str:
    """The words a stream ended by ``signum`` is stored with."""
    from .timing import INTERRUPTED, TERMINATED

    return TERMINATED if signum == signal.SIGTERM else INTERRUPTED


class Terminated(KeyboardInterrupt):
    """SIGTERM where a command takes it as it takes Ctrl-C (``inspect -``, ``replay``)."""

    def __init__(self) -> None:
        super().__init__(describe(signal.SIGTERM))


def signal_of(failure: BaseException | None) -> int | None:
    """The signal that ended a command with ``failure``, if a signal did.

    >>> signal_of(KeyboardInterrupt()), signal_of(Terminated()), signal_of(ValueError())
    (<Signals.SIGINT: 2>, <Signals.SIGTERM: 15>, None)
    """
    if isinstance(failure, Terminated):
        return signal.SIGTERM
    if isinstance(failure, KeyboardInterrupt):
        return signal.SIGINT
    from .timing import StreamStopped

    if isinstance(failure, StreamStopped) and failure.message == describe(signal.SIGTERM):
        return signal.SIGTERM
    return None


def interruption_code(interruption: BaseException) -> int:
    """The exit code after ``interruption`` (a KeyboardInterrupt, or ``Terminated``)."""
    return exit_code(signal.SIGTERM if isinstance(interruption, Terminated) else signal.SIGINT)


def interruption_words(interruption: BaseException) -> str:
    return describe(signal.SIGTERM if isinstance(interruption, Terminated) else signal.SIGINT)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class RunSignals:
    """SIGINT and SIGTERM for the span of a ``with`` block, put back as they were after.

    Outside ``held()`` they raise (``KeyboardInterrupt``; for SIGTERM what
    ``terminate`` makes, by default the capture's ``StreamStopped``), so that llm's
    command stops as it would; inside, the first is kept in ``received`` and nothing
    is raised, and a second raises. Outside the main thread (where no handler can
    be set) it does nothing.
    """

    def __init__(self, terminate: Callable[[], BaseException] | None = None) -> None:
        self.terminate = terminate
        self.received: int | None = None
        self._holding = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> RunSignals:
        if _in_main_thread():
            for signum in HANDLED:
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._holding and self.received is None:
            self.received = signum
            return
        # Not holding, or a second signal while holding: the user insists (or the
        # saving hangs), and the command stops now, as it would have without this.
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.terminate is not None:
            raise self.terminate()
        from ..analysis.trace import STATUS_INTERRUPTED
        from .timing import StreamStopped

        raise StreamStopped(STATUS_INTERRUPTED, describe(signum))

    def hold(self) -> None:
        """Note a signal instead of raising it, from now to the end of the ``with``."""
        self._holding += 1

    @contextmanager
    def held(self) -> Iterator[RunSignals]:
        """Note a signal instead of raising it, for the span of the block."""
        self.hold()
        try:
            yield self
        finally:
            self._holding -= 1


def quiet_at_start_up() -> None:
    """Ctrl-C while ``llm streamscope`` starts (llm loading its plugins, which can take
    seconds): end with 130 at once. Nothing has been received yet, so nothing is lost;
    ``QuietInterruptGroup`` hands Ctrl-C back to Python as the command starts."""
    if (
        sys.argv[1:2] == ["streamscope"]
        and _in_main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        signal.signal(signal.SIGINT, _exit_at_once)


def _exit_at_once(signum: int, frame: Any) -> None:
    os._exit(exit_code(signum))


class QuietInterruptGroup(DefaultGroup):
    """A command group where Ctrl-C that nothing else handled ends with 130 and no
    more (click would print ``Aborted!`` and exit 1)."""

    def invoke(self, ctx: Any) -> Any:
        if _in_main_thread() and signal.getsignal(signal.SIGINT) is _exit_at_once:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as ex:
            sys.exit(interruption_code(ex))
