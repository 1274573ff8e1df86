"""`--svg`, `--timeline` and `--html`: the views drawn, the gaps drawn, and the HTML report
(parsed, and rendered in headless Chromium where one is installed)."""

import html
import http.client
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib
from collections import Counter
from html.parser import HTMLParser
from itertools import accumulate, islice, pairwise

import pytest
from click.testing import CliRunner
from conftest import streaming_model
from llm.cli import cli
from rich.cells import cell_len, set_cell_size

from llm_streamscope.sim.profiles import get_profile
from llm_streamscope.sim.server import SimServer

SVG = "{http://www.w3.org/2000/svg}"


FAST = ("-m", "streamscope-sim", "-o", "speed", "0")


def run(*args):
    return CliRunner().invoke(cli, ["streamscope", *args], catch_exceptions=False)


def svg_text(path):
    """The SVG's root, and its text as drawn (rich puts non-breaking spaces between words)."""
    root = ET.parse(path).getroot()
    text = "".join(node.text or "" for node in root.iter(f"{SVG}text")).replace("\xa0", " ")
    return root, text


def test_run_and_show_draw_the_views_in_colour(tmp_path, isolated_env):
    drawn = tmp_path / "run.svg"
    result = run(
        *FAST,
        "-o",
        "chunks",
        "8",
        "--wire",
        "--svg",
        str(drawn),
        "hi",
    )
    assert result.exit_code == 0, result.output
    assert "─ stats ─" in result.stdout  # the views still go to stdout as well
    root, text = svg_text(drawn)
    assert root.tag == f"{SVG}svg"
    for heading in ("alignment", "stats", "carried no model output", "TTFT", "tokens/chunk"):
        assert heading in text
    # in colour (the alternating token colours among them), though stdout is not a terminal
    assert len(set(re.findall(r"fill: (#[0-9a-f]{6})", drawn.read_text()))) >= 4
    shown = tmp_path / "show.svg"
    assert run("show", "--latest", "--svg", str(shown)).exit_code == 0
    assert "alignment" in svg_text(shown)[1] and "carried no model output" not in svg_text(shown)[1]


def test_model_text_is_drawn_never_run(tmp_path, register_models):
    register_models(
        streaming_model("sly", "<script>alert(1)</script>", " & [bold]not markup[/bold]")
    )
    drawn = tmp_path / "sly.svg"
    result = run("-m", "sly", "--svg", str(drawn), "-n", "hi")
    assert result.exit_code == 0, result.output
    root, text = svg_text(drawn)
    assert not [node for node in root.iter() if node.tag.endswith("script")]
    assert "<script>alert(1)</script>" in text.replace("│", "").replace("¦", "")
    assert "[bold]not markup[/bold]" in text.replace("│", "").replace("¦", "")


def test_a_file_that_cannot_be_written_is_one_error(tmp_path):
    result = run(
        *FAST,
        "-o",
        "chunks",
        "3",
        "--svg",
        str(tmp_path / "missing" / "v.svg"),
        "-n",
        "hi",
    )
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("Error: Cannot write")


def test_timeline_on_run_show_and_replay(isolated_env):
    result = run(*FAST, "-o", "chunks", "12", "--timeline", "hi")
    assert result.exit_code == 0, result.output
    assert "─ timeline ─" in result.stdout and "  tokens " in result.stdout
    for command in (("show", "--latest"), ("replay", "--latest", "--speed", "0")):
        shown = run(*command, "--timeline")
        assert shown.exit_code == 0, shown.output
        timeline = shown.stdout.split("─ timeline ─")[1]
        assert timeline.splitlines()[1:] == result.stdout.split("─ timeline ─")[1].splitlines()[1:]
    assert "timeline" not in run("show", "--latest", "--json", "--timeline").stdout


def test_timeline_by_time_on_run_and_show(isolated_env):
    result = run(*FAST, "-o", "chunks", "12", "--timeline-by-time", "hi")
    assert result.exit_code == 0, result.output
    timeline = result.stdout.split("─ timeline ─")[1]
    assert "timeline by time: 12 chunks in" in " ".join(timeline.split())
    assert "    TTFT " in timeline
    shown = run("show", "--latest", "--timeline", "--timeline-by-time")  # the last one wins
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.split("─ timeline ─")[1].splitlines()[1:] == timeline.splitlines()[1:]


