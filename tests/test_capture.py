"""capture(): timestamps, status and usage, driven by fake llm models (no HTTP)."""

import asyncio
import time

import llm
import pytest
from llm.parts import StreamEvent

from llm_streamscope.analysis.trace import STATUS_COMPLETE, STATUS_ERROR, STATUS_INTERRUPTED
from llm_streamscope.capture.timing import Capture, atimed_events, capture, new_trace, timed_events

GAPS_S = (0.02, 0.0, 0.03, 0.01)


class Paced(llm.Model):
    """Streams one text event after each of GAPS_S; optionally fails after some."""

    model_id = "paced"
    can_stream = True

    def __init__(self, fail_after=None, interrupt_after=None):
        self.fail_after = fail_after
        self.interrupt_after = interrupt_after

    def execute(self, prompt, stream, response, conversation=None):
        for i, gap in enumerate(GAPS_S):
            if i == self.fail_after:
                raise RuntimeError("upstream went away")
            if i == self.interrupt_after:
                raise KeyboardInterrupt
            time.sleep(gap)
            yield StreamEvent(type="text", chunk=f"t{i} ")
        yield StreamEvent(type="tool_call_args", chunk="{}", tool_call_id="call_1")
        response.set_usage(input=3, output=len(GAPS_S), details={"reasoning_tokens": 0})


class AsyncPaced(llm.AsyncModel):
    model_id = "paced"
    can_stream = True

    async def execute(self, prompt, stream, response, conversation=None):
        for i, gap in enumerate(GAPS_S):
            await asyncio.sleep(gap)
            yield StreamEvent(type="text", chunk=f"t{i} ")


def header():
    return new_trace(model_id="paced", encoding_name="o200k_base", encoding_exact=False, prompt="p")


def assert_paced(times_ns):
    # Each arrival time follows the model's own pacing (sleep overshoots, never undershoots).
    cumulative = [sum(GAPS_S[: i + 1]) * 1e9 for i in range(len(GAPS_S))]
    for t, expected in zip(times_ns, cumulative):
        assert expected <= t < expected + 15e6
    assert times_ns == sorted(times_ns)


def test_timestamps_kinds_and_usage():
    seen = []
    trace = capture(Paced().prompt("p"), header(), on_event=lambda e, t: seen.append((e.chunk, t)))
    assert trace.status == STATUS_COMPLETE and trace.error is None
    assert [f.text for f in trace.fragments] == ["t0 ", "t1 ", "t2 ", "t3 ", "{}"]
    assert [f.kind for f in trace.fragments][-1] == "tool_call_args"
    assert trace.fragments[-1].tool_call_id == "call_1"
    assert [(f.text, f.t_ns) for f in trace.fragments] == seen  # the callback saw the same times
    assert_paced([f.t_ns for f in trace.fragments[:4]])
    assert trace.end_ns >= trace.fragments[-1].t_ns
    # no socket: times count from llm starting the request, and there is no setup
    assert trace.setup_ns is None
    assert (trace.usage_input, trace.usage_output) == (3, 4)
    assert trace.usage_details == {"reasoning_tokens": 0}


def test_an_error_mid_stream_keeps_what_arrived():
    trace = capture(Paced(fail_after=2).prompt("p"), header())
    assert trace.status == STATUS_ERROR and trace.error == "upstream went away"
    assert [f.text for f in trace.fragments] == ["t0 ", "t1 "]
    assert trace.usage_output is None


def test_ctrl_c_mid_stream_is_an_interrupted_trace():
    trace = capture(Paced(interrupt_after=1).prompt("p"), header())
    assert trace.status == STATUS_INTERRUPTED and trace.error == "interrupted (Ctrl-C)"
    assert [f.text for f in trace.fragments] == ["t0 "]


def test_timed_events_passes_events_through_and_raises_on():
    record = Capture()
    ended = []
    events = timed_events(
        Paced(fail_after=1).prompt("p").stream_events(), record, on_end=ended.append
    )
    assert next(events).chunk == "t0 "
    assert record.arrivals.flowing.is_set()
    with pytest.raises(RuntimeError, match="upstream"):
        next(events)
    assert ended == [record]
    assert record.status == STATUS_ERROR and record.end_ns >= record.start_ns


def test_a_stream_its_consumer_abandons_is_interrupted():
    record = Capture()
    events = timed_events(Paced().prompt("p").stream_events(), record)
    next(events)
    events.close()
    assert record.status == STATUS_INTERRUPTED and len(record.arrivals.events) == 1


def test_an_unfinished_capture_says_so():
    assert Capture().trace(header()).status == STATUS_INTERRUPTED


def test_async_responses_are_timed_the_same_way():
    record = Capture()

    async def consume():
        response = AsyncPaced().prompt("p")
        return [e.chunk async for e in atimed_events(response.astream_events(), record)]

    assert asyncio.run(consume()) == ["t0 ", "t1 ", "t2 ", "t3 "]
    trace = record.trace(header())
    assert trace.status == STATUS_COMPLETE
    assert_paced([f.t_ns for f in trace.fragments])
