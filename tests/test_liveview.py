"""The live view, end to end: the real CLI in a pseudo-terminal against the simulator,
its screen read through a terminal emulator (pyte) while the answer streams and after.

The simulator runs in a process of its own (``python -m llm_streamscope.sim``): in
this one, the emulator's work would hold its sending back. Its send log, the ground
truth of when each chunk left, is read over HTTP and compared with the times the run
recorded.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sqlite3
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from itertools import pairwise

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from llm_streamscope.views.liveview import LiveScreen

pyte = pytest.importorskip("pyte")
pty = pytest.importorskip("pty")
fcntl = pytest.importorskip("fcntl")
termios = pytest.importorskip("termios")

LLM = [sys.executable, "-m", "llm"]
STATUS = re.compile(
    r"● [\d.]+ s  TTFT [\d,]+ ms  (\d+) chunks?  (\d+) tokens?  "
    r"[\d.,]+ tok/s  gap [\d,]+ ms  \d+ stalls?  streamscope-sim"
)


class Simulator:
    def __init__(self):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "llm_streamscope.sim", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.url = self.process.stdout.readline().strip()  # the first line: its base URL

    def send_log(self, completion_id: str) -> dict:
        with urllib.request.urlopen(f"{self.url}/streamscope/sendlog/{completion_id}") as r:
            return json.load(r)


@pytest.fixture(scope="module")
def sim():
    server = Simulator()
    yield server
    server.process.terminate()
    server.process.wait(10)


class Terminal:
    """A command on a pseudo-terminal of ``cols`` x ``rows``, read by a thread into a
    pyte screen. ``read_delay`` makes it a slow terminal: it takes ``read_size`` bytes
    at a time with a pause between reads, and the program's writes block meanwhile."""

    def __init__(self, cmd, env, *, cols=100, rows=30, read_delay=0.0, read_size=65536):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.screen = pyte.Screen(cols, rows)
        self._stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self._master = master
        self._reader = threading.Thread(
            target=self._read, args=(read_delay, read_size), daemon=True
        )
        self._reader.start()

    def _read(self, delay, size):
        while True:
            try:
                data = os.read(self._master, size)
            except OSError:  # EIO: the program has closed the terminal
                return
            if not data:
                return
            with self._lock:
                self.raw.extend(data)
                self._stream.feed(data)
            if delay:
                time.sleep(delay)

    def text(self) -> str:
        with self._lock:
            return "\n".join(line.rstrip() for line in self.screen.display)

    def wait_for(self, pattern, timeout=60.0):
        """The screen once ``pattern`` (a regex) is on it, with the match."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            found = re.search(pattern, text)
            if found:
                return text, found
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"{pattern!r} never showed; the screen:\n{self.text()}")

    def resize(self, cols, rows):
        """Resize the terminal as one that re-wraps its lines does (most do): each row
        longer than the new width becomes several, and the rows drawn so far move
        down where the program cannot know; then the program gets its SIGWINCH."""
        with self._lock:
            fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            cursor = self.screen.cursor
            wrapped, at = [], (0, 0)
            for y, line in enumerate(self.screen.display):
                line = line.rstrip()
                pieces = [line[i : i + cols] for i in range(0, len(line), cols)] or [""]
                if y == cursor.y:
                    at = (len(wrapped) + min(cursor.x // cols, len(pieces) - 1), cursor.x % cols)
                wrapped += pieces
            while len(wrapped) > at[0] + 1 and not wrapped[-1]:
                wrapped.pop()  # the blank rows below: not lines of the terminal's
            top = min(max(0, len(wrapped) - rows), at[0])
            self.screen.resize(rows, cols)
            self.screen.reset()
            self._stream.feed("\r\n".join(wrapped[top : top + rows]).encode())
            self.screen.cursor_position(at[0] - top + 1, at[1] + 1)
        os.killpg(self.process.pid, signal.SIGWINCH)

    def finish(self, timeout=60.0) -> int:
        code = self.process.wait(timeout)
        self._reader.join(10)
        os.close(self._master)
        return code


def live_run(tmp_path, sim, *args, env=None, **terminal):
    # the terminal's own size, not one a test runner exported (xdist: 80x24)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")},
        "LLM_USER_PATH": str(tmp_path / "user"),
        "STREAMSCOPE_SIM_URL": sim.url,
        "TERM": "xterm-256color",
        **(env or {}),
    }
    cmd = [*LLM, "streamscope", "-m", "streamscope-sim", *args, "Why?"]
    return Terminal(cmd, env, **terminal)


def logged(tmp_path):
    """The last trace's text fragments (t_ns), status and the simulator's completion id."""
    db = sqlite3.connect(tmp_path / "user" / "logs.db")
    trace_id, status, completion_id = db.execute(
        "select t.id, t.status, json_extract(turns.response_json, '$.id') "
        "from streamscope_traces t left join turns on turns.id = t.turn_id "
        "order by t.started_utc desc limit 1"
    ).fetchone()
    times = [
        t
        for (t,) in db.execute(
            "select t_ns from streamscope_fragments where trace_id = ? and kind = 'text' "
            "and text != '' order by idx",
            [trace_id],
        )
    ]
    db.close()
    return times, status, completion_id


def answer(tmp_path) -> str:
    """The last trace's text, as it streamed."""
    db = sqlite3.connect(tmp_path / "user" / "logs.db")
    (text,) = db.execute(
        "select group_concat(text, '') from (select f.text from streamscope_fragments f "
        "join streamscope_traces t on t.id = f.trace_id where f.kind = 'text' "
        "order by t.started_utc desc, f.idx)"
    ).fetchone()
    db.close()
    return text


