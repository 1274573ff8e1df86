"""Bounded work on any input: what is no event stream is refused from its first bytes,
one event may not grow past a cap, and reading stops there, not at the input's end.

The endless inputs here count what was read and fail the test (rather than hang
or fill memory) past a generous bound.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from test_inspect import OPENAI, inspect, write

from llm_streamscope.wire.intake import MAX_EVENT_BYTES
from llm_streamscope.wire.sources import SourceError, read_file, read_stdin

MIB = 2**20


class Endless(io.RawIOBase):
    """A stream that starts with ``start`` and then repeats ``then`` for ever, and
    fails the test once more than ``limit`` bytes were asked of it."""

    def __init__(self, start: bytes, then: bytes, limit: int = 3 * MAX_EVENT_BYTES) -> None:
        self.pending = bytearray(start)
        self.then = then
        self.given = 0
        self.limit = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        assert self.given < self.limit, f"read {self.given:,} bytes of an endless input"
        while len(self.pending) < len(buffer):
            self.pending += self.then * max(1, 65536 // len(self.then))
        n = len(buffer)
        buffer[:n] = self.pending[:n]
        del self.pending[:n]
        self.given += n
        return n


def test_binary_garbage_is_refused_at_byte_0_after_one_read():
    source = Endless(b"", os.urandom(4096))
    with pytest.raises(SourceError, match=r"^-: not an event stream: starts with .*\(at byte 0\)"):
        read_stdin(io.BufferedReader(source))
    assert source.given <= 2 * 65536


def test_nul_bytes_from_a_device_are_refused_at_once(tmp_path):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    # A subprocess, so that reading /dev/zero to its (missing) end fails by the timeout.
    env = {**os.environ, "LLM_USER_PATH": str(tmp_path)}
    command = [sys.executable, "-m", "llm", "streamscope", "inspect", "/dev/zero"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 1
    assert run.stderr.startswith("Error: /dev/zero: not an event stream: starts with '\\x00")
    assert run.stderr.count("\n") == 1


def test_an_endless_event_stops_at_the_cap_naming_it_and_how_to_raise_it():
    first = b'data: {"choices": []}\n\n'
    source = Endless(first + b"data: ", b"x")
    with pytest.raises(SourceError) as raised:
        read_stdin(io.BufferedReader(source), max_event_bytes=MIB)
    assert str(raised.value) == (
        f"-: an event is over the 1 MiB cap: raise the cap with --max-event-mb "
        f"(at byte {len(first)})"
    )
    assert source.given <= MIB + 2 * 65536 + len(first)  # memory: the event, not the input


@pytest.mark.parametrize(
    ("start", "then", "message"),
    [
        (b"", b"\n", "not an event stream: only whitespace in its first"),
        (b'data: {"choices": []}\n\n', b"\n", "an event is over the 1 MiB cap"),
        (b'data: {"choices": []}\n\n', b"data: x\n", "an event is over the 1 MiB cap"),
        (b'{"model": "m", "created_at": "t", "message": {}}\n', b"{", "over the 1 MiB cap"),
        (b'[{"candidates": []}, {"a": "', b"x", "an event is over the 1 MiB cap"),
        (b"data: hello\n\n", b"data: x\n\n", "not a stream of JSON events"),
    ],
)
def test_every_framing_is_bounded(start, then, message):
    source = Endless(start, then)
    with pytest.raises(SourceError, match=message):
        read_stdin(io.BufferedReader(source), max_event_bytes=MIB)
    assert source.given <= MIB + 2 * 65536 + len(start)


def test_a_framing_error_stops_the_reading_and_keeps_what_came_before():
    # Nothing can be decoded past the "x" where a "," belongs: decode says so, on what came.
    array = Endless(b'[{"candidates": []} ', b"x")
    taken = read_stdin(io.BufferedReader(array), max_event_bytes=MIB)
    assert taken.body.startswith(b'[{"candidates": []} x') and array.given <= 2 * 65536


def test_a_large_file_is_read_under_the_cap_too(tmp_path):
    path = tmp_path / "big.sse"
    path.write_bytes(b'data: {"choices": []}\n\ndata: ' + b"x" * (2 * MIB))
    with pytest.raises(SourceError, match="an event is over the 1 MiB cap"):
        read_file(path, max_event_bytes=MIB)


def big_event_body(size: int) -> bytes:
    """One chunk of ``size`` bytes, most of them a field that is not text (a large
    text is for the alignment's benchmark, not this)."""
    delta = {"content": "Hi", "padding": "y" * size}
    chunk = {"model": "gpt-4o-mini", "choices": [{"index": 0, "delta": delta}]}
    return f"data: {json.dumps(chunk)}\n\n".encode()


def test_inspect_names_the_cap_and_the_option_raises_it(tmp_path):
    body = big_event_body(int(1.5 * MIB))
    result = inspect("-", "--max-event-mb", "1", input=body)
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: -: an event is over the 1 MiB cap: raise the cap with --max-event-mb (at byte 0)\n"
    )
    raised = inspect("-", "--max-event-mb", "2", "--json", input=body)
    assert raised.exit_code == 0, raised.output
    assert json.loads(raised.stdout)["responses"][0]["stats"]["chunks"] == 1
    # A small file is read as it always was.
    assert inspect(write(tmp_path, "ok.sse", OPENAI), "--max-event-mb", "1").exit_code == 0


def test_the_cap_option_has_a_range():
    result = inspect("-", "--max-event-mb", "0", input=OPENAI)
    assert result.exit_code == 2 and "--max-event-mb" in result.stderr


def test_a_commands_output_is_bounded_too_and_the_command_stopped(tmp_path):
    """`inspect -- CMD`: an endless event stops at the cap, and a command that writes
    no event stream is refused from its first bytes; either way the command is
    stopped, not read to its (missing) end."""
    endless_event = (
        "import sys\n"
        "out = sys.stdout.buffer\n"
        "out.write(b'data: {\"choices\": []}\\n\\ndata: ')\n"
        "while True:\n"
        "    out.write(b'x' * 65536)\n"
    )
    result = inspect("--max-event-mb", "1", "--", sys.executable, "-c", endless_event)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: -- ") and "over the 1 MiB cap" in result.stderr
    assert result.stderr.count("\n") == 1

    zeros = "import sys\nwhile True:\n    sys.stdout.buffer.write(bytes(65536))\n"
    refused = inspect("--", sys.executable, "-c", zeros)
    assert refused.exit_code == 1
    assert "not an event stream" in refused.stderr
