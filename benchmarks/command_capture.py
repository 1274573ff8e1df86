"""P11: `llm streamscope inspect -- CMD` times a command's output as the command wrote it.

A writer command prints a simulator body event by event, a few milliseconds
apart, and logs the moment each write returned (``perf_counter_ns``, the same
system-wide clock streamscope reads). Each event is one write, so the gaps
between the events' times in the `--json` document should be the gaps between
the writes; the clocks' origins cancel out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

WRITER = r"""
import os, sys, time
body, pause, log = open(sys.argv[1], "rb").read(), float(sys.argv[2]), sys.argv[3]
done = []
for event in (e + b"\n\n" for e in body.split(b"\n\n") if e.strip()):
    time.sleep(pause)
    os.write(1, event)
    done.append(time.perf_counter_ns())
open(log, "w").write("\n".join(map(str, done)))
"""


READER = r"""
import os, time
received, reads = 0, []
while data := os.read(0, 65536):
    t = time.perf_counter_ns()
    received += len(data)
    reads.append(f"{t}:{received}")
print(" ".join(reads))
"""


def command_gaps(
    llm: list[str], body: bytes, tmp: Path, pause_s: float
) -> tuple[list[int], list[int]]:
    """(the events' times by streamscope, the writes' times by the writer), in ns."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "writer.py").write_text(WRITER)
    (tmp / "body.sse").write_bytes(body)
    log = tmp / "writes.log"
    command = [
        sys.executable,
        str(tmp / "writer.py"),
        str(tmp / "body.sse"),
        str(pause_s),
        str(log),
    ]
    env = {**os.environ, "LLM_USER_PATH": str(tmp / "user")}
    out = subprocess.run(
        [*llm, "streamscope", "inspect", "--json", "--", *command],
        env=env,
        capture_output=True,
        check=True,
    ).stdout
    (doc,) = json.loads(out)["responses"]
    read = [round(e["t_ms"] * 1e6) for e in doc["wire"]["events"]]
    written = [int(line) for line in log.read_text().split()]
    return read, written


def raw_pipe_gaps(body: bytes, tmp: Path, pause_s: float) -> tuple[list[int], list[int]]:
    """The same writer piped into a bare read loop: what any reader sees on this machine."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "writer.py").write_text(WRITER)
    (tmp / "body.sse").write_bytes(body)
    log = tmp / "raw-writes.log"
    writer = subprocess.Popen(
        [sys.executable, str(tmp / "writer.py"), str(tmp / "body.sse"), str(pause_s), str(log)],
        stdout=subprocess.PIPE,
    )
    out = subprocess.run(
        [sys.executable, "-c", READER], stdin=writer.stdout, capture_output=True, check=True
    ).stdout
    writer.wait()
    # Each event's time is that of the read that brought its last byte, as inspect's.
    reads = [tuple(map(int, pair.split(b":"))) for pair in out.split()]
    times, end, at = [], 0, 0
    for event in (e + b"\n\n" for e in body.split(b"\n\n") if e.strip()):
        end += len(event)
        while reads[at][1] < end:
            at += 1
        times.append(reads[at][0])
    return times, [int(line) for line in log.read_text().split()]
