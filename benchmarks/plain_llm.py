"""Baseline: plain llm iteration over model.prompt(..., stream=True), nothing else.

Run as a script against a simulator server (STREAMSCOPE_SIM_URL); prints one JSON
line: chunks, the first and last arrival times, the completion id and peak RSS.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import llm


def main(chunks: int, seed: int, speed: float) -> None:
    model = llm.get_model("streamscope-sim")
    response = model.prompt("x", stream=True, chunks=chunks, seed=seed, speed=speed)
    clock = time.perf_counter_ns
    count = 0
    first = last = 0
    for _ in response:
        last = clock()
        if not count:
            first = last
        count += 1
    print(
        json.dumps(
            {
                "chunks": count,
                "first_ns": first,
                "last_ns": last,
                "completion_id": (response.response_json or {}).get("id"),
                "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