class Tags(HTMLParser):
    """Every start tag of an HTML document, with its attributes."""

    def __init__(self, document):
        super().__init__()
        self.tags = []
        self.feed(document)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def count(self, tag, css=None):
        return sum(t == tag and (css is None or a.get("class") == css) for t, a in self.tags)


def test_html_report_is_one_offline_file_of_tokens_chunks_charts_and_stats(tmp_path):
    report = tmp_path / "r.html"
    result = run(*FAST, "-o", "chunks", "20", "--json", "--html", str(report), "hi")
    assert result.exit_code == 0, result.output
    (doc,) = json.loads(result.stdout)["responses"]
    tags = Tags(report.read_text())
    tokens = doc["stats"]["tokens"]
    assert (
        tags.count("span", "t0") + tags.count("span", "t1") + tags.count("span", "split") == tokens
    )
    assert tags.count("span", "cb") == doc["stats"]["chunks"] - 1  # a bar between two chunks
    assert tags.count("svg", "chart") == 3
    # offline: nothing is fetched from anywhere, nothing runs
    assert not [a for _, a in tags.tags if {"src", "href"} & set(a)]
    assert tags.count("script") == tags.count("link") == 0
    titles = [a["title"] for t, a in tags.tags if t == "span" and "title" in a]
    assert titles[0].startswith("token 0 · id ") and "complete at" in titles[0]
    shown = tmp_path / "shown.html"
    assert run("show", "--latest", "--html", str(shown)).exit_code == 0  # the same from logs.db
    assert Tags(shown.read_text()).count("span", "cb") == doc["stats"]["chunks"] - 1


def test_html_report_escapes_model_text(tmp_path, register_models):
    register_models(streaming_model("sly", "<script>alert(1)</script>", " & <b>bold</b>"))
    report = tmp_path / "sly.html"
    assert run("-m", "sly", "--html", str(report), "-n", "hi").exit_code == 0
    document = report.read_text()
    assert Tags(document).count("script") == 0 and Tags(document).count("b") == 0
    # shown as text: the tokens' text, joined, is the answer exactly
    shown = re.search(r'<div class="text">(.*?)</div>', document, re.S).group(1)
    assert html.unescape(re.sub(r"<[^>]*>", "", shown)) == "<script>alert(1)</script> & <b>bold</b>"


# -- the HTML report in a real browser ---------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def browse(page, workdir, *action):
    """Open ``page`` in headless Chromium doing ``action`` (``--screenshot=FILE``,
    ``--dump-dom``): its standard output, and the URLs the page asked the network for.

    Those come from Chromium's net log: a request of the page has the page's
    origin (``"null"`` for a file) as initiator; the browser's own background
    requests (update checks, the clock, accounts), which no flag stops, have
    ``"not an origin"``. Nothing leaves the machine: every request goes to a proxy
    port that refuses connections.
    """
    if CHROMIUM is None:
        pytest.skip("no chromium binary to render the HTML report in (apt-get install chromium)")
    workdir.mkdir()
    netlog = workdir / "net.json"
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        done = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={workdir / 'profile'}",
                f"--proxy-server=http://127.0.0.1:{refusing.getsockname()[1]}",
                "--proxy-bypass-list=<-loopback>",
                f"--log-net-log={netlog}",
                *action,
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HOME": str(workdir)},
        )
    assert done.returncode == 0, done.stderr[-3000:]
    log = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    fetched = [
        event["params"]["url"]
        for event in log["events"]
        if event["type"] == start_job
        and "url" in event.get("params", {})
        and event["params"].get("initiator") != "not an origin"
    ]
    return done.stdout, fetched


