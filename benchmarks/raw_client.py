"""The practical floor: a minimal streaming client with no libraries.

http.client, a line split and json.loads, as in a hand-written SSE reader. It
times each content chunk the moment its line is read.
"""

from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlsplit


def stream(base_url: str, body: dict) -> dict:
    """POST a streaming chat completion; returns the timings of its content chunks.

    ``ttft_ns`` counts from just before the connection is opened, like streamscope's
    TTFT counts from the client's socket connect.
    """
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port)
    clock = time.perf_counter_ns
    t0 = clock()
    conn.request(
        "POST",
        url.path.rstrip("/") + "/chat/completions",
        json.dumps({**body, "stream": True}),
        {"Content-Type": "application/json"},
    )
    response = conn.getresponse()
    times: list[int] = []
    texts: list[str] = []
    completion_id = None
    while True:
        line = response.readline()
        if not line:
            break
        t = clock()
        if not line.startswith(b"data: "):
            continue
        data = line[6:].strip()
        if data == b"[DONE]":
            break
        chunk = json.loads(data)
        completion_id = chunk.get("id", completion_id)
        choices = chunk.get("choices") or []
        content = choices[0]["delta"].get("content") if choices else None
        if content:
            times.append(t - t0)
            texts.append(content)
    conn.close()
    return {"completion_id": completion_id, "times_ns": times, "texts": texts}
