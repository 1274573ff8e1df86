"""Tokens for the alignment, from a process that never shares the capture's GIL.

Loading an encoding takes a third of a second of CPU, much of it (tiktoken's
Rust CoreBPE build) holding the interpreter lock in one piece; loaded anywhere
on the machine while a request is in flight, it shows in that request's timings
(docs/benchmarks.md, P8). So a run starts a ``TokenizerProcess`` as early
as it can, lets it load (with the same offline cache rules:
``encodings.get_encoding``) while the run prepares its request, and waits for it
(``wait_ready``) before the request leaves: nothing of streamscope's runs
anywhere while a request is in flight. The process then answers tokenize
requests over a pipe, in order, whenever they come: once the stream has ended,
or (for a live view) while it streams, without taking the capturing process's
interpreter lock.

``LocalTokenizer`` answers the same calls in-process, for commands that have no
request in flight (``show``, ``export``) and for an encoding this process has
loaded anyway (the in-process simulator tokenizes its samples with it).

    >>> tokenizer = start_tokenizer("o200k_base")   # as early as possible
    >>> ...                                          # prepare the request
    >>> tokenizer.wait_ready()                       # before it leaves
    >>> ...                                          # the stream
    >>> tokenizer.tokenize(["hello world"])
    [(array('I', [24912, 2375]), array('I', [5, 6]))]
    >>> tokenizer.close()
"""

from __future__ import annotations

import contextlib
import itertools
import operator
import os
import signal
import struct
import subprocess
import sys
import threading
from array import array
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import IO, TYPE_CHECKING, Any

from ..analysis import encodings
from ..analysis.encodings import EncodingError
from ..analysis.tokens import Tokenizer, Tokens

if TYPE_CHECKING:
    import tiktoken

_U32 = struct.Struct("=I")  # both ends are on one machine: native order
_READY = b"R"
_FAILED = b"E"
_TOKENIZE = b"T"
_LIVE = b"L"
"""A message for the live view the process draws (``liveview``): answered by nothing,
except ``CLOSED`` once the view is off the screen."""
CLOSED = b"C"


def start_tokenizer(name: str) -> Tokenizer:
    """A tokenizer for encoding ``name``, starting to load at once.

    In-process when this process has the encoding loaded already; otherwise a
    ``TokenizerProcess``. Call ``wait_ready()`` before sending a request: it
    returns once the encoding has loaded, and raises EncodingError for one that
    cannot load. Raises EncodingError at once for a name tiktoken does not know.
    """
    encodings.check_encoding_name(name)
    loaded = encodings.loaded_encoding(name)
    if loaded is not None:
        return LocalTokenizer(loaded)
    return TokenizerProcess(name)


class LocalTokenizer:
    """Tokenizes with an encoding loaded in this process."""

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self.name = encoding.name
        self.encoding = encoding

    def wait_ready(self) -> None:
        pass

    def tokenize(self, texts: Sequence[str]) -> list[Tokens]:
        return [tokens_of(self.encoding, text) for text in texts]

    def close(self) -> None:
        pass


def tokens_of(encoding: tiktoken.Encoding, text: str) -> tuple[array, array]:
    """``text``'s token ids and each token's size in bytes, as two ``array('I')``.

    ``encode_ordinary``: text that looks like a special token is what the model
    wrote, not a control token.

    >>> tokens_of(tiktoken.get_encoding("o200k_base"), "hello world")
    (array('I', [24912, 2375]), array('I', [5, 6]))
    """
    ids = encoding.encode_ordinary(text)
    table = token_sizes(encoding)
    if table is not None:
        sizes = array("I", map(table.__getitem__, ids))
    else:
        sizes = array("I", map(len, encoding.decode_tokens_bytes(ids)))
    return array("I", ids), sizes


@lru_cache(maxsize=8)
def token_sizes(encoding: tiktoken.Encoding) -> list[int] | None:
    """Byte length of every ordinary token, by id, built once per encoding.

    tiktoken's decode_tokens_bytes makes a Python call per token (90 ms for a
    megabyte); a lookup in this table costs a tenth of that. None if tiktoken no
    longer keeps its ranks where this looks for them.
    """
    ranks = getattr(encoding, "_mergeable_ranks", None)
    if not isinstance(ranks, dict):
        return None
    if all(map(operator.eq, ranks.values(), itertools.count())):
        # Ranks in order from 0, as every tiktoken file has them: one pass in C
        # (5 ms for o200k_base, against 35 ms for the loop below).
        return list(map(len, ranks))
    sizes = [0] * (max(ranks.values(), default=-1) + 1)
    for token, rank in ranks.items():
        sizes[rank] = len(token)
    return sizes