def png_rows(data):
    """The rows of an 8-bit RGB(A) PNG, as RGB bytes: (width, height, rows).

    Pure Python (no imaging library here): rows filtered None, Sub or Up (most of a
    screenshot) are undone a whole row at a time, as big integers; Average and
    Paeth byte by byte.
    """
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", data[pos + 8 : pos + 8 + length])
            width, height, depth, colour, _, _, interlaced = header
            assert depth == 8 and colour in (2, 6) and not interlaced, header
        elif kind == b"IDAT":
            idat.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    low = int.from_bytes(b"\x7f" * stride, "big")
    high = int.from_bytes(b"\x80" * stride, "big")

    def add(x, y):
        """Byte by byte, modulo 256: the low seven bits summed, the top bits put back."""
        return ((x & low) + (y & low)) ^ ((x ^ y) & high)

    rows, above = [], 0
    for y in range(height):
        start = y * (stride + 1) + 1
        kind, line = raw[start - 1], raw[start : start + stride]
        if kind in (0, 1, 2):
            value = int.from_bytes(line, "big")
            if kind == 1:  # Sub: a running sum per channel, in doubling steps
                shift = 8 * bpp
                while shift < 8 * stride:
                    value = add(value, value >> shift)
                    shift *= 2
            elif kind == 2:  # Up
                value = add(value, above)
            row = value.to_bytes(stride, "big")
        else:
            up = above.to_bytes(stride, "big")
            out = bytearray(stride)
            for channel in range(bpp):
                left = up_left = 0
                values = []
                for x, b in zip(line[channel::bpp], up[channel::bpp]):
                    if kind == 3:  # Average
                        left = (x + (left + b) // 2) & 255
                    else:  # Paeth
                        p = left + b - up_left
                        pa, pb, pc = abs(p - left), abs(p - b), abs(p - up_left)
                        guess = left if pa <= pb and pa <= pc else b if pb <= pc else up_left
                        left, up_left = (x + guess) & 255, b
                    values.append(left)
                out[channel::bpp] = bytes(values)
            row = bytes(out)
        rows.append(row)
        above = int.from_bytes(row, "big")
    if bpp == 4:
        rows = [bytes(b for i, b in enumerate(row) if i % 4 != 3) for row in rows]
    return width, height, rows


def test_the_html_report_renders_in_chromium_to_a_picture_fetching_nothing(tmp_path):
    report = tmp_path / "report.html"
    sim = ("-m", "streamscope-sim", "-o", "seed", "3", "-o", "speed", "20", "-o", "chunks", "40")
    result = run(*sim, "--json", "--html", str(report), "hi")
    assert result.exit_code == 0, result.output
    chunks = json.loads(result.stdout)["responses"][0]["stats"]["chunks"]
    picture = tmp_path / "report.png"
    _, fetched = browse(
        report, tmp_path / "chromium", f"--screenshot={picture}", "--window-size=1200,1600"
    )
    assert fetched == []
    assert 10_000 < picture.stat().st_size < 2_000_000
    width, height, rows = png_rows(picture.read_bytes())
    assert (width, height) == (1200, 1600)
    white = b"\xff" * 3 * width
    inked = [y for y, row in enumerate(rows) if row != white]
    colours = Counter()
    for y in inked:
        colours.update(zip(rows[y][0::3], rows[y][1::3], rows[y][2::3]))
    ink = sum(colours.values()) - colours[(255, 255, 255)]
    # not blank, not a wall: a heading at the top, the report ending well above the bottom
    assert inked[0] < 80 and 400 < inked[-1] < height - 200
    assert 0.01 < ink / (width * height) < 0.3
    assert len(colours) > 50  # text, drawn with anti-aliasing

    def pixels(hex_colour):
        return colours[tuple(bytes.fromhex(hex_colour))]

    # the report's own colours (report.STYLE, charts_html), each drawn over an area
    assert pixels("dbeafe") > 1000 and pixels("fde68a") > 1000  # tokens, alternating
    assert pixels("c026d3") > 10 * (chunks - 1)  # a bar between two chunks
    assert pixels("2563eb") > 5000  # the arrival of each chunk
    assert pixels("9333ea") > 2000  # the tokens each chunk completed


def test_in_chromium_model_text_is_shown_never_run_and_fetches_nothing(tmp_path, register_models):
    hostile = (
        '<script>document.body.dataset.ran = "yes"</script>'
        '<img src="http://streamscope.invalid/pixel.png">'
    )
    register_models(streaming_model("sly", hostile[:30], hostile[30:]))
    report = tmp_path / "sly.html"
    assert run("-m", "sly", "--html", str(report), "-n", "hi").exit_code == 0
    dom, fetched = browse(report, tmp_path / "escaped", "--dump-dom")
    assert fetched == [] and "data-ran" not in dom
    assert "&lt;script&gt;document.body.dataset.ran" in re.sub(r"<[^>]*>", "", dom)
    # the control: the same text put in raw does run and fetch, and both are seen
    raw = tmp_path / "raw.html"
    raw.write_text(report.read_text().replace('<div class="text">', f'<div class="text">{hostile}'))
    dom, fetched = browse(raw, tmp_path / "raw", "--dump-dom")
    assert 'data-ran="yes"' in dom and fetched == ["http://streamscope.invalid/pixel.png"]


# -- golden views of a seeded simulator run -------------------------------------
#
# The run: the simulator, seeded, streams over loopback HTTP at speed 0; its body
# is kept as a capture, with a FILE.times sidecar giving each chunk the time the
# seeded profile planned for it (what the simulator sleeps by at speed 1). Then
# `llm streamscope inspect FILE` draws every view from it, the same each time.
# Regenerate after a meant change: pytest tests/test_pictures.py --update-goldens

SEEDED = {"seed": 1, "profile": "claude-haiku", "chunks": 30}
"""Claude's chunks of one to five tokens, its half-second TTFT, two stalls and a burst."""


@pytest.fixture
def seeded_capture(tmp_path, monkeypatch):
    """The body of a seeded simulator run, with its planned times in a sidecar
    (and stdout's views drawn plain, 80 columns wide, whatever the environment)."""
    monkeypatch.setenv("COLUMNS", "80")
    for forcing in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(forcing, raising=False)
    request = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Why does streaming feel fast?"}],
        "stream": True,
        "streamscope": {**SEEDED, "speed": 0},
    }
    with SimServer() as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port)
        connection.request("POST", "/v1/chat/completions", json.dumps(request))
        body = connection.getresponse().read()
        connection.close()
        sent = server.send_log(server.last_completion_id).chunks
    # The simulator draws ids and padding from fresh randomness, never the seed's.
    body = re.sub(rb'"id":"chatcmpl-\w+"', b'"id":"chatcmpl-seeded"', body)
    body = re.sub(rb'"created":\d+', b'"created":1767225600', body)
    body = re.sub(rb'"obfuscation":"\w*"', b'"obfuscation":""', body)
    # One SSE event per chunk, after the role's: where each ends in the body.
    event_ends = [m.end() for m in re.finditer(rb"\n\n", body)]
    events = [json.loads(e[6:]) for e in body.split(b"\n\n")[1 : len(sent) + 1]]
    assert [e["choices"][0]["delta"]["content"] for e in events] == sent
    delays = get_profile(SEEDED["profile"]).delays(SEEDED["seed"])
    times = list(accumulate(islice(delays, len(sent))))
    lines = [f"{t:.6f}\t{end}" for t, end in zip(times, event_ends[1:])]
    lines.append(f"{times[-1]:.6f}\t{len(body)}")  # the finish and [DONE] right after
    capture = tmp_path / "seeded.sse"
    capture.write_bytes(body)
    (tmp_path / "seeded.sse.times").write_text("\n".join(lines) + "\n")
    return capture


