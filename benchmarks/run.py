"""Streamscope's benchmarks, each measured side by side with its baseline in one run.

    python benchmarks/run.py            # full sizes (a few minutes)
    python benchmarks/run.py --quick    # small sizes: proves the benchmark still runs

Everything streams from one simulator server in its own process (python -m
llm_streamscope.sim) over loopback, so the server never competes with a client
for the GIL. The baselines are benchmarks/raw_client.py (http.client, a line
split, json.loads: the practical floor) and benchmarks/plain_llm.py (plain llm
iteration over model.prompt(..., stream=True)). Results print as a table and
are written as JSON (--output). Targets are reported, never asserted: a slow
machine makes no test fail.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import pty
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import urllib.request
from itertools import pairwise
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import raw_client  # noqa: E402

PY = sys.executable
LLM = [PY, "-m", "llm"]


class SimServer:
    """The simulator in its own process."""

    def __enter__(self) -> SimServer:
        self.proc = subprocess.Popen(
            [PY, "-m", "llm_streamscope.sim"], stdout=subprocess.PIPE, text=True
        )
        self.url = self.proc.stdout.readline().strip()  # type: ignore[union-attr]
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait()

    def send_log(self, completion_id: str) -> dict:
        url = f"{self.url}/streamscope/sendlog/{completion_id}"
        with urllib.request.urlopen(url) as response:
            return json.load(response)


def child_env(user_path: Path, sim: SimServer) -> dict[str, str]:
    return {**os.environ, "LLM_USER_PATH": str(user_path), "STREAMSCOPE_SIM_URL": sim.url}


def run_in_pty(cmd: list[str], env: dict[str, str]) -> tuple[int, int, float]:
    """Run with stdout and stderr on a 100x40 pseudo-terminal, reading it as a terminal
    would. Returns (exit code, peak RSS in KiB, wall seconds)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    os.close(slave)

    def drain() -> None:
        try:
            while os.read(master, 65536):
                pass
        except OSError:
            pass  # EIO: the child closed the terminal

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join(5)
    os.close(master)
    return proc.returncode, usage.ru_maxrss, time.perf_counter() - start