class TokenizerProcess:
    """A helper process holding encoding ``name``:
    ``python -m llm_streamscope.capture.tokenizer NAME``.

    Started by the constructor; it loads at once. ``wait_ready`` (and ``tokenize``)
    wait for the load in a pipe read, which blocks in C holding no lock, and raise
    the load's EncodingError if it failed.

    With ``terminal`` (a file descriptor, passed on to the process) it also draws
    the live view there, from what ``send_live`` sends: the encoding the run
    needs anyway colours the tokens, and no drawing runs in the capturing process.
    The process is then ``python -m LIVE_HOST``, a module that runs ``main`` with
    the renderer it hands it: this module knows no view.
    """

    def __init__(
        self, name: str, *, terminal: int | None = None, live_host: str | None = None
    ) -> None:
        self.name = name
        self.draws = terminal is not None
        """Whether it can draw the live view."""
        self._ready = False
        self._error: EncodingError | None = None
        self._live_lock = threading.Lock()  # the live view sends from two threads
        self._closes_due = 0
        """``CLOSED`` answers on their way: read before any tokens are."""
        args = [sys.executable, "-m", "llm_streamscope.capture.tokenizer", name]
        passed: tuple[int, ...] = ()
        if terminal is not None:
            if live_host is None:
                raise ValueError("a live view needs the module that hosts its renderer")
            args[2] = live_host
            # A number of its own: in the process, 0 to 2 are its pipes.
            passed = (os.dup(terminal),)
            args += ["--live", str(passed[0])]
        # No preexec_fn: subprocess can then vfork, so the start costs this
        # process a fraction of a millisecond.
        try:
            with _parent_signals_blocked():
                self._process = subprocess.Popen(
                    args,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    pass_fds=passed,
                )
        finally:
            for fd in passed:
                os.close(fd)

    def wait_ready(self) -> None:
        if self._ready:
            return
        if self._error is None:
            try:
                status = _read_exact(self._stdout, 1)
                if status != _READY:
                    message = _read_exact(self._stdout, _read_u32(self._stdout))
                    self._error = EncodingError(message.decode("utf-8", "replace"))
            except EncodingError:
                self._error = self._gone()
        if self._error is not None:
            raise self._error
        self._ready = True

    @property
    def _stdout(self) -> IO[bytes]:
        assert self._process.stdout is not None
        return self._process.stdout

    def tokenize(self, texts: Sequence[str]) -> list[Tokens]:
        self.wait_ready()
        self.wait_closed(None)  # the answers to the live view come first
        stdin = self._process.stdin
        assert stdin is not None
        try:
            stdin.write(_TOKENIZE + _U32.pack(len(texts)))
            for text in texts:
                data = text.encode("utf-8")
                stdin.write(_U32.pack(len(data)))
                stdin.write(data)
            stdin.flush()
            return [_read_tokens(self._stdout) for _ in texts]
        except (OSError, ValueError, EncodingError) as ex:  # a broken or closed pipe
            raise self._gone() from ex

    def send_live(self, message: bytes, *, closes: bool = False) -> bool:
        """Send one message to the live view; False once the process is gone.

        A pipe write of a few hundred bytes: the process reads its input at once
        whatever the terminal does, so this never waits on a slow terminal.
        ``closes``: the message takes the view off the screen, and the process
        answers ``CLOSED`` once it has (``wait_closed``).
        """
        stdin = self._process.stdin
        assert stdin is not None
        try:
            with self._live_lock:
                stdin.write(_LIVE + _U32.pack(len(message)) + message)
                stdin.flush()
                self._closes_due += closes
        except (OSError, ValueError):  # gone, or closed
            return False
        return True

    def wait_closed(self, timeout_s: float | None) -> None:
        """Wait (at most ``timeout_s``) until the live view has left the screen."""
        import select

        if self._closes_due and not self._ready:
            # Its first answer is the load's: a view shown before any request left
            # ("starting…") is taken off once the process has loaded.
            with contextlib.suppress(EncodingError):
                self.wait_ready()
        stdout = self._stdout
        with contextlib.suppress(OSError, ValueError):
            while self._closes_due:
                if timeout_s is not None and not select.select([stdout], [], [], timeout_s)[0]:
                    return
                if stdout.read(1) != CLOSED:
                    return
                self._closes_due -= 1

    def _gone(self) -> EncodingError:
        code = self._process.poll()
        return EncodingError(
            f"The tokenizer process for {self.name!r} ended unexpectedly"
            + (f" (exit code {code})" if code is not None else "")
        )

    def close(self) -> None:
        """Let the process go: it exits when its input closes. Nothing waits for it."""
        process = self._process
        if process.poll() is None and not self._ready and self._error is None:
            process.kill()  # still loading: its work is no longer wanted
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


PARENT_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
"""What the run handles (Ctrl-C, SIGTERM, which reach the whole process group): the
helper ignores them, and ends when its input closes (the run is done, or gone)."""


