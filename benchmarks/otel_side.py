"""P1, P7 and P8 with ``--otel`` as a side of their own: what sending the traces to a
collector costs, measured beside the same runs without it.

The collector is a loopback HTTP server in the benchmark's process (not the
measured one) that answers every OTLP request with 200, as a collector would.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class Collector:
    """``with Collector() as endpoint:`` an OTLP/HTTP endpoint that takes everything."""

    def __enter__(self) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def p_otel(
    sim: Any,
    tmp: Path,
    *,
    chunks: int,
    rounds: int,
    child_env: Callable[[Path, Any], dict[str, str]],
    run_streamscope: Callable[..., dict],
    sim_options: Callable[[int, int, float], dict],
    rate: Callable[[int, int, int], float],
) -> list[dict]:
    """Alternating rounds of `llm streamscope` with and without ``--otel`` (which goes
    first alternates): chunks/s on a fast stream (P1's), setup, TTFT and TTST on a
    slow one (P8's), and the last byte sent to the process's exit (P7's)."""
    sides = ("off", "otel")
    rates: dict[str, list[float]] = {side: [] for side in sides}
    times: dict[str, dict[str, list[float]]] = {
        side: {"setup_ms": [], "ttft_ms": [], "ttst_ms": [], "exit_ms": []} for side in sides
    }
    with Collector() as endpoint:
        for i in range(rounds):
            env = child_env(tmp / f"otel-{i}", sim) | {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
            for side in sides if i % 2 == 0 else sides[::-1]:
                otel = side == "otel"
                fast = run_streamscope(env, sim_options(chunks, i, 0), otel=otel)
                rates[side].append(
                    rate(len(fast["times_ns"]), fast["times_ns"][0], fast["times_ns"][-1])
                )
                slow = run_streamscope(env, sim_options(40, 9, 1.0), otel=otel)
                for key in ("setup_ms", "ttft_ms", "ttst_ms"):
                    times[side][key].append(slow[key])
                done_ns = sim.send_log(slow["completion_id"])["done_ns"]
                times[side]["exit_ms"].append((slow["exited_ns"] - done_ns) / 1e6)
    med = statistics.median
    ratio = med(rates["otel"]) / med(rates["off"])
    on, off = times["otel"], times["off"]
    ttft = med(on["ttft_ms"]) - med(off["ttft_ms"])
    ttst = med(on["ttst_ms"]) - med(off["ttst_ms"])
    setup = med(on["setup_ms"]) - med(off["setup_ms"])
    after = med(on["exit_ms"]) - med(off["exit_ms"])
    where = f"median of {rounds} alternating rounds, a loopback collector"
    return [
        {
            "id": "P1o",
            "measure": f"chunks/s, llm streamscope --otel / without, {chunks} chunks, {where}",
            "value": ratio,
            "unit": "x",
            "target": ">= 0.98 (nothing on the capture path)",
            "ok": ratio >= 0.98,
            "otel_chunks_per_s": rates["otel"],
            "chunks_per_s": rates["off"],
        },
        {
            "id": "P8o",
            "measure": f"TTFT, llm streamscope --otel - without (40 chunks at ~1 ms, {where})",
            "value": ttft,
            "unit": "ms",
            "target": "<= 1 ms, setup and TTST too",
            "ok": abs(ttft) <= 1 and abs(ttst) <= 1 and abs(setup) <= 1,
            "setup_ms": setup,
            "ttst_ms": ttst,
            "otel_ms": on,
            "without_ms": off,
        },
        {
            "id": "P7o",
            "measure": f"last byte sent -> process exit, --otel - without ({where})",
            "value": after,
            "unit": "ms",
            "target": "<= 1000 ms (the export's budget)",
            "ok": after <= 1000,
        },
    ]
