"""A command's standard output as a captured stream: ``inspect -- CMD [ARGS...]``.

``curl -N ... | llm streamscope inspect -`` cannot time what arrives while llm
starts (a second or more): the pipe fills before anyone reads it. Here
streamscope starts the command itself, once it is ready, and reads its standard
output at once, each read timed the moment it returns (``sources.timed_reads``)
from the command's start. Standard error goes to a file, read at the end, so
nothing but the reads runs while the stream arrives; standard input is the
command's own. Ctrl-C stops the command and keeps what it wrote.

>>> import sys
>>> run = run_command([sys.executable, "-c", "print('data: {}')"])
>>> run.status, run.source.kind, run.source.body
(0, 'command', b'data: {}\\n')
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace

from .events import Read, WireError
from .intake import MAX_EVENT_BYTES, SourceCheck
from .sources import Source, SourceError, is_recording, piped_source, timed_reads

STOP_WAIT_S = 2.0
"""How long a command stopped by Ctrl-C has to end before it is killed."""

@dataclass(frozen=True)
class CommandRun:
    """What a command wrote, how it ended."""

    source: Source
    name: str
    """The command's name, as messages say it (never its arguments, which can hold a key)."""
    status: int | None
    """Its exit status; negative when a signal ended it (``-signal``, as subprocess says)."""
    stderr: bytes
    interrupted: bool
    """Ctrl-C stopped it: the source holds what it wrote until then."""

    def ending(self) -> str | None:
        """How the command ended, when that was not a success: one line for an error.

        >>> source = Source("-- curl", "command", (), True)
        >>> CommandRun(source, "curl", 7, b"", False).ending()
        'curl exited with status 7'
        >>> CommandRun(source, "curl", -15, b"", False).ending()
        'curl was ended by signal SIGTERM'
        """
        if self.interrupted:  # stopped by inspect, which says so itself
            return None
        if self.status is None or self.status == 0:
            return None
        if self.status < 0:
            try:
                how = signal.Signals(-self.status).name
            except ValueError:
                how = str(-self.status)
            return f"{self.name} was ended by signal {how}"
        return f"{self.name} exited with status {self.status}"

    def report(self, most: int = 20) -> list[str]:
        """What to tell the user at the end: its standard error (the last ``most``
        lines, decoded leniently), then how it ended, if not well. The caller
        makes the lines safe for a terminal.

        >>> source = Source("-- curl", "command", (), True)
        >>> CommandRun(source, "curl", 7, b"curl: (7) refused\\n", False).report()
        ['curl wrote to standard error:', '  curl: (7) refused', 'Error: curl exited with status 7']
        """
        text = self.stderr.decode("utf-8", "replace").rstrip("\n")
        lines = text.splitlines() if text else []
        if len(lines) > most:
            lines = [f"... {len(lines) - most:,} earlier lines", *lines[-most:]]
        report = [f"{self.name} wrote to standard error:"] if lines else []
        report += ["  " + line for line in lines]
        ending = self.ending()
        return report + ([f"Error: {ending}"] if ending else [])


def run_command(
    argv: Sequence[str],
    *,
    interaction: int | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
    max_event_bytes: int = MAX_EVENT_BYTES,
    format: str | None = None,
) -> CommandRun:
    """Start ``argv`` and read its standard output to its end, every read timed from
    the start. Raises ``SourceError`` when it cannot start, or when what it writes
    is no event stream or has an event over ``max_event_bytes`` (it is stopped)."""
    if not argv:
        raise SourceError("give the command to run after --")
    name = os.path.basename(argv[0])
    reads: list[Read] = []
    check = SourceCheck(lambda head: is_recording(name, head), max_event_bytes, format)
    interrupted: KeyboardInterrupt | None = None
    with tempfile.TemporaryFile() as errors:
        start = clock()
        try:
            process = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=errors)
        except OSError as ex:
            raise SourceError(f"cannot run {name}: {ex.strerror or ex}") from None
        assert process.stdout is not None
        fd = process.stdout.fileno()
        try:
            timed_reads(lambda size: os.read(fd, size), reads, start, clock=clock, check=check)
            # At its end, or where the check stopped reading (what follows could not
            # be decoded): a command that goes on writing gets a broken pipe.
            process.stdout.close()
            status = process.wait()  # a terminal's Ctrl-C can end the command first
        except WireError as ex:  # an event over the cap: no more is read
            _stop(process)
            raise SourceError(f"-- {name}: {ex}") from None
        except KeyboardInterrupt as ex:  # Ctrl-C, or SIGTERM as inspect raises it
            interrupted = ex
            _stop(process)
            if not process.stdout.closed:
                _drain(fd, reads, start, clock)
            status = process.wait()
        process.stdout.close()
        errors.seek(0)
        stderr = errors.read()
    source = piped_source(f"-- {name}", "command", reads, f"{name}'s start", interaction)
    if interrupted is not None:  # inspect says so, as for standard input
        source = replace(source, interrupted=interrupted)
    return CommandRun(source, name, status, stderr, interrupted is not None)


def _stop(process: subprocess.Popen) -> None:
    """End the command (a terminal's Ctrl-C may have already): politely, then not."""
    try:
        if process.poll() is None:
            process.terminate()
        process.wait(STOP_WAIT_S)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        process.kill()
        process.wait()


def _drain(fd: int, reads: list[Read], start: int, clock: Callable[[], int]) -> None:
    """Whatever the command wrote that is still in the pipe: nothing it wrote is lost."""
    os.set_blocking(fd, False)
    with suppress(BlockingIOError, KeyboardInterrupt):
        timed_reads(lambda size: os.read(fd, size), reads, start, clock=clock)
