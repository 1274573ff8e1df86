"""--otel and export --otel: the real llm CLI, the simulator over loopback HTTP, and a
loopback OTLP/HTTP collector that decodes what the official exporter sent with the
official ``opentelemetry-proto`` messages."""

import datetime
import json
import socket
import time

import pytest
from click.testing import CliRunner
from llm.cli import cli

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
pytest.importorskip("opentelemetry.proto")

from otlp_receiver import Receiver, attributes

FAST = ("-m", "streamscope-sim", "-o", "speed", "0")
CLIENT, INTERNAL = 3, 1  # the OTLP span kinds
STATUS_ERROR = 2


def streamscope(*args, env=None):
    return CliRunner().invoke(cli, ["streamscope", *args], env=env, catch_exceptions=False)


@pytest.fixture
def collector(monkeypatch):
    with Receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
        yield receiver


def shown(*selector):
    """The stored run's ``show --json`` document."""
    result = streamscope("show", "--json", *selector)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def epoch_ns(iso):
    moment = datetime.datetime.fromisoformat(iso)
    return (
        (moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc))
        // (datetime.timedelta(microseconds=1))
        * 1000
    )


def leaves(prefix, value):
    """Every leaf of a JSON value, by dotted path (None left out, as the spans do)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(f"{prefix}.{key}", item)
    elif value is not None:
        yield prefix, value


def test_a_run_is_one_client_span_with_its_trace_whole(collector):
    result = streamscope(
        *FAST, "-o", "seed", "2", "-o", "max_tokens", "12", "--otel", "Explain SSE"
    )
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.stderr
    document = shown("--latest")
    (response,) = document["responses"]
    stats, fragments = response["stats"], response["fragments"]
    ((span, resource),) = collector.spans()
    assert resource["service.name"] == "llm-streamscope"
    assert span.name == "chat streamscope-sim" and span.kind == CLIENT
    assert span.parent_span_id == b""
    assert span.status.code != STATUS_ERROR
    # The run id (a ULID) is the trace id: one finds the other.
    from ulid import ULID

    assert span.trace_id == ULID.from_str(document["run_id"].upper()).bytes
    # From the request leaving (started + setup) to the stream's end, on the wall clock.
    start = epoch_ns(response["started_utc"]) + round(stats["setup_ms"] * 1e6)
    assert abs(span.start_time_unix_nano - start) <= 1
    wall_ns = document["totals"]["wall_ms"] * 1e6
    assert abs(span.end_time_unix_nano - span.start_time_unix_nano - wall_ns) <= 1

    got = attributes(span.attributes)
    # The GenAI conventions' attributes
    assert got["gen_ai.operation.name"] == "chat"
    assert got["gen_ai.provider.name"] == "streamscope.sim"
    assert got["gen_ai.request.model"] == got["gen_ai.response.model"] == "streamscope-sim"
    assert got["gen_ai.response.id"].startswith("chatcmpl-")
    assert got["gen_ai.response.finish_reasons"] == ["length"]
    assert got["gen_ai.request.max_tokens"] == 12 and got["gen_ai.request.seed"] == 2
    assert got["gen_ai.usage.input_tokens"] == stats["usage_input_tokens"]
    assert got["gen_ai.usage.output_tokens"] == stats["usage_output_tokens"] == 12
    assert got["gen_ai.response.time_to_first_chunk"] == pytest.approx(
        fragments[0]["t_ms"] / 1000, abs=1e-9
    )
    # Every figure of the stored trace's document, under streamscope.*
    for path, value in leaves("streamscope", stats):
        assert got[path] == pytest.approx(value), path
    for key in ("trace_id", "turn_id", "run_id", "run_index", "status", "encoding"):
        assert got[f"streamscope.{key}"] == response[key]
    assert got["streamscope.encoding_exact"] is True and got["streamscope.clock"] == "llm"
    # The whole arrival timeline, fragment by fragment
    for key in ("kind", "t_ms", "byte_start", "byte_end", "token_start", "token_end"):
        assert got[f"streamscope.fragments.{key}"] == [f[key] for f in fragments], key
    for key in ("starts_mid_token", "ends_mid_token"):
        assert got[f"streamscope.fragments.{key}"] == [f[key] for f in fragments], key
    # No content unless asked for: neither prompt nor answer leaves the machine.
    answer = "".join(f["text"] for f in fragments)
    assert not {"gen_ai.input.messages", "gen_ai.output.messages"} & set(got)
    assert "streamscope.fragments.text" not in got
    sent = json.dumps({k: v for k, v in got.items()}, ensure_ascii=False)
    assert "Explain SSE" not in sent and answer not in sent

    # The four GenAI client metrics, in seconds, one time_per_output_chunk point per
    # chunk after the first.
    metrics = collector.metrics()
    (duration,) = metrics["gen_ai.client.operation.duration"]
    assert duration[0].unit == "s" and duration[1].count == 1
    assert duration[1].sum == pytest.approx(document["totals"]["wall_ms"] / 1000)
    ((_, first),) = metrics["gen_ai.client.operation.time_to_first_chunk"]
    assert first.sum == pytest.approx(fragments[0]["t_ms"] / 1000)
    ((_, per_chunk),) = metrics["gen_ai.client.operation.time_per_output_chunk"]
    assert per_chunk.count == len(fragments) - 1 == stats["chunks"] - 1
    assert per_chunk.sum == pytest.approx((fragments[-1]["t_ms"] - fragments[0]["t_ms"]) / 1000)
    usage = {
        attributes(p.attributes)["gen_ai.token.type"]: p
        for _, p in metrics["gen_ai.client.token.usage"]
    }
    assert usage["output"].sum == 12 and usage["input"].sum == stats["usage_input_tokens"]
    point_attributes = attributes(per_chunk.attributes)
    assert point_attributes["gen_ai.request.model"] == "streamscope-sim"
    assert point_attributes["gen_ai.provider.name"] == "streamscope.sim"


def test_content_only_when_opted_in_and_never_cut(collector, monkeypatch):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    # The SDK's limits from the environment would keep 5 attributes and 8 characters.
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "5")
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "8")
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "8")
    result = streamscope(*FAST, "-s", "Be brief", "--otel", "Explain SSE in full")
    assert result.exit_code == 0, result.output
    (response,) = shown("--latest")["responses"]
    ((span, _),) = collector.spans()
    got = attributes(span.attributes)
    texts = [f["text"] for f in response["fragments"]]
    assert json.loads(got["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Explain SSE in full"}]}
    ]
    assert json.loads(got["gen_ai.system_instructions"]) == [
        {"type": "text", "content": "Be brief"}
    ]
    (output,) = json.loads(got["gen_ai.output.messages"])
    assert output["role"] == "assistant" and output["finish_reason"] == "stop"
    assert output["parts"] == [{"type": "text", "content": "".join(texts)}]
    assert got["streamscope.fragments.text"] == texts
    assert len(got) > 60  # every attribute arrived, not 5


def test_a_tool_chain_is_one_trace(collector):
    result = streamscope(*FAST, "-T", "llm_time", "--otel", "What time is it?")
    assert result.exit_code == 0, result.output
    document = shown("--latest")
    call, answer = document["responses"]
    spans = {span.name: span for span, _ in collector.spans()}
    assert set(spans) == {
        "run streamscope-sim",
        "chat streamscope-sim",
        "execute_tool llm_time",
    }
    received = [span for span, _ in collector.spans()]
    assert len(received) == 4 and len({s.trace_id for s in received}) == 1
    run = spans["run streamscope-sim"]
    chats = sorted(
        (s for s in received if s.name.startswith("chat ")), key=lambda s: s.start_time_unix_nano
    )
    tool = spans["execute_tool llm_time"]
    assert run.parent_span_id == b"" and run.kind == INTERNAL
    assert all(s.parent_span_id == run.span_id for s in [*chats, tool])
    assert [attributes(s.attributes)["streamscope.trace_id"] for s in chats] == [
        call["trace_id"],
        answer["trace_id"],
    ]
    tool_attributes = attributes(tool.attributes)
    assert tool_attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool_attributes["gen_ai.tool.name"] == "llm_time"
    call_ids = {f["tool_call_id"] for f in call["fragments"] if f["tool_call_id"]}
    assert tool_attributes["gen_ai.tool.call.id"] in call_ids
    assert "gen_ai.tool.call.arguments" not in tool_attributes  # content is opt-in
    # The tool ran between the two responses, on the run's one clock.
    between_ns = document["totals"]["between_ms"][0] * 1e6
    assert tool.start_time_unix_nano == chats[0].end_time_unix_nano
    assert abs(tool.end_time_unix_nano - tool.start_time_unix_nano - between_ns) <= 1
    assert tool.end_time_unix_nano <= chats[1].start_time_unix_nano
    assert run.start_time_unix_nano <= chats[0].start_time_unix_nano
    assert run.end_time_unix_nano == chats[1].end_time_unix_nano
    assert attributes(chats[0].attributes)["gen_ai.response.finish_reasons"] == ["tool_calls"]


def test_a_failed_stream_is_an_error_span(collector):
    result = streamscope(*FAST, "-o", "drop_after", "3", "--otel", "hi")
    assert result.exit_code == 1
    (response,) = shown("--latest")["responses"]
    ((span, _),) = collector.spans()
    assert span.status.code == STATUS_ERROR
    assert span.status.message == response["error"] and response["error"]
    got = attributes(span.attributes)
    assert got["error.type"] == response["status"] == "error"
    assert len(got["streamscope.fragments.t_ms"]) == len(response["fragments"]) == 3


def test_export_otel_sends_logged_runs_as_they_were_sent_live(collector, monkeypatch):
    assert streamscope(*FAST, "-o", "max_tokens", "4", "--otel", "one").exit_code == 0
    live = {span.span_id: span for span, _ in collector.spans()}
    collector.requests.clear()
    assert streamscope(*FAST, "-o", "max_tokens", "4", "two").exit_code == 0

    result = streamscope("export", "--otel", "--all")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Sent 2 traces (2 spans) to {collector.endpoint}/v1/traces\n"
    assert "/v1/metrics" not in [path for path, _ in collector.requests]  # spans only
    spans = [span for span, _ in collector.spans()]
    # The same run exported again is the same trace: same ids, same times, same figures.
    (again,) = [s for s in spans if s.span_id in live]
    original = live[again.span_id]
    assert again.trace_id == original.trace_id
    assert again.start_time_unix_nano == original.start_time_unix_nano
    assert again.end_time_unix_nano == original.end_time_unix_nano
    assert attributes(again.attributes) == attributes(original.attributes)

    collector.requests.clear()
    result = streamscope("export", "--otel", "--latest")
    assert result.stdout.startswith("Sent 1 trace (1 span) to ")
    (span,) = [s for s, _ in collector.spans()]
    assert (
        attributes(span.attributes)["streamscope.trace_id"]
        == shown("--latest")["responses"][0]["trace_id"]
    )
    tomorrow = (datetime.date.today() + datetime.timedelta(days=2)).isoformat()
    result = streamscope("export", "--otel", "--all", "--since", tomorrow)
    assert result.exit_code == 0 and result.stdout.startswith("Sent 0 traces (0 spans)")


@pytest.mark.parametrize(
    "args, message",
    [
        (("--otel",), "--otel sends a TRACE_ID, the --latest run or --all runs"),
        (
            ("--otel", "--all", "--latest"),
            "--otel sends a TRACE_ID, the --latest run or --all runs",
        ),
        (("--otel", "--latest", "--since", "2026-01-01"), "--since goes with --all"),
        (("--otel", "--latest", "-F", "csv"), "--otel sends the runs: it takes no --format"),
        (("--all",), "--all and --since select the runs --otel sends"),
    ],
)
def test_export_otel_usage_errors(collector, args, message):
    assert streamscope(*FAST, "-o", "max_tokens", "2", "hi").exit_code == 0
    result = streamscope("export", *args)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {message}")
    assert collector.requests == []


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_dead_collector_costs_one_warning_and_the_trace_stays(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "not-a-key-value")  # the SDK warns of it
    result = streamscope(*FAST, "-o", "max_tokens", "3", "--otel", "hi")
    assert result.exit_code == 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Warning: --otel could not send to http://")
    assert "export --otel" in lines[0]
    assert len(shown("--latest")["responses"]) == 1  # logged, to send later
    # export waits as the SDK is told to (retrying a refused connection until then)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0.5")
    result = streamscope("export", "--otel", "--latest")
    assert result.exit_code == 1 and result.stderr.startswith("Error: Could not send to ")


def test_a_slow_collector_is_left_behind_after_a_second(monkeypatch):
    with Receiver(delay_s=5) as slow:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", slow.endpoint)
        started = time.monotonic()
        result = streamscope(*FAST, "-o", "max_tokens", "3", "--otel", "hi")
        waited = time.monotonic() - started
    assert result.exit_code == 0
    (line,) = result.stderr.splitlines()
    # Whichever gives up first at 1 s says so: the exporter's own timeout, or the wait.
    assert line.startswith(f"Warning: --otel could not send to {slow.endpoint}/v1/traces: ")
    assert "did not answer in time" in line or "did not answer within 1 s" in line
    assert waited < 5  # not the collector's 5 s


def test_a_backend_without_metrics_gets_the_traces_and_one_warning(monkeypatch):
    with Receiver(refuse=("/v1/metrics",)) as traces_only:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", traces_only.endpoint)
        result = streamscope(*FAST, "-o", "max_tokens", "3", "--otel", "hi")
        assert result.exit_code == 0
        (line,) = result.stderr.splitlines()
        assert line.startswith(
            f"Warning: --otel sent the traces, but not the metrics to {traces_only.endpoint}"
            "/v1/metrics: "
        )
        assert "405" in line and "OTEL_METRICS_EXPORTER=none" in line
        assert len(traces_only.spans()) == 1
        # The SDK's own switch: no metrics asked for, none sent, nothing to warn about.
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        result = streamscope(*FAST, "-o", "max_tokens", "3", "--otel", "hi")
        assert result.exit_code == 0 and result.stderr == ""
        assert len(traces_only.spans()) == 2


def test_ctrl_c_while_sending_ends_the_run_as_ctrl_c_does(isolated_env):
    import os
    import signal
    import subprocess
    import sys

    with Receiver(delay_s=5) as slow:
        env = os.environ | {"OTEL_EXPORTER_OTLP_ENDPOINT": slow.endpoint}
        command = [sys.executable, "-m", "llm", "streamscope", *FAST, "--otel", "hi"]
        process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert slow.arrived.wait(60), process.communicate()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert stderr.splitlines() == ["Warning: --otel stopped by Ctrl-C; the traces stay in logs.db"]
    assert streamscope("logs").stdout.count("complete") == 1  # logged whole


def test_without_the_sdk_one_line_says_how_to_install(monkeypatch, isolated_env):
    from llm_streamscope import otlp

    monkeypatch.setattr(otlp, "REQUIRED_MODULES", ("opentelemetry.not_installed_here",))
    for args in ((*FAST, "--otel", "hi"), ("export", "--otel", "--all")):
        result = streamscope(*args)
        assert result.exit_code == 1
        assert result.stderr == (
            "Error: --otel needs the OpenTelemetry SDK and its OTLP/HTTP exporter: "
            "llm install 'llm-streamscope[otel]'\n"
        )
    assert not (isolated_env / "logs.db").exists() or shown_nothing()


def test_another_protocol_is_refused_before_the_run(monkeypatch, isolated_env):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    result = streamscope(*FAST, "--otel", "hi")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: --otel sends OTLP over HTTP (http/protobuf), not OTEL_EXPORTER_OTLP_PROTOCOL=grpc\n"
    )
    assert streamscope("logs").stdout == ""


def shown_nothing():
    return streamscope("logs").stdout == ""


def test_compare_sends_every_run(collector):
    result = streamscope(
        "compare", "-o", "speed", "0", "-o", "max_tokens", "3", "-m", "streamscope-sim", "-N",
        "2", "--otel", "hi",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    spans = [span for span, _ in collector.spans()]
    assert len(spans) == 2 and len({s.trace_id for s in spans}) == 2
    assert all(s.name == "chat streamscope-sim" for s in spans)
    per_chunk = collector.metrics()["gen_ai.client.operation.time_per_output_chunk"]
    assert sum(point.count for _, point in per_chunk) == 2 * (3 - 1)


def test_the_worked_examples_in_the_docstrings_hold():
    import doctest

    from llm_streamscope import otel, otlp

    for module in (otel, otlp):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_export_of_one_trace_of_a_chain_sends_its_whole_run(collector):
    assert streamscope(*FAST, "-T", "llm_time", "What time is it?").exit_code == 0
    second = shown("--latest")["responses"][1]["trace_id"]
    result = streamscope("export", "--otel", second)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Sent 1 trace (4 spans) to ")
    spans = [span for span, _ in collector.spans()]
    assert len({s.span_id for s in spans}) == 4


def test_keys_never_leave_even_as_options(isolated_env):
    import dataclasses

    import sqlite_utils

    from llm_streamscope.logged import load_run
    from llm_streamscope.otel import LlmFacts, plan_run

    assert streamscope(*FAST, "-o", "max_tokens", "2", "hi").exit_code == 0
    (response,) = load_run(sqlite_utils.Database(isolated_env / "logs.db"), None, True).responses
    options = {"api_key": "sk-secret-1", "X-Auth-Token": "t0k3n", "temperature": 0.5}
    trace = dataclasses.replace(response.trace, options=options)
    plan = plan_run([(trace, response.alignment, response.stats)], {trace.id: LlmFacts()}, True)
    (span,) = plan.spans
    assert span.attributes["gen_ai.request.temperature"] == 0.5
    assert json.loads(span.attributes["streamscope.options"]) == {"temperature": 0.5}
    assert "sk-secret-1" not in repr(plan) and "t0k3n" not in repr(plan)


def test_with_the_wire_the_server_and_the_wire_figures_but_never_headers(collector):
    result = streamscope(*FAST, "-o", "max_tokens", "5", "--wire", "--otel", "hi")
    assert result.exit_code == 0, result.output
    (response,) = shown("--latest")["responses"]
    ((span, _),) = collector.spans()
    got = attributes(span.attributes)
    url = response["wire"]["url"]
    assert url.startswith(f"http://{got['server.address']}:{got['server.port']}/")
    assert got["streamscope.clock"] == response["stats"]["clock"] == "wire"
    for path, value in leaves("streamscope.wire", response["stats"]["wire"]):
        assert got[path] == pytest.approx(value), path
    assert got["streamscope.fragments.wire_t_ms"] == [f["wire_t_ms"] for f in response["fragments"]]
    assert got["gen_ai.response.time_to_first_chunk"] == pytest.approx(
        response["fragments"][0]["wire_t_ms"] / 1000
    )
    # The response's headers are in the stored wire record, and stay there.
    assert "content-type" in json.dumps(response["wire"]["headers"]).lower()
    sent = json.dumps(got).lower()
    assert "content-type" not in sent and "authorization" not in sent


def test_an_untimed_logged_trace_is_sent_without_times(collector, tmp_path):
    body = tmp_path / "body.sse"
    chunks = [
        {
            "id": "c1",
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "delta": {"content": t}}],
        }
        for t in ("Hello", " world")
    ]
    body.write_text("".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n")
    assert streamscope("inspect", str(body), "--log").exit_code == 0
    result = streamscope("export", "--otel", "--latest")
    assert result.exit_code == 0, result.output
    (response,) = shown("--latest")["responses"]
    ((span, _),) = collector.spans()
    # Nothing says when the fragments arrived: a span of no length at the trace's start.
    assert span.start_time_unix_nano == span.end_time_unix_nano
    assert span.start_time_unix_nano == epoch_ns(response["started_utc"])
    got = attributes(span.attributes)
    assert got["streamscope.timed"] is False
    assert "streamscope.fragments.t_ms" not in got
    assert "gen_ai.response.time_to_first_chunk" not in got
    assert got["gen_ai.response.model"] == "gpt-4o-2024-08-06"  # as the wire named it
    assert got["streamscope.fragments.kind"] == ["text", "text"]
