"""The live text: the pure batcher, and the writer around it."""

import doctest
import io

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st
from llm.parts import StreamEvent

from llm_streamscope.views import live
from llm_streamscope.views.live import ERR, OUT, LiveBatcher, LiveText
from llm_streamscope.views.sanitize import LIVE_TABLE


def test_module_example_runs():
    result = doctest.testmod(live)
    assert result.attempted > 0 and result.failed == 0


def written(writes, target):
    return "".join(text for t, text in writes if t == target)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["text", "reasoning", "tool_call_args"]),
            st.text(max_size=5),
            st.integers(min_value=0, max_value=50),
        ),
        max_size=30,
    ),
    st.integers(min_value=1, max_value=100),
)
def test_batching_loses_and_reorders_nothing(events, interval):
    batcher = LiveBatcher({}, interval_ns=interval)
    writes, now = [], 0
    for kind, text, step in events:
        now += step
        writes += batcher.feed(kind, text, now)
    writes += batcher.close(now)
    # stdout: every text piece in order; stderr: every reasoning piece in order
    out, err = written(writes, OUT), written(writes, ERR)
    texts = "".join(t for k, t, _ in events if k == "text")
    reasoning = "".join(t for k, t, _ in events if k == "reasoning")
    assert out.replace("\n", "") == texts.replace("\n", "")
    assert err.replace("\n", "") == reasoning.replace("\n", "")
    assert not out or out.endswith("\n")


def test_writes_are_at_most_one_per_interval():
    batcher = LiveBatcher({}, interval_ns=100)
    due = [batcher.feed("text", "x", now) for now in range(0, 1000, 10)]
    assert sum(1 for d in due if d) == 10


def test_hidden_reasoning_and_other_kinds_are_not_shown():
    batcher = LiveBatcher({}, show_reasoning=False)
    assert batcher.feed("reasoning", "hmm", 0) == ()
    assert batcher.feed("tool_call_args", "{}", 0) == ()
    assert batcher.close(0) == []


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_control_characters_are_made_visible_on_a_terminal_and_kept_in_a_pipe():
    writer = LiveText(LIVE_TABLE, out=Terminal(), err=Terminal())
    writer.write(StreamEvent(type="reasoning", chunk="hmm\x1b[2J"))
    writer.write(StreamEvent(type="text", chunk="ok\x1b]0;x\x07\n"))
    writer.write(StreamEvent(type="text", chunk="[bold]done"))
    writer.close()
    assert writer.out.getvalue() == "ok␛]0;x␇\n[bold]done\n"
    assert "\x1b[2J" not in writer.err.getvalue() and "hmm␛[2J" in writer.err.getvalue()

    # A pipe or a file gets the text as it arrived (a lone surrogate has no UTF-8 form).
    piped = LiveText(LIVE_TABLE, out=io.StringIO(), err=io.StringIO())
    piped.write(StreamEvent(type="reasoning", chunk="hmm\x1b[2J"))
    piped.write(StreamEvent(type="text", chunk="ok\x1b]0;x\x07\u202e\ud800\n"))
    piped.close()
    assert piped.out.getvalue() == "ok\x1b]0;x\x07\u202e\ufffd\n"
    assert "hmm\x1b[2J" in piped.err.getvalue()


def test_close_without_the_final_newline_llm_prints_itself():
    writer = LiveText(LIVE_TABLE, out=io.StringIO(), err=io.StringIO())
    writer.write(StreamEvent(type="text", chunk="ok"))
    writer.close(final_newline=False)
    writer.close()  # a second close does nothing
    assert writer.out.getvalue() == "ok"


def test_a_reader_that_goes_away_ends_the_live_text_only():
    class Gone(io.StringIO):
        def write(self, text):
            raise BrokenPipeError

    writer = LiveText(LIVE_TABLE, out=Gone(), err=io.StringIO())
    writer.write(StreamEvent(type="text", chunk="ok"))
    writer.close()
    assert writer.closed_by_reader


@pytest.mark.parametrize(
    "err,no_color,dimmed",
    [(io.StringIO, False, False), (Terminal, False, True), (Terminal, True, False)],
)
def test_reasoning_is_dimmed_only_where_llm_would_dim_it(monkeypatch, err, no_color, dimmed):
    # llm prompt writes reasoning with click.echo, which drops styles when stderr is
    # not a terminal; NO_COLOR turns them off as it does for the views.
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    writer = LiveText(LIVE_TABLE, out=io.StringIO(), err=err())
    writer.write(StreamEvent(type="reasoning", chunk="hmm"))
    writer.write(StreamEvent(type="text", chunk="ok"))
    writer.close()
    assert writer.err.getvalue() == (click.style("hmm", dim=True) if dimmed else "hmm") + "\n"
    assert writer.out.getvalue() == "ok\n"
