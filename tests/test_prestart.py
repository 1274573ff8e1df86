"""The tokenizer process started while llm starts up (``prestart``): which command lines
start it, that the run takes it instead of starting its own, and that one that does not
fit the run is let go."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import streaming_model

from llm_streamscope import prestart
from llm_streamscope.capture import tokenizer
from llm_streamscope.prestart import Plan, plan
from llm_streamscope.views import livehost


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        (["llm", "streamscope", "hi"], {}, Plan(None, None, True)),
        (["/v/bin/llm", "streamscope", "run", "-m", "gpt-4", "hi"], {}, Plan("gpt-4", None, True)),
        (
            ["/v/lib/llm/__main__.py", "streamscope", "-mgpt-4o", "hi"],
            {},
            Plan("gpt-4o", None, True),
        ),
        (
            ["llm", "streamscope", "--model=x", "--encoding", "cl100k_base"],
            {},
            Plan("x", "cl100k_base", True),
        ),
        (["llm", "streamscope", "hi"], {"LLM_MODEL": "claude"}, Plan("claude", None, True)),
        (["llm", "streamscope", "--no-live", "hi"], {}, Plan(None, None, False)),
        (["llm", "streamscope", "--json", "hi"], {}, Plan(None, None, False)),
        (["llm", "streamscope", "-x", "hi"], {}, Plan(None, None, False)),
        (["llm", "streamscope", "logs"], {}, None),
        (["llm", "streamscope", "inspect", "-"], {}, None),
        (["llm", "streamscope", "--help"], {}, None),
        (["llm", "streamscope", "run", "--help"], {}, None),
        (["llm", "prompt", "hi"], {}, None),
        (["llm", "streamscope"], {}, Plan(None, None, True)),
        (
            ["llm", "streamscope", "-m", "gpt-4", "--", "--help", "-m", "x"],
            {},
            Plan("gpt-4", None, True),
        ),
        (["pytest", "streamscope", "hi"], {}, None),
        (["-m", "streamscope"], {}, None),
        (["/x/llm_streamscope/tokenizer.py", "o200k_base"], {}, None),
    ],
)
def test_which_command_lines_start_the_tokenizer_while_llm_starts(argv, environ, expected):
    assert plan(argv, environ, terminal=True) == expected


def test_the_commands_that_are_not_a_run_are_the_groups_others():
    from llm_streamscope.cli import streamscope

    assert set(streamscope.commands) - {"run"} == prestart.OTHER_COMMANDS


@pytest.fixture
def started(monkeypatch):
    """Every TokenizerProcess made from now on; the prestarted one let go at the end."""
    made = []
    real = tokenizer.TokenizerProcess.__init__

    def init(self, *args, **kwargs):
        made.append(self)
        real(self, *args, **kwargs)

    monkeypatch.setattr(tokenizer.TokenizerProcess, "__init__", init)
    yield made
    prestart.let_go()


def run(*args):
    from llm.cli import cli

    return CliRunner().invoke(cli, ["streamscope", *args], catch_exceptions=False)


def test_the_run_takes_the_process_started_for_it(register_models, started):
    register_models(streaming_model("stream-it", "Hello", " world"))
    prestart.start(Plan("stream-it", None, False))  # as at the plugin's import
    (early,) = started
    assert early.name == "o200k_base"
    result = run("-m", "stream-it", "--no-live", "x")
    assert result.exit_code == 0, result.output
    assert started == [early]  # no process of its own
    assert prestart._started is None
    assert early._process.wait(10) == 0  # it tokenized the run, and ended with it


def test_a_process_for_another_encoding_is_let_go(register_models, started):
    register_models(streaming_model("stream-it", "Hello", " world"))
    prestart.start(Plan("stream-it", "cl100k_base", False))
    (guessed,) = started
    result = run("-m", "stream-it", "--no-live", "x")
    assert result.exit_code == 0, result.output
    assert guessed.name == "cl100k_base"
    assert all(p.name == "o200k_base" for p in started[1:])  # the run's own, if any
    guessed._process.wait(10)  # killed while loading, or closed once loaded
    assert prestart._started is None


def test_an_unknown_encoding_starts_nothing(started):
    prestart.start(Plan(None, "no-such-encoding", False))
    assert started == [] and prestart._started is None


def test_in_a_terminal_the_status_line_shows_as_soon_as_the_run_starts(monkeypatch, started):
    """Before llm has resolved the model, the tokenizer process started for the run
    shows "starting…" and the time; the view leaves the screen clean at the end."""
    pyte = pytest.importorskip("pyte")
    pty = pytest.importorskip("pty")
    import os
    import sys
    import threading
    import time

    from llm_streamscope.session import RunSettings, Session

    master, slave = pty.openpty()
    screen = pyte.Screen(80, 10)
    stream = pyte.ByteStream(screen)
    lock = threading.Lock()

    def read():
        with __import__("contextlib").suppress(OSError):
            while data := os.read(master, 65536):
                with lock:
                    stream.feed(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def shown():
        with lock:
            return "\n".join(screen.display)

    def wait_for(found):
        deadline = time.monotonic() + 30
        while not found(shown()) and time.monotonic() < deadline:
            time.sleep(0.02)
        return shown()

    monkeypatch.setattr(sys, "stdout", open(slave, "w", closefd=False))  # noqa: SIM115
    prestart.start(Plan(None, None, True))
    session = Session(RunSettings(live=True, live_view=True))
    session.starting()  # the model is not known yet
    assert session.live is not None and started and started[0].draws
    text = wait_for(lambda text: "starting…" in text)
    assert "● " in text and " s  starting…" in text, text
    session.finish()
    text = wait_for(lambda text: "starting…" not in text)
    assert "starting…" not in text and "●" not in text, text
    os.close(slave)
    started[0]._process.wait(10)
    reader.join(5)
    os.close(master)


def test_a_run_asks_the_plugins_for_their_models_once(register_models):
    """The run finds its model before llm's command does: llm does not register every
    plugin's models a second time (llm-gemini builds pydantic classes each time)."""
    model = streaming_model("stream-it", "Hello")
    calls = []

    def counted(register):
        calls.append(1)
        register(model)

    import llm
    from llm.plugins import pm

    class Counting:
        register_models = staticmethod(llm.hookimpl(counted))

    pm.register(Counting(), name="counting")
    try:
        result = run("-m", "stream-it", "--no-live", "x")
    finally:
        pm.unregister(name="counting")
    assert result.exit_code == 0, result.output
    assert len(calls) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_view_draws_at_nice_10_every_thread_of_it():
    """The live-view process lowers its priority once loaded (the load is what the request
    waits for); its drawing thread, started after, draws at the lowered priority too."""
    pty = pytest.importorskip("pty")
    import os

    master, slave = pty.openpty()
    process = tokenizer.TokenizerProcess("o200k_base", terminal=slave, live_host=livehost.MODULE)
    try:
        process.wait_ready()
        pid = process._process.pid
        tasks = os.listdir(f"/proc/{pid}/task")
        assert len(tasks) >= 2  # the reading thread and the drawing thread
        base = os.getpriority(os.PRIO_PROCESS, 0)
        for tid in tasks:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            assert int(stat[16]) == min(19, base + 10), tid
    finally:
        process.close()
        process._process.wait(10)
        os.close(slave)
        os.close(master)