def section(output, name):
    """The lines of one ``─ name ─`` section of the plain views, up to the next rule."""
    lines = [line.rstrip() for line in output.split(f"─ {name} ─", 1)[1].splitlines()[1:]]
    return "\n".join(lines[: next(i for i, line in enumerate(lines) if line.startswith("───"))])


RUN_ID = re.compile(r"\b[0-9a-z]{26}\b")
UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00")


def anonymous(text):
    """``text`` with the run's id and the time it was inspected blanked."""
    return UTC.sub("<utc>", RUN_ID.sub("<run>", text))


def svg_lines(path):
    """The terminal drawn in the SVG, as lines of text: rich draws a line as runs of
    text at one ``y``, each at its ``x`` (runs of spaces are left out)."""
    nodes = [
        node
        for node in ET.parse(path).getroot().iter(f"{SVG}text")
        if node.get("textLength") is not None  # not the window's title
    ]
    cell = next(
        float(n.get("textLength")) / cell_len(n.text) for n in nodes if cell_len(n.text or "")
    )
    rows = {}
    for node in nodes:
        text = (node.text or "").replace("\xa0", " ")
        rows.setdefault(float(node.get("y")), []).append((round(float(node.get("x")) / cell), text))
    lines = []
    for y in sorted(rows):
        line = ""
        for column, text in sorted(rows[y]):
            line = set_cell_size(line, column) + text
        lines.append(line.rstrip())
    return "\n".join(lines)