def run_plain(env: dict[str, str], chunks: int, seed: int, speed: float) -> dict:
    out = subprocess.run(
        [PY, str(HERE / "plain_llm.py"), str(chunks), str(seed), str(speed)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def run_streamscope(env: dict[str, str], chunks: int, seed: int, speed: float) -> dict:
    """One `llm streamscope` run, logging on, live view on in a pty; its trace from logs.db."""
    cmd = [*LLM, "streamscope", "-m", "streamscope-sim", "-o", "chunks", str(chunks)]
    cmd += ["-o", "seed", str(seed), "-o", "speed", str(speed), "x"]
    code, maxrss, wall = run_in_pty(cmd, env)
    if code != 0:
        raise RuntimeError(f"llm streamscope exited {code}")
    db = sqlite3.connect(Path(env["LLM_USER_PATH"]) / "logs.db")
    trace_id, ttft, completion_id = db.execute(
        "select t.id, t.ttft_ms, json_extract(turns.response_json, '$.id') "
        "from streamscope_traces t join turns on turns.id = t.turn_id "
        "order by t.started_utc desc limit 1"
    ).fetchone()
    times = [
        r[0]
        for r in db.execute(
            "select t_ns from streamscope_fragments where trace_id = ? and text != '' order by idx",
            [trace_id],
        )
    ]
    db.close()
    return {
        "times_ns": times,
        "ttft_ms": ttft,
        "completion_id": completion_id,
        "maxrss_kib": maxrss,
        "wall_s": wall,
    }


def rate(chunks: int, first_ns: int, last_ns: int) -> float:
    return (chunks - 1) / ((last_ns - first_ns) / 1e9)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * 0.99
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def gap_errors_ms(measured_ns: list[int], sent_ns: list[int]) -> list[float]:
    """|measured gap - sent gap| for every gap; clock offsets cancel out."""
    assert len(measured_ns) == len(sent_ns), (len(measured_ns), len(sent_ns))
    measured = [b - a for a, b in pairwise(measured_ns)]
    sent = [b - a for a, b in pairwise(sent_ns)]
    return [abs(m - s) / 1e6 for m, s in zip(measured, sent)]


# ---------------------------------------------------------------------------
# The six measures


def p1_throughput(sim: SimServer, tmp: Path, chunks: int, rounds: int) -> dict:
    plain_rates, scope_rates = [], []
    for i in range(rounds):  # alternate, so drift hits both alike
        env = child_env(tmp / f"p1-{i}", sim)
        p = run_plain(env, chunks, i, 0)
        plain_rates.append(rate(p["chunks"], p["first_ns"], p["last_ns"]))
        s = run_streamscope(env, chunks, i, 0)
        scope_rates.append(rate(len(s["times_ns"]), s["times_ns"][0], s["times_ns"][-1]))
    plain, scope = statistics.median(plain_rates), statistics.median(scope_rates)
    return {
        "id": "P1",
        "measure": f"chunks/s, llm streamscope (logging, live view in a pty) / plain llm, "
        f"{chunks} chunks, no delay",
        "value": scope / plain,
        "target": ">= 0.95",
        "ok": scope / plain >= 0.95,
        "streamscope_chunks_per_s": scope_rates,
        "plain_llm_chunks_per_s": plain_rates,
    }


def p2_gap_fidelity(sim: SimServer, tmp: Path, chunks: dict[float, int]) -> list[dict]:
    results = []
    for speed, limit in ((1.0, 1.0), (13.0, 2.0)):
        n = chunks[speed]
        env = child_env(tmp / f"p2-{speed:g}", sim)
        s = run_streamscope(env, n, 7, speed)
        sent = sim.send_log(s["completion_id"])["sent_ns"]
        scope_err = p99(gap_errors_ms(s["times_ns"], sent))
        raw = raw_client.stream(
            sim.url,
            {"model": "x", "messages": [], "streamscope": {"chunks": n, "seed": 7, "speed": speed}},
        )
        raw_err = p99(gap_errors_ms(raw["times_ns"], sim.send_log(raw["completion_id"])["sent_ns"]))
        mean_gap = (sent[-1] - sent[0]) / (len(sent) - 1) / 1e6
        results.append(
            {
                "id": "P2",
                "measure": f"p99 |measured gap - sent gap|, mean gap {mean_gap:.1f} ms, "
                "live view on",
                "value": scope_err,
                "unit": "ms",
                "target": f"<= {limit:g} ms",
                "ok": scope_err <= limit,
                "raw_client_p99_ms": raw_err,
                "chunks": n,
            }
        )
    return results


def p3_alignment(sizes: list[int]) -> list[dict]:
    from llm_streamscope.align import align_fragments
    from llm_streamscope.encodings import get_encoding
    from llm_streamscope.trace import Fragment

    enc = get_encoding("o200k_base")
    samples = HERE.parent / "samples"
    base = "".join(
        (samples / f"{name}.txt").read_text() for name in ("prose", "code", "multilingual")
    )

    def best(fn, n: int = 5) -> float:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    rows = []
    for size in sizes:
        text = (base * (size // len(base) + 1))[:size]
        # OpenAI-like: one token per fragment (tokens that are part of a character
        # ride with the next), the case with the most fragments.
        pieces, pending = [], b""
        for token_bytes in enc.decode_tokens_bytes(enc.encode_ordinary(text)):
            pending += token_bytes
            try:
                pieces.append(pending.decode())
                pending = b""
            except UnicodeDecodeError:
                pass
        fragments = [Fragment(i, "text", p, i * 1000) for i, p in enumerate(pieces)]
        align_s = best(lambda fragments=fragments: align_fragments(fragments, enc))
        encode_s = best(lambda text=text: enc.encode_ordinary(text))
        rows.append(
            {
                "bytes": len(text.encode()),
                "fragments": len(fragments),
                "align_s": align_s,
                "encode_s": encode_s,
            }
        )
    growth = [b["align_s"] / a["align_s"] for a, b in pairwise(rows)]
    worst_vs_encode = max(r["align_s"] / r["encode_s"] for r in rows)
    return [
        {
            "id": "P3",
            "measure": "alignment time growth for 10x text ("
            + ", ".join(
                f"{a['bytes'] // 1000} kB -> {b['bytes'] // 1000} kB" for a, b in pairwise(rows)
            )
            + ")",
            "value": max(growth),
            "unit": "x",
            "target": "<= 11x",
            "ok": max(growth) <= 11,
            "growth": growth,
            "sizes": rows,
        },
        {
            "id": "P3",
            "measure": "full alignment / one tiktoken encode of the same text (worst size)",
            "value": worst_vs_encode,
            "unit": "x",
            "target": "<= 1.5x",
            "ok": worst_vs_encode <= 1.5,
            "per_size": [r["align_s"] / r["encode_s"] for r in rows],
        },
    ]


def p4_ttft(sim: SimServer, tmp: Path, seeds: list[int]) -> dict:
    diffs = []
    for seed in seeds:
        env = child_env(tmp / f"p4-{seed}", sim)
        s = run_streamscope(env, 20, seed, 1.0)
        raw = raw_client.stream(
            sim.url,
            {"model": "x", "messages": [], "streamscope": {"chunks": 20, "seed": seed, "speed": 1}},
        )
        diffs.append(s["ttft_ms"] - raw["times_ns"][0] / 1e6)
    value = statistics.median(diffs)
    return {
        "id": "P4",
        "measure": "TTFT by streamscope - TTFT by the raw client, same simulated stream "
        "(fresh process, encoding loading in the background)",
        "value": value,
        "unit": "ms",
        "target": "<= 5 ms",
        "ok": value <= 5,
        "diffs_ms": diffs,
    }


def p5_memory(sim: SimServer, tmp: Path, chunks: int) -> dict:
    """Peak RSS against plain llm as people run it: `llm prompt`, which logs the
    response to logs.db just as streamscope does (llm's own log_to_db alone costs
    ~130 MiB on a 100k-chunk response); bare iteration is reported beside it."""
    env = child_env(tmp / "p5", sim)
    opts = ["-o", "chunks", str(chunks), "-o", "seed", "1", "-o", "speed", "0"]
    code, llm_prompt, _ = run_in_pty([*LLM, "-m", "streamscope-sim", *opts, "x"], env)
    if code != 0:
        raise RuntimeError(f"llm prompt exited {code}")
    iteration = run_plain(env, chunks, 1, 0)["maxrss_kib"]
    scope = run_streamscope(env, chunks, 1, 0)["maxrss_kib"]
    extra_mib = (scope - llm_prompt) / 1024
    return {
        "id": "P5",
        "measure": f"peak RSS, llm streamscope - llm prompt (both logging), {chunks} chunks",
        "value": extra_mib,
        "unit": "MiB",
        "target": "<= +120 MiB",
        "ok": extra_mib <= 120,
        "llm_prompt_mib": llm_prompt / 1024,
        "plain_llm_iteration_mib": iteration / 1024,
        "streamscope_mib": scope / 1024,
        "streamscope_minus_iteration_mib": (scope - iteration) / 1024,
    }


def p6_help(tmp: Path, rounds: int) -> dict:
    env = {**os.environ, "LLM_USER_PATH": str(tmp / "p6")}

    def wall(cmd: list[str]) -> float:
        start = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
        return time.perf_counter() - start

    plain, scope = [], []
    for _ in range(rounds):
        plain.append(wall([*LLM, "--help"]))
        scope.append(wall([*LLM, "streamscope", "--help"]))
    value = statistics.median(scope) / statistics.median(plain)
    return {
        "id": "P6",
        "measure": "`llm streamscope --help` / `llm --help`, wall time",
        "value": value,
        "unit": "x",
        "target": "<= 1.15",
        "ok": value <= 1.15,
        "llm_help_s": plain,
        "streamscope_help_s": scope,
    }


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to prove it runs")
    parser.add_argument("--output", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    quick = args.quick

    from llm_streamscope.encodings import get_encoding

    get_encoding("o200k_base")  # seed tiktoken's cache once, outside every measure
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as d, SimServer() as sim:
        tmp = Path(d)
        steps = [
            lambda: [p1_throughput(sim, tmp, 2_000 if quick else 20_000, 1 if quick else 5)],
            lambda: p2_gap_fidelity(
                sim, tmp, {1.0: 60, 13.0: 300} if quick else {1.0: 800, 13.0: 5_000}
            ),
            lambda: p3_alignment([10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]),
            lambda: [p4_ttft(sim, tmp, [1, 2] if quick else [1, 2, 3, 4, 5, 6, 7])],
            lambda: [p5_memory(sim, tmp, 5_000 if quick else 100_000)],
            lambda: [p6_help(tmp, 3 if quick else 15)],
        ]
        for step in steps:
            for result in step():
                results.append(result)
                unit = result.get("unit", "")
                mark = "ok  " if result["ok"] else "MISS"
                print(
                    f"{mark} {result['id']}  {result['value']:8.3f} {unit:3}  "
                    f"(target {result['target']})  {result['measure']}",
                    flush=True,
                )
    report = {"quick": quick, "machine": machine(), "results": results}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
