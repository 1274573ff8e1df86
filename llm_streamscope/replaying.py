"""``replay``: a logged run played again at the timing it arrived with.

Each fragment is shown when it is due, counted from the start of the replay (a
chain's later responses at their offset in the run): in the live view where the
terminal can draw it, drawn in this process (nothing is being measured), else as
the plain live text ``llm`` shows.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .analysis.summary import Analysed


def replay(
    responses: Sequence[Analysed], *, speed: float, live_view: bool
) -> KeyboardInterrupt | None:
    """Play ``responses`` (``speed`` 2: twice as fast; 0: at once).

    Ctrl-C (or SIGTERM, raised as ``signals.Terminated``) ends the replay, the
    screen left clean, and is returned.
    """
    from .capture.signals import RunSignals, Terminated

    with RunSignals(terminate=Terminated):
        try:
            _replay(responses, speed=speed, live_view=live_view)
        except KeyboardInterrupt as ex:
            return ex
    return None


def _replay(responses: Sequence[Analysed], *, speed: float, live_view: bool) -> None:
    start = time.perf_counter_ns()

    def due(at_ns: int) -> None:
        if speed:
            wait = start + at_ns / speed - time.perf_counter_ns()
            if wait > 0:
                time.sleep(wait / 1e9)

    if live_view:
        _replay_live(responses, speed, start, due)
        return
    from llm.parts import StreamEvent

    from .views.live import LiveText
    from .views.sanitize import LIVE_TABLE

    live = LiveText(LIVE_TABLE)
    try:
        for response in responses:
            offset = response.trace.run_offset_ns or 0  # a chain's later responses start later
            for fragment in response.trace.fragments:
                due(offset + fragment.t_ns)
                live.write(StreamEvent(type=fragment.kind, chunk=fragment.text))
            live.flush()
    finally:
        live.close()  # on a fresh line, whatever ended it


def _replay_live(
    responses: Sequence[Analysed], speed: float, start: int, due: Callable[[int], None]
) -> None:
    from .analysis import encodings
    from .capture.tokenizer import tokens_of
    from .views.liveview import SHOWN_KINDS, LiveRenderer

    first = responses[0].trace
    encoding = encodings.get_encoding(first.encoding_name)
    # The view's clock runs at the trace's own pace: its times read as recorded.
    pace = speed or 1.0
    renderer = LiveRenderer(
        sys.stdout.fileno(),
        encoding.name,
        lambda text: tokens_of(encoding, text),
        clock=lambda: start + round((time.perf_counter_ns() - start) * pace),
    )
    try:
        for response in responses:
            trace = response.trace
            offset = trace.run_offset_ns or 0
            stall_ms = response.stats.stall_threshold_ms if response.stats else 50.0
            renderer.begin(trace.model_id, trace.encoding_name, start + offset, stall_ms)
            for fragment in trace.fragments:
                due(offset + fragment.t_ns)
                if fragment.kind in SHOWN_KINDS and fragment.text:
                    renderer.add([(fragment.kind, fragment.text, fragment.t_ns)], start + offset)
            renderer.end()
    finally:
        renderer.close()