def above_the_views(screen: str) -> str:
    """What the screen shows above the final views' first rule."""
    return re.split(r"^─+ alignment ─+$", screen, maxsplit=1, flags=re.M)[0]


def left_on_screen(text: str) -> bool:
    """Whether a line of the live view (the strip, the status line) is on the screen."""
    return bool(re.search(r"^(gaps |● [\d.]+ s  )", text, re.M))


def cursor_shown_at_end(raw: bytes) -> bool:
    return raw.rfind(b"\x1b[?25l") < raw.rfind(b"\x1b[?25h")


def test_the_screen_mid_stream_and_at_the_end_and_a_slow_terminal_delays_nothing(tmp_path, sim):
    # The terminal takes 256 bytes every 10 ms, ~25 kB/s: less than the frames need,
    # so the view's writes block; the capture must not notice.
    options = ["-o", "chunks", "100", "-o", "seed", "5", "-o", "speed", "1"]
    term = live_run(tmp_path, sim, *options, read_delay=0.01, read_size=256)
    screen, status = term.wait_for(STATUS.pattern)
    assert term.process.poll() is None, "the stream was over before the screen was read"
    chunks, tokens = int(status[1]), int(status[2])
    assert 1 <= chunks < 100 and tokens >= chunks  # mid-stream; one token per chunk here
    lines = screen.splitlines()
    at = next(i for i, line in enumerate(lines) if STATUS.search(line))
    assert lines[at - 1].startswith("gaps ")  # the strip, right above the status line
    assert len(lines[at - 1]) == len("gaps ") + min(chunks - 1, 95)  # a cell per gap so far
    assert "When│ you" in screen  # the answer (the prose sample) filling in, chunks marked

    assert term.finish() == 0
    end = term.text()
    assert b"alignment" in term.raw  # the full views, printed after (scrolled up by now)
    assert " stats " in end and "tokens/s" in end
    assert not left_on_screen(end), end  # the live view has left the screen
    assert cursor_shown_at_end(bytes(term.raw))
    times, status_logged, completion_id = logged(tmp_path)
    assert len(times) == 100 and status_logged == "complete"
    db = sqlite3.connect(tmp_path / "user" / "logs.db")
    shown_s = sum(db.execute("select setup_ns + end_ns from streamscope_traces").fetchone()) / 1e9
    db.close()
    frames = bytes(term.raw).count("● ".encode())  # a status line a frame
    assert 5 <= frames <= 30 * shown_s + 2, (frames, shown_s)  # at most 30 a second

    sent = sim.send_log(completion_id)["sent_ns"]
    errors = [
        abs((b - a) - (d - c)) / 1e6 for (a, b), (c, d) in zip(pairwise(times), pairwise(sent))
    ]
    # A view drawn in the capturing process would hold the next read back by whole
    # frames of a blocked write (tens of ms each); the gaps match the sender's
    # instead, within this busy machine's noise.
    assert statistics.median(errors) < 2.0, errors
    assert sorted(errors)[int(0.95 * len(errors))] < 15.0, errors


