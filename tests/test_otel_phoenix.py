"""--otel against a real backend: Arize Phoenix receives a run's spans over OTLP/HTTP
and its REST API returns them with the GenAI attributes.

Skips unless Phoenix is installed: `phoenix` on PATH, or STREAMSCOPE_PHOENIX naming
its script (it is large, so best in a venv of its own)::

    python -m venv /tmp/phoenix-venv && /tmp/phoenix-venv/bin/pip install arize-phoenix
    STREAMSCOPE_PHOENIX=/tmp/phoenix-venv/bin/phoenix pytest tests/test_otel_phoenix.py
"""

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner
from llm.cli import cli

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

PHOENIX = os.environ.get("STREAMSCOPE_PHOENIX") or shutil.which("phoenix")
pytestmark = pytest.mark.skipif(
    not PHOENIX or not os.access(PHOENIX, os.X_OK),
    reason="Arize Phoenix is not installed (pip install arize-phoenix; STREAMSCOPE_PHOENIX)",
)
PROJECT = "streamscope-test"
STARTUP_S = 180  # a cold start on a busy machine takes most of a minute


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@pytest.fixture
def phoenix(tmp_path):
    port = free_port()
    env = os.environ | {
        "PHOENIX_WORKING_DIR": str(tmp_path / "phoenix"),  # its SQLite default lives here
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(free_port()),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = (tmp_path / "phoenix.log").open("w")
    process = subprocess.Popen([PHOENIX, "serve"], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=2).close()
                break
            except (urllib.error.URLError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"phoenix serve did not start: {(tmp_path / 'phoenix.log')}")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def spans_of(url, count):
    """The project's spans, once Phoenix has stored ``count`` (it ingests in the background)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            spans = get_json(f"{url}/v1/projects/{PROJECT}/spans?limit=100")["data"]
        except urllib.error.HTTPError:  # the project appears with its first span
            spans = []
        if len(spans) >= count or time.monotonic() > deadline:
            return spans
        time.sleep(0.3)


def test_phoenix_receives_a_tool_chain_with_the_genai_attributes(phoenix, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", phoenix)
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")  # Phoenix takes traces only
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"openinference.project.name={PROJECT}")
    args = ["streamscope", "-m", "streamscope-sim", "-o", "speed", "0", "-T", "llm_time"]
    result = CliRunner().invoke(cli, [*args, "--otel", "--json", "What time is it?"])
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.stderr
    document = json.loads(result.stdout)
    call, answer = document["responses"]

    spans = spans_of(phoenix, 4)
    by_name = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)
    assert sorted(by_name) == [
        "chat streamscope-sim",
        "execute_tool llm_time",
        "run streamscope-sim",
    ]
    (run,) = by_name["run streamscope-sim"]
    chats = sorted(by_name["chat streamscope-sim"], key=lambda s: s["start_time"])
    (tool,) = by_name["execute_tool llm_time"]
    assert {s["context"]["trace_id"] for s in spans} == {run["context"]["trace_id"]}
    assert run["parent_id"] is None
    assert all(s["parent_id"] == run["context"]["span_id"] for s in [*chats, tool])
    assert [s["span_kind"] for s in chats] == ["LLM", "LLM"]  # Phoenix reads gen_ai.* spans so
    for span, response in zip(chats, (call, answer)):
        attributes = span["attributes"]
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.request.model"] == "streamscope-sim"
        assert attributes["gen_ai.usage.output_tokens"] == response["stats"]["usage_output_tokens"]
        assert attributes["streamscope.trace_id"] == response["trace_id"]
        assert attributes["streamscope.fragments.t_ms"] == [
            f["t_ms"] for f in response["fragments"]
        ]
    assert chats[1]["attributes"]["gen_ai.response.time_to_first_chunk"] == pytest.approx(
        answer["stats"]["ttft_ms"] / 1000
    )
    assert tool["attributes"]["gen_ai.tool.name"] == "llm_time"
