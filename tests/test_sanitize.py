"""Untrusted text (a provider's error body, model output, stored rows) reaches a terminal
only through one rule: every control, invisible format character and separator shown as a
visible stand-in. Data to a pipe or a file stays exact; JSON is escaped, so it is both."""

import csv
import html
import io
import json
import os
import pty
import re
import subprocess
import sys
import threading
import unicodedata
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from conftest import streaming_model
from llm.cli import cli

from llm_streamscope.views.sanitize import STAND_INS, json_text, terminal_line

LLM = str(os.path.join(os.path.dirname(sys.executable), "llm"))

HOSTILE = (
    "\x1b]0;pwned\x07"  # OSC 0: the window title
    "\x1b]52;c;cHduZWQ=\x07"  # OSC 52: a clipboard write
    "\x1b[2J\x07"  # clear the screen, ring the bell
    "\u202eevil"  # a right-to-left override
    "\u2028\u2029\ufeff\u200b"  # separators, BOM, zero-width space
    "\x9b31m\x08"  # 8-bit CSI, a backspace
)
MODEL_TEXT = (
    "Hi \x1b]8;;http://evil.example\x07link\x1b]8;;\x07 \x9b31m red \x08\x08 \u202eabc "
    "\u2028\u2029\ufeff\u200b\r end"
)
RAW = {chr(c) for c in STAND_INS} - {"\n"}
"""What must never reach a terminal as it is (a line's own newline ends it)."""


def raw_in(text):
    return sorted({f"U+{ord(c):04X}" for c in text if c in RAW})


def streamscope(*args, **kwargs):
    return CliRunner().invoke(cli, ["streamscope", *args], catch_exceptions=False, **kwargs)


class _ErrorBody(BaseHTTPRequestHandler):
    """Every POST answered 400 with a hostile error message, as a JSON error object."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        data = json.dumps({"error": {"message": HOSTILE, "type": "bad"}}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def hostile_provider(isolated_env):
    """An OpenAI-compatible provider on loopback whose every answer is a hostile error,
    reached through llm's own OpenAI client (extra-openai-models.yaml)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ErrorBody)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    (isolated_env / "extra-openai-models.yaml").write_text(
        "- model_id: hostile\n  model_name: hostile\n"
        f"  api_base: http://127.0.0.1:{server.server_address[1]}/v1\n"
    )
    yield "hostile"
    server.shutdown()
    server.server_close()


def test_a_providers_error_body_is_shown_by_the_rule(hostile_provider):
    result = streamscope("-m", hostile_provider, "--no-live", "--wire", "hi")
    assert result.exit_code == 1
    warning, error = result.stderr.splitlines()
    assert warning.startswith("Warning: --wire: an error response, not a stream: ␛]0;pwned␇")
    assert error.startswith("Error: stream error: Error code: 400 - ␛]0;pwned␇␛]52;c;")
    assert "␛[2J␇<U+202E>evil" in error and "<U+FEFF><U+200B>\\x9b31m␈" in error
    assert raw_in(result.stderr) == [] and raw_in(result.stdout) == []


def test_compare_progress_and_errors_are_shown_by_the_rule(hostile_provider):
    result = streamscope("compare", "-m", hostile_provider, "-N", "1", "hi")
    assert result.exit_code == 1
    progress, error = result.stderr.splitlines()
    assert progress.startswith("hostile: run 1/1: error") and "␛]0;pwned␇" in progress
    assert error.startswith("Error: hostile run 1: stream error:") and "<U+202E>evil" in error
    assert raw_in(result.stderr) == []


def test_an_error_click_prints_is_shown_by_the_rule(isolated_env):
    """click's own ``Error:`` line, whatever a command quotes in it."""
    result = streamscope("show", "--database", f"/no/such/\x1b]0;x\x07{HOSTILE}.db", "x")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert "␛]0;x␇" in result.stderr and raw_in(result.stderr) == []


@pytest.fixture
def logged_hostile_text(register_models, isolated_env):
    """A run of a model whose answer is full of controls, logged."""
    pieces = MODEL_TEXT.split(" ")
    chunks = [p + " " for p in pieces[:-1]] + [pieces[-1]]
    register_models(streaming_model("sly", *chunks))
    result = streamscope("-m", "sly", "hi")
    assert result.exit_code == 0, result.output
    return result