@pytest.mark.parametrize("size", [(50, 60), (100, 40)])
def test_after_a_resize_the_answer_as_text_then_the_views_nothing_stale(tmp_path, sim, size):
    # A short answer on a tall terminal: nothing scrolls off the screen, so a line
    # the view left behind would still be on it.
    # Twenty chunks at once, then a stall of 1.5 s in which the terminal is resized and
    # the view redrawn, then the rest at once.
    options = ["-o", "chunks", "60", "-o", "speed", "0", "-o", "stall_after", "20"]
    term = live_run(tmp_path, sim, *options, "-o", "stall_s", "1.5", cols=100, rows=60)
    term.wait_for(r"● [\d.]+ s  TTFT [\d,]+ ms  ([2-9]|\d\d) chunks")
    assert term.process.poll() is None, "the stream was over before the resize"
    term.resize(*size)
    time.sleep(0.3)  # frames drawn at the new size
    assert term.finish() == 0
    end = term.text()
    # After the view: the answer as llm prints it (no marks: it can be copied), and
    # nothing else above the views
    above = above_the_views(end)
    assert "".join(above.split()) == "".join(answer(tmp_path).split()), end
    assert " stats " in end and not left_on_screen(end)


def test_ctrl_c_leaves_the_terminal_clean_and_keeps_the_trace(tmp_path, sim):
    term = live_run(tmp_path, sim, "-o", "chunks", "400", "-o", "speed", "0.3")
    term.wait_for(STATUS.pattern)
    os.killpg(term.process.pid, signal.SIGINT)  # what Ctrl-C sends: the whole group
    assert term.finish() == 130
    end = term.text()
    assert not left_on_screen(end), end
    assert "interrupted" in end
    assert cursor_shown_at_end(bytes(term.raw))
    times, status, _ = logged(tmp_path)
    assert status == "interrupted" and 0 < len(times) < 400


