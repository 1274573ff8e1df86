"""Drive an llm response and timestamp every streamed event the moment it arrives.

The loop does as little as possible per event: read the clock, build one
``Fragment`` tuple, append it, call the live callback. Tokenizing, statistics and
rendering all happen after the stream ends, and the tokenizer is loaded on
another thread, so nothing delays the clock read of the next event.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any

from .trace import STATUS_COMPLETE, STATUS_ERROR, STATUS_INTERRUPTED, Fragment, Trace


def new_trace_id() -> str:
    """A ULID: sortable by creation time, like llm's own ids."""
    from ulid import ULID  # python-ulid, a dependency of llm

    return str(ULID()).lower()


def one_line(error: BaseException) -> str:
    """An exception as one readable line."""
    message = " ".join(str(error).split()) or type(error).__name__
    return message if len(message) <= 300 else message[:297] + "..."


def capture(
    response: Any,
    *,
    model_id: str,
    encoding_name: str,
    encoding_exact: bool,
    prompt: str | None = None,
    system: str | None = None,
    options: dict | None = None,
    on_fragment: Callable[[Fragment], None] | None = None,
) -> Trace:
    """Stream ``response`` (an llm ``Response`` not yet iterated) into a ``Trace``.

    Never raises for a failure of the stream itself: a provider error, a dropped
    connection or Ctrl-C end the trace with status ``error`` or ``interrupted`` and
    keep every fragment received before it.
    """
    clock = time.perf_counter_ns
    fragments: list[Fragment] = []
    append = fragments.append
    status, error = STATUS_COMPLETE, None
    events = response.stream_events()
    started_utc = datetime.datetime.now(datetime.timezone.utc).isoformat()
    # llm's model.prompt() is lazy: the request is sent by the first next() below.
    t0 = clock()
    try:
        for event in events:
            t = clock() - t0
            fragment = Fragment(len(fragments), event.type, event.chunk, t, event.tool_call_id)
            append(fragment)
            if on_fragment is not None:
                on_fragment(fragment)
    except KeyboardInterrupt:
        status, error = STATUS_INTERRUPTED, "interrupted (Ctrl-C)"
    except Exception as ex:
        status, error = STATUS_ERROR, one_line(ex)
    end_ns = clock() - t0
    # Read usage straight from the response: response.usage() would re-run a
    # request that failed part way.
    return Trace(
        id=new_trace_id(),
        model_id=model_id,
        encoding_name=encoding_name,
        encoding_exact=encoding_exact,
        prompt=prompt,
        system=system,
        started_utc=started_utc,
        fragments=tuple(fragments),
        status=status,
        error=error,
        end_ns=end_ns,
        usage_input=getattr(response, "input_tokens", None),
        usage_output=getattr(response, "output_tokens", None),
        options=dict(options or {}),
    )
