"""P11 and P12: what a user waits for before and after the answer, `llm streamscope`
against plain `llm prompt` on the same stream.

P11: from the process's start (just before it is spawned) to the first character of
the answer on its standard output; P12: from the same start to its exit. Each pair
runs with standard output on a pipe and on a pseudo-terminal (where streamscope's
live view draws), with a cold encoding cache (an empty tiktoken cache folder: the
encoding is seeded, parsed and kept on the way) and a warm one; the two commands
alternate which goes first, both logging to the same llm folder, and each figure is
the difference of the two medians.

The answer is found in the output by its first chunk's text (the live view draws a
status line and colours before it, and marks chunk boundaries inside it), the
stream being the simulator's seeded one.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import statistics
import struct
import subprocess
import tempfile
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

_ESCAPES = re.compile(
    rb"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|[=>78])"
)


def timed(cmd: list[str], env: dict[str, str], *, terminal: bool, answer: bytes) -> dict:
    """Run ``cmd``; when ``answer`` first shows on its standard output, and when it exits,
    both in ns from just before it was spawned."""
    if terminal:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        out = err = slave
    else:
        master, out = os.pipe()
        err = subprocess.DEVNULL
    reads: list[tuple[int, bytes]] = []
    start = time.perf_counter_ns()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
    os.close(out)

    def drain() -> None:
        try:
            while data := os.read(master, 65536):
                reads.append((time.perf_counter_ns(), data))
        except OSError:
            pass  # EIO: the terminal's other end has closed

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    _, status, _ = os.wait4(proc.pid, 0)
    exited = time.perf_counter_ns()
    reader.join(10)
    os.close(master)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd[2:4]} exited {os.waitstatus_to_exitcode(status)}")
    seen = b""
    for t, data in reads:
        seen += data
        if answer in _ESCAPES.sub(b"", seen):
            return {"first_byte_ms": (t - start) / 1e6, "exit_ms": (exited - start) / 1e6}
    raise RuntimeError(f"the answer's start {answer!r} never showed")


def first_chunk(stream: Callable[[dict], dict], options: dict) -> bytes:
    """The first chunk of the seeded stream, as the output shows it (stripped of spaces)."""
    texts = stream({"model": "x", "messages": [], "streamscope": options})["texts"]
    return texts[0].strip().encode("utf-8")


def p11_p12(
    llm: list[str],
    env_for: Callable[[Path], dict[str, str]],
    stream: Callable[[dict], dict],
    tmp: Path,
    options: dict,
    rounds: int,
) -> list[dict]:
    option_args = [arg for k, v in options.items() for arg in ("-o", k, str(v))]
    commands = {
        "streamscope": [*llm, "streamscope", "-m", "streamscope-sim", *option_args, "x"],
        "llm prompt": [*llm, "-m", "streamscope-sim", *option_args, "x"],
    }
    answer = first_chunk(stream, options)
    warm_cache = tmp / "p11-warm-cache"
    env = env_for(tmp / "p11-user")
    for cmd in commands.values():  # logs.db made and migrated, the warm cache filled
        timed(cmd, env | {"TIKTOKEN_CACHE_DIR": str(warm_cache)}, terminal=False, answer=answer)
    results = []
    for where in ("pipe", "pty"):
        for cache in ("cold", "warm"):
            times: dict[str, dict[str, list[float]]] = {
                side: {"first_byte_ms": [], "exit_ms": []} for side in commands
            }
            for i in range(rounds):
                sides = list(commands) if i % 2 == 0 else list(commands)[::-1]
                for side in sides:
                    folder = warm_cache if cache == "warm" else Path(tempfile.mkdtemp(dir=tmp))
                    run_env = env | {"TIKTOKEN_CACHE_DIR": str(folder)}
                    found = timed(commands[side], run_env, terminal=where == "pty", answer=answer)
                    for key, value in found.items():
                        times[side][key].append(value)
            results += _rows(where, cache, rounds, times)
    return results


def _rows(where: str, cache: str, rounds: int, times: dict) -> list[dict]:
    med = statistics.median
    scope, plain = times["streamscope"], times["llm prompt"]
    shown = "live view" if where == "pty" else "plain text"
    label = f"{where} ({shown}), {cache} encoding cache, median of {rounds} alternating"
    rows = []
    for key, pid, what, target in (
        ("first_byte_ms", "P11", "process start -> first byte of the answer", 100),
        ("exit_ms", "P12", "process start -> exit", 200),
    ):
        value = med(scope[key]) - med(plain[key])
        rows.append(
            {
                "id": pid,
                "measure": f"{what}, llm streamscope - llm prompt, {label}",
                "value": value,
                "unit": "ms",
                "target": f"<= {target} ms",
                "ok": value <= target,
                "streamscope_ms": scope[key],
                "llm_prompt_ms": plain[key],
            }
        )
    return rows