def test_no_live_keeps_the_plain_text_where_the_view_could_draw(monkeypatch):
    from click.testing import CliRunner
    from llm.cli import cli

    from llm_streamscope.cli import run as run_command

    monkeypatch.setattr(run_command, "_can_draw", lambda stream: True)
    args = ["streamscope", "-m", "streamscope-sim", "-o", "chunks", "5", "-o", "speed", "0"]
    result = CliRunner().invoke(cli, [*args, "--no-live", "Why?"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("When you ask")  # the text as llm shows it, then the views


@pytest.mark.parametrize(
    "env, drawn",
    [({}, True), ({"NO_COLOR": "1"}, False), ({"TERM": "dumb"}, False), ({"NO_COLOR": ""}, True)],
)
def test_where_the_view_can_draw(monkeypatch, env, drawn):
    from llm_streamscope.cli.common import _can_draw

    monkeypatch.setenv("TERM", "xterm-256color")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as terminal, os.fdopen(master):
        assert _can_draw(terminal) is drawn
        assert not _can_draw(io.StringIO())  # a pipe or a file never


def test_live_screen_frames(tmp_path):
    """LiveScreen alone: tokens coloured as the final view colours them, the tail of
    a long answer, the strip's stall, and the status line's figures."""
    from rich.console import Console

    from llm_streamscope.analysis import encodings
    from llm_streamscope.capture.tokenizer import tokens_of

    encoding = encodings.get_encoding("o200k_base")
    screen = LiveScreen(lambda text: tokens_of(encoding, text), stall_ms=50)
    screen.begin("m", start_ns=0)
    lines = [f"Line {i} of the answer.\n" for i in range(200)]
    ms = 1_000_000
    screen.add([("text", line, (100 + 10 * i) * ms) for i, line in enumerate(lines)], origin_ns=0)
    screen.add([("text", "The end", 2_200 * ms)])  # a 110 ms stall before it
    console = Console(width=100, color_system="truecolor", record=True, file=io.StringIO())
    console.print(screen.frame(console, now_ns=2_210 * ms, height=10))
    shown = console.export_text().splitlines()
    assert len(shown) == 9  # the height, less the row the cursor rests on
    # The tail, as the alignment view shows it: ↵ for a newline, │ between chunks.
    assert shown[:7] == [f"│Line {i} of the answer.↵" for i in range(194, 200)] + ["│The end"]
    strip, status = shown[-2], shown[-1]
    assert strip.startswith("gaps ") and strip.endswith("▲")  # the stall, last
    whole = len(encoding.encode_ordinary("".join(lines) + "The end"))
    assert f"{whole:,} tokens" in status and "1 stall" in status
    assert "TTFT 100 ms" in status and "201 chunks" in status


def test_a_live_view_of_another_encoding_marks_chunks_only():
    from rich.console import Console

    screen = LiveScreen(None, stall_ms=50)
    screen.begin("m", start_ns=0)
    screen.add([("text", "ab", 1_000_000), ("text", "cd", 2_000_000)], origin_ns=0)
    console = Console(width=40, color_system=None, record=True)
    console.print(screen.frame(console, now_ns=3_000_000, height=6))
    text = console.export_text()
    assert "ab│cd" in text and "tokens" not in text and "2 chunks" in text


def test_replay_plays_in_the_live_view(isolated_env):
    from click.testing import CliRunner
    from llm.cli import cli

    # Five chunks at once, a 0.6 s stall (replayed as it was: mid-replay), the rest at once.
    logged_run = ["streamscope", "-m", "streamscope-sim", "-o", "chunks", "25"]
    logged_run += ["-o", "speed", "0", "-o", "stall_after", "5", "-o", "stall_s", "0.6"]
    assert CliRunner().invoke(cli, [*logged_run, "Why?"]).exit_code == 0
    env = {**os.environ, "TERM": "xterm-256color"}  # LLM_USER_PATH: the run's
    term = Terminal([*LLM, "streamscope", "replay", "--latest"], env)
    screen, status = term.wait_for(STATUS.pattern)
    assert int(status[1]) < 25 and "When│ you" in screen  # mid-replay
    assert term.finish() == 0
    assert not left_on_screen(term.text()) and "alignment" in term.text()
    assert cursor_shown_at_end(bytes(term.raw))


def test_while_nothing_arrives_a_frame_redraws_only_the_clock():
    from rich.console import Console

    calls = []

    def tokenize(text):
        calls.append(text)
        return [0] * len(text.encode()), [1] * len(text.encode())  # a byte a token

    screen = LiveScreen(tokenize, stall_ms=50)
    screen.begin("m", start_ns=0)
    screen.add([("text", "abc", 1_000_000)], origin_ns=0)
    console = Console(width=100, color_system="truecolor", record=True, file=io.StringIO())
    console.print(screen.frame(console, now_ns=2_000_000, height=6))
    console.print(screen.frame(console, now_ns=90_000_000, height=6))  # a stall: the same tail
    assert len(calls) == 1
    assert "gap 89 ms" in console.export_text()  # the clock still moves
    screen.add([("text", "d", 95_000_000)])
    console.print(screen.frame(console, now_ns=96_000_000, height=6))
    assert len(calls) == 2 and "4 tokens" in console.export_text()


@settings(max_examples=25, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=400),
    rows=st.integers(min_value=3, max_value=12),
    newlines=st.booleans(),
)
# Drawn from a cut before any newline: its colours were one token out of step.
@example(cuts=[1] * 11 + [5] + [9] * 12, rows=3, newlines=True)
@example(cuts=[9] * 200, rows=3, newlines=False)  # no newline to cut at
def test_the_tail_is_the_final_views_tail_colours_and_all(cuts, rows, newlines):
    """Drawn in two parts (settled, and the line being written) from part of the
    text, or from a token far from any newline, the tail is still the final
    alignment view's last rows, styles included."""
    from rich.console import Console

    from llm_streamscope.analysis import encodings
    from llm_streamscope.analysis.align import align_fragments
    from llm_streamscope.analysis.trace import Fragment
    from llm_streamscope.capture.tokenizer import tokens_of
    from llm_streamscope.views.render import AlignmentView

    encoding = encodings.get_encoding("o200k_base")
    text = "".join(f"Para {i}: streams, tokens and  chunks.\n\n- item {i}\n" for i in range(40))
    if not newlines:
        text = text.replace("\n", " ")
    pieces, at = [], 0
    for size in cuts:
        if at < len(text):
            pieces.append(text[at : at + size])
            at += size
    screen = LiveScreen(lambda t: tokens_of(encoding, t), stall_ms=50)
    screen.begin("m", start_ns=0)
    screen.add([("text", p, i) for i, p in enumerate(pieces)], origin_ns=0)
    console = Console(width=30, color_system="truecolor", file=io.StringIO(), record=True)
    tail, tokens = screen._tail(console, 30, rows)
    streamed = "".join(pieces)
    whole = align_fragments(
        [Fragment(i, "text", p, i) for i, p in enumerate(pieces)], tokens_of(encoding, streamed)
    )
    expected = list(AlignmentView(whole).rows(30))
    assert tokens == whole.token_count
    assert [row.markup for row in tail] == [row.markup for row in expected[-len(tail) :]]
    assert len(tail) == min(rows, len(expected))
