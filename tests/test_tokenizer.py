"""The tokenizer off the capture's interpreter lock: a helper process, and the proof
that nothing of streamscope's runs while a request waits for its first event."""

import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import tiktoken
import tiktoken.registry
from click.testing import CliRunner
from llm.cli import cli

from llm_streamscope.analysis import encodings
from llm_streamscope.analysis.encodings import EncodingError, get_encoding
from llm_streamscope.capture import timing as capture
from llm_streamscope.capture.tokenizer import (
    LocalTokenizer,
    TokenizerProcess,
    start_tokenizer,
    tokens_of,
)

TEXTS = [
    "Hello, wörld! naïve café 🙂 — 日本語のテキスト\n\tdef f(x): return x**2",
    "",
    "<|endoftext|> is ordinary text here",
    "x" * 5000,
]


@pytest.fixture
def not_loaded_here(monkeypatch):
    """This process forgets every encoding it loaded, and records any it builds."""
    monkeypatch.setattr(encodings, "_memo", {})
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    built = []
    real_init = tiktoken.Encoding.__init__

    def spy(self, *args, **kwargs):
        built.append(kwargs.get("name", args[0] if args else None))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(tiktoken.Encoding, "__init__", spy)
    return built


@pytest.fixture
def no_downloads(monkeypatch):
    # The helper process is a real process: block its downloads through a proxy
    # that answers nothing, so no test ever reaches beyond 127.0.0.1.
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def test_process_tokens_equal_in_process_tokens(not_loaded_here, no_downloads):
    process = start_tokenizer("cl100k_base")
    try:
        assert isinstance(process, TokenizerProcess)
        got = process.tokenize(TEXTS)
        assert process.tokenize(["hello world"]) == [
            tokens_of(get_encoding("cl100k_base"), "hello world")
        ]
    finally:
        process.close()
    reference = LocalTokenizer(get_encoding("cl100k_base")).tokenize(TEXTS)
    assert [(list(i), list(s)) for i, s in got] == [(list(i), list(s)) for i, s in reference]
    assert got[0][0].tolist() == tiktoken.get_encoding("cl100k_base").encode_ordinary(TEXTS[0])
    assert sum(got[0][1]) == len(TEXTS[0].encode())
    # Built here only for the reference, after the process had answered.
    assert not_loaded_here == ["cl100k_base"]


def test_a_loaded_encoding_is_used_in_process():
    enc = get_encoding("o200k_base")
    tokenizer = start_tokenizer("o200k_base")
    assert isinstance(tokenizer, LocalTokenizer) and tokenizer.encoding is enc


def test_the_process_seeds_the_cache_by_the_same_rules(tmp_path, monkeypatch, no_downloads):
    cache = tmp_path / "fresh-cache"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    process = TokenizerProcess("cl100k_base")
    try:
        process.wait_ready()
    finally:
        process.close()
    seeded, compact = sorted(cache.iterdir())  # tiktoken's file, and the parsed ranks beside it
    assert compact.name == seeded.name + ".streamscope-ranks"
    assert seeded == encodings.seed_cache("cl100k_base")  # already there: left as it is
    assert tiktoken.load.check_hash(
        seeded.read_bytes(), encodings._offline_source("cl100k_base").expected_hash
    )


def test_unknown_and_unavailable_encodings_fail_before_any_request(no_downloads):
    with pytest.raises(EncodingError, match="Unknown encoding 'foo'"):
        start_tokenizer("foo")
    # Valid, but its data does not ship offline and cannot be downloaded here.
    tokenizer = start_tokenizer("r50k_base")
    with pytest.raises(EncodingError, match=r"r50k_base.*offline"):
        tokenizer.wait_ready()
    tokenizer.close()


def test_a_process_that_dies_gives_one_error(no_downloads):
    process = TokenizerProcess("cl100k_base")
    process.wait_ready()
    process._process.kill()
    process._process.wait()
    with pytest.raises(EncodingError, match="ended unexpectedly"):
        process.tokenize(["hello"])
    process.close()


def test_run_reports_an_unavailable_encoding_before_the_request(no_downloads):
    from llm_streamscope.sim.server import get_server

    server = get_server()
    before = server.post_count
    result = CliRunner().invoke(
        cli, ["streamscope", "-m", "streamscope-sim", "--encoding", "r50k_base", "hi"]
    )
    assert result.exit_code == 1
    assert "r50k_base" in result.output and "offline" in result.output
    assert server.post_count == before  # no request was sent


@pytest.fixture(scope="module")
def sim_url():
    """The simulator in its own process: no server thread shares this interpreter."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_streamscope.sim"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    yield proc.stdout.readline().strip()
    proc.terminate()
    proc.wait(10)


def test_nothing_of_streamscope_runs_between_the_request_and_the_first_event(
    sim_url, monkeypatch, not_loaded_here, no_downloads, isolated_env
):
    monkeypatch.setenv("STREAMSCOPE_SIM_URL", sim_url)
    ready_at = []
    real_wait_ready = TokenizerProcess.wait_ready

    def wait_ready(self):
        real_wait_ready(self)
        ready_at.append(time.perf_counter_ns())

    monkeypatch.setattr(TokenizerProcess, "wait_ready", wait_ready)
    calls = []

    def profile(frame, event, arg):
        if event == "call":
            calls.append((time.perf_counter_ns(), threading.current_thread().name))

    # Every thread started from now on reports each Python call it makes; the
    # capturing (main) thread is not watched.
    threading.setprofile(profile)
    try:
        result = CliRunner().invoke(
            cli,
            [
                "streamscope",
                "-m",
                "streamscope-sim",
                "-o",
                "seed",
                "4",
                "-o",
                "chunks",
                "30",
                "--timeout",
                "30",
                "hello",
            ],
        )
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    request_left = capture._connects[0]
    db = sqlite3.connect(isolated_env / "logs.db")
    first_ns, tokens = db.execute(
        "select f.t_ns, t.tokens from streamscope_fragments f join streamscope_traces t "
        "on t.id = f.trace_id where f.idx = 0"
    ).fetchone()
    first_event = request_left + first_ns
    assert first_ns > 50_000_000  # the simulated TTFT: a window worth watching
    during = [name for t, name in calls if request_left <= t <= first_event]
    after = {name for t, name in calls if t > first_event}
    assert during == []
    # The watchers did run, once the stream flowed: the profile saw them.
    assert {"streamscope-writer", "streamscope-live", "streamscope-timeout"} <= after
    # The helper process had loaded before the request left: from then on it
    # only waits for work, which comes once the stream has ended.
    assert ready_at and ready_at[0] < request_left
    # And the encoding was never built in this process: the helper process tokenized.
    assert not_loaded_here == []
    assert tokens == 30
