"""A logged run read back from logs.db, aligned and measured again (``show``,
``replay``, ``export``, ``whatif``, ``compare --from-logs``).
"""

from __future__ import annotations

from typing import Any

from .analysis.summary import Analysed
from .session import RunResult


def load_run(
    db: Any, ident: str | None, latest: bool = False, *, gap_ms: float | None = None
) -> RunResult:
    """A logged run (or one trace of it) read back, aligned and measured again.

    ``ident`` is a trace id, llm's id for the same response, or a run id (the
    whole run); ``latest`` takes the latest run. A damaged value (see ``stored``),
    or a stored alignment that differs from the one recomputed now (another
    tiktoken), is a warning: the trace itself stays readable. Raises StoreError (nothing to read)
    and EncodingError (the encoding cannot load).
    """
    from .analysis import encodings
    from .analysis.align import align
    from .analysis.stats import gap_threshold, measure
    from .capture.tokenizer import LocalTokenizer
    from .store.reading import find_run, load_trace, stored_placements
    from .store.writer import alignment_matches

    warnings: list[str] = []
    responses = []
    for trace_id in find_run(db, ident, latest):
        trace, row, damaged = load_trace(db, trace_id)
        warnings += damaged
        alignment = align(trace, LocalTokenizer(encodings.get_encoding(trace.encoding_name)))
        stored = stored_placements(db, trace.id)
        if stored is not None and not alignment_matches(stored, alignment):
            warnings.append(
                f"the stored alignment differs from the one recomputed now (stored with "
                f"tiktoken {row.get('tiktoken_version')}); showing the recomputed one"
            )
        threshold = gap_threshold(gap_ms, row["stall_threshold_ms"])
        responses.append(Analysed(*measure(trace, alignment, gap_ms=threshold)))
    first = responses[0].trace
    return RunResult(
        run_id=first.run_id or first.id,
        responses=tuple(responses),
        warnings=tuple(dict.fromkeys(warnings)),
    )