def test_the_views_show_every_control_and_invisible_character(logged_hostile_text):
    # To a pipe the answer itself is data, exact as llm prompt writes it; the views
    # after it show every control by the rule.
    answer, rule, out = logged_hostile_text.stdout.partition("\n─")
    assert answer.split("\n")[0] == MODEL_TEXT and rule
    assert raw_in(out) == []
    assert "<U+2028>" in out and "<U+2029>" in out and "<U+FEFF>" in out and "<U+200B>" in out
    assert "\\x9b" in out and "␛" in out and "␇" in out and "␈" in out


def test_json_and_jsonl_are_escaped_and_exact(logged_hostile_text):
    for args in (("show", "--latest", "--json"), ("export", "--latest", "-F", "json")):
        out = streamscope(*args).stdout
        assert raw_in(out.replace("\n", "")) == []
        document = json.loads(out)
        fragments = document["responses"][0]["fragments"]
        assert "".join(f["text"] for f in fragments) == MODEL_TEXT
    out = streamscope("export", "--latest", "-F", "jsonl").stdout
    assert raw_in(out.replace("\n", "")) == []
    assert "".join(json.loads(line)["text"] for line in out.splitlines()) == MODEL_TEXT


def test_csv_is_exact_in_a_pipe_and_shown_by_the_rule_on_a_terminal(logged_hostile_text):
    piped = streamscope("export", "--latest", "-F", "csv").stdout
    assert "".join(row["text"] for row in csv.DictReader(io.StringIO(piped))) == MODEL_TEXT

    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [LLM, "streamscope", "export", "--latest", "-F", "csv"],
        stdout=terminal,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "LLM_LOAD_PLUGINS": "llm-streamscope"},  # no other plugin's start-up
    )
    os.close(terminal)
    seen = bytearray()
    while True:
        try:
            data = os.read(controller, 65536)
        except OSError:  # EIO: the program closed the terminal
            break
        if not data:
            break
        seen += data
    assert process.wait(60) == 0, process.stderr.read()
    os.close(controller)
    # csv's line ends (\r\n), to which the terminal adds its own \r
    shown = seen.decode().replace("\r\r\n", "\n")
    assert raw_in(shown) == []
    assert "␛]8;;http://evil.example␇link" in shown and "\\x9b31m" in shown and "␈␈" in shown


def test_the_html_report_shows_controls_as_stand_ins(register_models, tmp_path):
    register_models(streaming_model("sly", "a\x1b[2J\x07b\r", "\x00c\u202ed <b>"))
    report = tmp_path / "report.html"
    assert streamscope("-m", "sly", "--html", str(report), "-n", "hi").exit_code == 0
    page = report.read_text()
    assert raw_in(page.replace("\n", "")) == []
    shown = html.unescape(re.sub(r"<[^>]*>", "", page))  # the text of the token spans
    assert "a␛[2J␇b␍␀c<U+202E>d <b>" in shown


def test_the_rule_covers_every_control_format_and_separator_character():
    kept = {0x200C, 0x200D}  # zero-width (non-)joiners: emoji sequences, scripts
    kept |= {0x0600, 0x0601, 0x0602, 0x0603, 0x0604, 0x0605, 0x06DD, 0x070F}
    kept |= {0x0890, 0x0891, 0x08E2, 0x110BD, 0x110CD}  # prepended marks: visible signs
    for c in range(0x110000):
        if unicodedata.category(chr(c)) in ("Cc", "Cf", "Zl", "Zp", "Cs") and c not in kept:
            assert c in STAND_INS, f"U+{c:04X}"
    assert terminal_line("one\ntwo\r") == "one␊two␍"


def test_json_text_escapes_losslessly_over_every_code_point():
    # Lone surrogates too, each on its own: a high one just before a low one is a
    # pair in any JSON (one character), which no escape can tell apart.
    every = "".join(chr(c) + ("." if 0xD800 <= c < 0xE000 else "") for c in range(0x110000))
    text = json_text({"every": every})
    assert raw_in(text) == []
    assert json.loads(text)["every"] == every


def test_the_live_views_status_line_shows_the_model_id_by_the_rule():
    from rich.console import Console

    from llm_streamscope.views.liveview import LiveScreen

    screen = LiveScreen(None, stall_ms=50)
    screen.begin("sly\x1b]0;pwned\x07\u202e", start_ns=0)
    screen.add([("text", "ab", 1_000_000)], origin_ns=0)
    console = Console(width=80, color_system=None, file=io.StringIO())
    with console.capture() as out:
        console.print(screen.frame(console, now_ns=2_000_000, height=6))
    shown = out.get()
    assert "sly␛]0;pwned␇<U+202E>" in shown and raw_in(shown.replace("\n", "")) == []