def test_a_view_started_for_another_encoding_has_loaded_before_the_request_leaves(
    monkeypatch, started
):
    """The guess was cl100k_base, the run aligns with o200k_base: the view keeps the
    guessed process, and it too has loaded before the request (no load beside it)."""
    pty = pytest.importorskip("pty")
    import os

    from llm_streamscope.analysis.encodings import get_encoding
    from llm_streamscope.session import RunSettings, Session

    get_encoding("o200k_base")  # the run's tokenizer is then this process's own: no wait
    master, slave = pty.openpty()
    monkeypatch.setattr(sys, "stdout", open(slave, "w", closefd=False))  # noqa: SIM115
    prestart.start(Plan(None, "cl100k_base", True))
    session = Session(RunSettings(live=True, live_view=True, encoding_name="o200k_base"))
    session.starting()
    (view,) = started
    session.begin(streaming_model("stream-it", "Hello").prompt("x"))
    assert view._ready  # waited for before the request
    assert {"cl100k_base", "o200k_base"} <= set(session.tokenizers)
    session.finish()
    view._process.wait(10)
    os.close(slave)
    os.close(master)


def test_the_status_line_says_starting_then_waiting_with_the_time():
    from rich.console import Console

    from llm_streamscope.views.liveview import LiveScreen

    screen = LiveScreen()
    console = Console(width=60, color_system=None)

    def status(now_ns):
        with console.capture() as out:
            console.print(screen.frame(console, now_ns, 6))
        return out.get().rstrip().splitlines()[-1]

    screen.begin("", start_ns=1_000_000_000, starting=True)
    assert status(1_300_000_000) == "● 0.3 s  starting…"
    screen.begin("gpt-4o-mini", start_ns=2_000_000_000)
    assert status(2_400_000_000) == "● 0.4 s  waiting for the first token  gpt-4o-mini"
