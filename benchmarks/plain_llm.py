"""Baseline: plain llm iteration over model.prompt(..., stream=True), nothing else.

    python plain_llm.py MODEL_ID OPTIONS_JSON

Run against a simulator server (STREAMSCOPE_SIM_URL, or ANTHROPIC_BASE_URL for
llm-anthropic); prints one JSON line: the arrival of every non-empty text chunk,
the completion id and peak RSS. Times count from the same origin as
streamscope's: the client's socket connect, seen through the same audit hook;
``setup_ns`` is llm's time from starting the request to that connect.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import llm

clock = time.perf_counter_ns
connects: list[int] = []


def on_audit(event: str, args: tuple) -> None:
    if event == "socket.connect":
        connects.append(clock())


def main(model_id: str, options: dict) -> None:
    model = llm.get_model(model_id)
    response = model.prompt("x", stream=True, **options)
    sys.addaudithook(on_audit)
    times: list[int] = []
    keep = times.append
    t0 = clock()
    for chunk in response:
        if chunk:
            keep(clock())
    origin = next((t for t in connects if t >= t0), t0)
    print(
        json.dumps(
            {
                "chunks": len(times),
                "setup_ns": origin - t0 if origin != t0 else None,
                "times_ns": [t - origin for t in times],
                "first_ns": times[0] if times else None,
                "last_ns": times[-1] if times else None,
                "completion_id": (response.response_json or {}).get("id"),
                "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
