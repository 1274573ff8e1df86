"""A key a provider echoes in its error is never stored."""

import http.server
import json
import threading

import pytest
import sqlite_utils
from click.testing import CliRunner
from llm.cli import cli

SECRET = "sk-ant-echoed-by-the-provider-9f2c"
OWN_KEY = "plain-own-key-without-a-known-shape-51d7"


class EchoesTheKey(http.server.BaseHTTPRequestHandler):
    """Answers every request 401, its error quoting the key it was sent, as providers do."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        key = self.headers.get("x-api-key")
        body = json.dumps(
            {
                "type": "error",
                "error": {
                    "type": "authentication_error",
                    "message": f"Incorrect API key provided: {key}",
                },
            }
        ).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def echoing_server(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoesTheKey)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{server.server_port}")
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("key", [SECRET, OWN_KEY])
def test_a_key_echoed_in_an_error_is_not_stored(isolated_env, echoing_server, monkeypatch, key):
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    args = ["streamscope", "-m", "claude-haiku-4.5", "--json", "hi"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 1
    (doc,) = json.loads(result.stdout)["responses"]
    (row,) = sqlite_utils.Database(isolated_env / "logs.db").query(
        "select status, error from streamscope_traces"
    )
    assert row["status"] == "error" and "Incorrect API key provided: [redacted]" in row["error"]
    assert key.encode() not in (isolated_env / "logs.db").read_bytes()
    # nor in the run's own document, nor its error line
    assert key not in doc["error"] and key not in result.stderr


def test_a_key_in_a_captured_streams_error_event_is_not_stored(isolated_env, tmp_path):
    chunk = {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}
    error = {"error": {"message": f"Incorrect API key provided: {SECRET}", "type": "auth"}}
    body = tmp_path / "capture.sse"
    body.write_text(f"data: {json.dumps(chunk)}\n\ndata: {json.dumps(error)}\n\n")
    args = ["streamscope", "inspect", str(body), "--log", "--json"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 1, result.output
    db = sqlite_utils.Database(isolated_env / "logs.db")
    ((trace_error, wire_error),) = db.execute(
        "select t.error, w.error from streamscope_traces t "
        "join streamscope_wire w on w.trace_id = t.id"
    ).fetchall()
    assert "[redacted]" in trace_error and "[redacted]" in wire_error
    # The body's own bytes are kept exactly (the wire record is what was received).
    assert db.execute("select count(*) from streamscope_wire_reads").fetchone()[0] >= 1