@contextlib.contextmanager
def _parent_signals_blocked() -> Iterator[None]:
    """Hold ``PARENT_SIGNALS`` back in this thread while the helper starts.

    The blocked mask passes through fork and exec, so the helper starts with them
    held back until ``main`` ignores them: one that arrives while it starts dies
    with the ignoring. Here, one that arrives meanwhile is delivered when this ends
    (or at once to another thread of the process): nothing is lost.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, PARENT_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _ignore_parent_signals() -> None:
    for signum in PARENT_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)  # discards one held back while starting
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, PARENT_SIGNALS)


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n) if n else b""
    if len(data) != n:
        raise EncodingError("the tokenizer process ended unexpectedly")
    return data


def _read_u32(stream: IO[bytes]) -> int:
    return int(_U32.unpack(_read_exact(stream, 4))[0])


def _read_tokens(stream: IO[bytes]) -> Tokens:
    n = _read_u32(stream)
    ids, sizes = array("I"), array("I")
    ids.frombytes(_read_exact(stream, 4 * n))
    sizes.frombytes(_read_exact(stream, 4 * n))
    return ids, sizes


# ====================
# The helper process
# ====================


LiveRenderer = Callable[[int, str, Callable[[str], Tokens]], Any]
"""What draws the live view in the process: made from the terminal's file descriptor,
the encoding's name and a text's tokens; it ``receive``s each ``_LIVE`` message
(true once the view is off the screen) and is ``close``d at the end."""


def _serve(
    name: str,
    stdin: IO[bytes],
    stdout: IO[bytes],
    terminal: int | None = None,
    live_renderer: LiveRenderer | None = None,
) -> None:
    try:
        encoding = encodings.get_encoding(name)
        token_sizes(encoding)  # built now, not on the first request
        # encode_ordinary needs only tiktoken's Rust CoreBPE: its Python copy of
        # the ranks (26 MiB for o200k_base) is dropped while the process waits.
        encoding._mergeable_ranks = {}
    except Exception as ex:  # one line for the user, whatever went wrong
        message = str(ex) if isinstance(ex, EncodingError) else encodings.describe_error(ex)
        data = message.encode("utf-8", "replace")
        stdout.write(_FAILED + _U32.pack(len(data)) + data)
        stdout.flush()
        return
    live = None
    if terminal is not None and live_renderer is not None:
        # Drawing yields the CPU to llm's client: on two cores, a frame drawn as a
        # chunk arrives otherwise delayed the next one (llm-anthropic's TTST tail).
        # Only now: the load, which the request waits for, runs at llm's own priority.
        # Before the renderer: a thread keeps the nice value it was started with.
        with contextlib.suppress(OSError):
            os.nice(10)
        live = live_renderer(terminal, encoding.name, lambda text: tokens_of(encoding, text))
    stdout.write(_READY)
    stdout.flush()
    try:
        _answer(encoding, stdin, stdout, live)
    finally:
        if live is not None:
            live.close()


def _answer(encoding: tiktoken.Encoding, stdin: IO[bytes], stdout: IO[bytes], live: Any) -> None:
    while tag := stdin.read(1):
        if tag == _LIVE:
            message = _read_exact(stdin, _read_u32(stdin))
            if live is not None and live.receive(message):  # the view is off the screen
                stdout.write(CLOSED)
                stdout.flush()
            continue
        if tag != _TOKENIZE:
            return
        texts = [
            _read_exact(stdin, _read_u32(stdin)).decode("utf-8") for _ in range(_read_u32(stdin))
        ]
        for text in texts:
            ids, sizes = tokens_of(encoding, text)
            stdout.write(_U32.pack(len(ids)))
            stdout.write(ids.tobytes())
            stdout.write(sizes.tobytes())
        stdout.flush()


def main(argv: list[str] | None = None, live_renderer: LiveRenderer | None = None) -> None:
    """The helper process; ``--live FD`` only where a host hands it ``live_renderer``."""
    args = sys.argv[1:] if argv is None else argv
    terminal = None
    # Ctrl-C, and a SIGTERM sent to the process group (timeout, systemd, CI), reach
    # this process too: the run decides what they mean, and then closes this one's
    # input (or says when the view is to leave the screen). Died here, it would take
    # the run's alignment, or the terminal's state, with it.
    _ignore_parent_signals()
    if len(args) == 3 and args[1] == "--live" and args[2].isdigit() and live_renderer:
        terminal = int(args[2])
    elif len(args) != 1:
        sys.exit("usage: python -m llm_streamscope.capture.tokenizer ENCODING_NAME [--live FD]")
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        _serve(args[0], sys.stdin.buffer, sys.stdout.buffer, terminal, live_renderer)


if array("I").itemsize != 4:  # the pipe format is 32-bit ids and sizes
    raise ImportError("llm_streamscope.capture.tokenizer needs a 4-byte C unsigned int")

if __name__ == "__main__":
    main()