class Outline(HTMLParser):
    """An HTML document as an indented outline of its body: each element with its
    class and what it says (a token's title, a bar's size), text quoted; the
    preformatted tables as their lines."""

    VOID = frozenset({"meta", "br", "img", "hr", "input", "link"})
    SHOWN = ("title", "width", "height", "x", "y", "y1")

    def __init__(self, document):
        super().__init__()
        self.lines, self.depth, self.pre, self.body = [], 0, None, False
        self.feed(document)

    def handle_starttag(self, tag, attrs):
        self.body = self.body or tag == "body"
        if self.pre is not None or not self.body:
            return
        values = dict(attrs)
        shown = " ".join(f"{k}={values[k]!r}" for k in self.SHOWN if k in values)
        name = tag + (f".{values['class']}" if "class" in values else "")
        self.lines.append("  " * self.depth + " ".join(filter(None, [name, shown])))
        if tag == "pre":
            self.pre = []
        if tag not in self.VOID:
            self.depth += 1

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID and self.body and self.pre is None:
            self.depth -= 1

    def handle_endtag(self, tag):
        if self.pre is not None and tag != "pre":
            return
        if self.pre is not None:
            lines = "".join(self.pre).splitlines()
            self.lines.extend("  " * self.depth + "| " + line.rstrip() for line in lines)
            self.pre = None
        if self.body and tag not in self.VOID:
            self.depth -= 1

    def handle_data(self, data):
        if self.pre is not None:
            self.pre.append(data)
        elif self.body and data.strip():
            self.lines.append("  " * self.depth + repr(data))


def test_golden_timelines_of_a_seeded_simulator_run(seeded_capture, golden):
    by_position = run("inspect", str(seeded_capture), "--timeline")
    assert by_position.exit_code == 0, by_position.output
    by_time = run("inspect", str(seeded_capture), "--timeline-by-time")
    assert by_time.exit_code == 0, by_time.output
    golden("seeded-timeline.txt", section(by_position.stdout, "timeline") + "\n")
    golden("seeded-timeline-by-time.txt", section(by_time.stdout, "timeline") + "\n")
    # the rest of the views is the same whichever timeline is drawn
    assert section(by_time.stdout, "stats") == section(by_position.stdout, "stats")


def test_golden_svg_and_html_of_a_seeded_simulator_run(seeded_capture, golden, tmp_path):
    drawn, report = tmp_path / "views.svg", tmp_path / "report.html"
    result = run(
        "inspect",
        str(seeded_capture),
        "--timeline-by-time",
        "--svg",
        str(drawn),
        "--html",
        str(report),
    )
    assert result.exit_code == 0, result.output
    golden("seeded-views.svg.txt", anonymous(svg_lines(drawn)) + "\n")
    golden("seeded-report.html.txt", anonymous("\n".join(Outline(report.read_text()).lines)) + "\n")


def test_golden_live_view_of_a_seeded_simulator_run(seeded_capture, golden):
    """The live view's frames (``LiveScreen``, as the tokenizer process draws them)
    part way through the seeded run, in one of its stalls, and at its last chunk."""
    from rich.console import Console

    from llm_streamscope.analysis import encodings
    from llm_streamscope.capture.tokenizer import tokens_of
    from llm_streamscope.views.liveview import LiveScreen

    result = run("inspect", str(seeded_capture), "--json")
    assert result.exit_code == 0, result.output
    (response,) = json.loads(result.stdout)["responses"]
    fragments = [
        (f["kind"], f["text"], round(f["t_ms"] * 1e6))
        for f in response["fragments"]
        if f["kind"] == "text" and f["text"]
    ]
    encoding = encodings.get_encoding("o200k_base")
    screen = LiveScreen(lambda text: tokens_of(encoding, text), stall_ms=50)
    screen.begin("gpt-4o-mini", start_ns=0)
    frames = []
    shown = 0
    ms = 1_000_000
    instants = [("before the first chunk", fragments[0][2] - 100 * ms)]
    instants += [("just after chunk 10", fragments[9][2] + 2 * ms)]
    gaps = [b[2] - a[2] for a, b in pairwise(fragments)]
    stall = max(range(len(gaps)), key=gaps.__getitem__)  # mid-way through the longest gap
    instants += [("in the longest gap", fragments[stall][2] + gaps[stall] // 2)]
    instants += [("at the last chunk", fragments[-1][2])]
    for label, now in sorted(instants, key=lambda instant: instant[1]):
        while shown < len(fragments) and fragments[shown][2] <= now:
            screen.add([fragments[shown]], origin_ns=0)
            shown += 1
        console = Console(width=80, color_system=None, record=True)
        console.print(screen.frame(console, now_ns=now, height=10))
        frames.append(f"── {label} ──\n" + console.export_text().rstrip() + "\n")
    golden("seeded-live.txt", "\n".join(frames))
