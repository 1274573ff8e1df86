"""One run of ``llm streamscope``: llm's own prompt command, every response it streams captured.

A run does not rebuild llm's prompt: it runs llm's ``prompt`` command as it is, so
templates, fragments, attachments, conversations, tools, schemas and async all
mean exactly what they mean to llm, now and in later versions. While that command
runs, and only then, ``Response.stream_events`` and ``AsyncResponse.astream_events``
are wrapped so that every response llm streams is timed (``capture``), and llm's
display of the stream is replaced by streamscope's live text (``live``). A tool
chain streams several responses: each becomes one trace, all with the run's id.

Before a response's request leaves, its tokenizer is loaded (in another process),
its trace row is written and the simulator is started; after the command returns,
each response is aligned, measured and stored. While a request is in flight only
the capture loop and, a flush interval after the first event, the trace writer
run::

    settings = RunSettings(database=None, live=False)
    result = run(lambda: ctx.invoke(llm.cli.prompt, **options), settings)
    for response in result.responses:
        print(response.trace.status, response.stats.ttft_ms)
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .analysis.summary import Analysed
from .analysis.trace import STATUS_COMPLETE, Alignment, Trace
from .capture.timing import (
    ABANDONED,
    UNFINISHED,
    Capture,
    atimed_events,
    new_trace,
    new_trace_id,
    timed_events,
)
from .store.redaction import redact

if TYPE_CHECKING:
    from .capture.signals import RunSignals


@dataclass(frozen=True)
class RunSettings:
    encoding_name: str | None = None
    """The tiktoken encoding to align with; None: each model's own."""
    gap_ms: float | None = None
    """Gaps longer than this are stalls; None: the default."""
    timeout_s: float | None = None
    """End a stream as an error when nothing arrives for this long."""
    database: pathlib.Path | None = None
    """Where traces are written; None: not written."""
    live: bool = True
    """Show the text as it arrives."""
    live_view: bool = False
    """Show it in the live view, drawn on stdout (a terminal) by the tokenizer process,
    rather than as plain text (``liveview``)."""
    extract: str | None = None
    """``first`` or ``last``: show only that fenced code block of the answer (-x, --xl)."""
    wire: bool = False
    """Record every socket read of each response's request (``--wire``)."""


@dataclass(frozen=True)
class RunResult:
    run_id: str
    responses: tuple[Analysed, ...]
    problems: tuple[str, ...] = ()
    """What went wrong besides the stream itself (trace not saved, an encoding)."""
    warnings: tuple[str, ...] = ()
    failure: BaseException | None = None
    """What ended llm's command early, if anything did."""
    signal: int | None = None
    """A SIGINT or SIGTERM that came while the traces were being saved (they were), or
    that cut ``inspect -``'s reading short: the command ends with 128 + it."""


@dataclass(eq=False)
class _Watched:
    response: Any
    header: Trace
    record: Capture
    tokenizer: Any
    writer: Any = None
    events: Any = None
    """The capture's generator (sync responses), to close if llm left it unfinished."""
    wire_log: Any = None
    """With ``--wire``: the tap's ``WireLog`` of this response's request."""
    key: str | None = None
    """The key the request was sent with, to redact from its error."""


@dataclass(eq=False)
class Session:
    """The state of one run while llm's command runs. See ``run``."""

    settings: RunSettings
    notify: Callable[[str], None] = lambda message: None
    """Called with a note for the user that cannot wait for the end (a busy database)."""
    run_id: str = field(default_factory=new_trace_id)
    watched: list[_Watched] = field(default_factory=list)
    tokenizers: dict[str, Any] = field(default_factory=dict)
    live: Any = None
    tap: Any = None
    """With ``--wire``: the entered ``WireTap``."""
    _extracted: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.settings.live and not self.settings.live_view:
            from .views.live import LiveText
            from .views.sanitize import LIVE_TABLE

            self.live = LiveText(LIVE_TABLE)

    def expect(self, model: Any) -> None:
        """Start loading ``model``'s tokenizer now, while llm prepares the prompt."""
        from .analysis import encodings

        # A failure is said again, and stops the run, when the first response starts.
        with suppress(encodings.EncodingError):
            self._tokenizer(self._encoding(model)[0])

    def _encoding(self, model: Any) -> tuple[str, bool]:
        from .analysis import encodings

        if self.settings.encoding_name:
            return self.settings.encoding_name, True
        return encodings.encoding_for_model(model)

    def starting(self) -> None:
        """In a terminal, the live view's status line at once ("starting…"), drawn by
        the tokenizer process started for this run while llm started (``prestart``)."""
        from . import prestart

        if self.settings.live and self.settings.live_view and self.live is None:
            process = prestart.take(None, live=True)
            if process is not None:
                self._show_live(process).starting()

    def _tokenizer(self, name: str) -> Any:
        from . import prestart
        from .capture.tokenizer import start_tokenizer

        if name not in self.tokenizers:
            if self.settings.live and self.settings.live_view and self.live is None:
                # The first tokenizer also draws the live view: one process, one load.
                import sys

                from .analysis.encodings import check_encoding_name
                from .capture.tokenizer import TokenizerProcess
                from .views import livehost

                check_encoding_name(name)
                process = prestart.take(name, live=True)
                process = process or TokenizerProcess(
                    name, terminal=sys.stdout.fileno(), live_host=livehost.MODULE
                )
                self._show_live(process).starting()
            else:
                self.tokenizers[name] = prestart.take(name, live=False) or start_tokenizer(name)
        return self.tokenizers[name]

    def _show_live(self, process: Any) -> Any:
        """The live view, drawn by tokenizer ``process`` (which tokenizes for the run too)."""
        from .analysis.stats import gap_threshold
        from .views.liveview import LiveView

        self.live = LiveView(process, stall_ms=gap_threshold(self.settings.gap_ms))
        self.tokenizers[process.name] = process
        return self.live

    # -- while llm's command runs --------------------------------------------

    def begin(self, response: Any) -> Capture:
        """Everything a response needs before its request leaves."""
        from .analysis.encodings import EncodingError
        from .store.writer import TraceWriter

        model = response.model
        key = None
        if getattr(model, "needs_key", None) and hasattr(model, "get_key"):
            # llm would find the key missing inside the request: say so before a
            # trace is started (raises llm's own NeedsKeyException).
            key = model.get_key(getattr(response, "_key", None))
        prepare = getattr(model, "prepare", None)
        if callable(prepare):
            prepare()  # e.g. the simulator starts its server before the clock starts
        name, exact = self._encoding(model)
        tokenizer = self._tokenizer(name)
        # Loading anywhere on the machine while the request is in flight shows in
        # its timings; an encoding that cannot load fails here, before the request.
        tokenizer.wait_ready()
        for other in self.tokenizers.values():  # the live view's, started for a guess
            with suppress(EncodingError):
                other.wait_ready()
        prompt = response.prompt
        header = dataclasses.replace(
            new_trace(
                model_id=model.model_id,
                encoding_name=name,
                encoding_exact=exact,
                prompt=prompt.prompt or None,
                system=prompt.system or None,
                options={k: v for k, v in dict(prompt.options).items() if v is not None},
            ),
            run_id=self.run_id,
            run_index=len(self.watched),
        )
        record = Capture()
        watched = _Watched(response, header, record, tokenizer, key=key)
        if self.tap is not None:
            if self.tap.covers(model):
                watched.wire_log = self.tap.start()
            elif not any(w.response.model is model for w in self.watched):  # once a model
                self.notify(
                    f"--wire cannot see {model.model_id}'s requests (it covers llm's OpenAI "
                    "models, llm-anthropic and llm-gemini): going on without the wire"
                )
        if self.settings.database is not None:
            watched.writer = TraceWriter(self.settings.database, record.arrivals)
            watched.writer.open(header, defer=bool(self.watched))
            if watched.writer.busy:
                self.notify(
                    f"{watched.writer.path} is busy (another process is writing to it); "
                    "streaming anyway, the trace is written when it frees"
                )
        self.watched.append(watched)
        if self.live is not None:
            self.live.start(record, header)
        return record

    def ended(self, record: Capture) -> None:
        """A response's stream is over: show what is held back, stop background writes."""
        if self.live is not None:
            self.live.flush()
        for watched in self.watched:
            if watched.record is record and watched.writer is not None:
                watched.writer.stop()

    def show(self, event: Any) -> None:
        if self.settings.extract:
            if event.type == "text":
                self._extracted.append(event.chunk)
        elif self.live is not None:
            self.live.write(event)

    def displayed(self) -> None:
        """llm's display of the stream has ended (llm prints the final newline itself)."""
        if self.live is None:
            return
        if self.settings.extract:
            from llm.utils import extract_fenced_code_block

            text = "".join(self._extracted)
            block = extract_fenced_code_block(text, last=self.settings.extract == "last")
            self.live.write_text(block or text)
        self.live.close(final_newline=False)

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Wrap llm's streaming entry points for the duration of the block, then restore them."""
        import llm.cli
        from llm.models import AsyncResponse, Response

        stream_events = Response.stream_events
        astream_events = AsyncResponse.astream_events
        display = llm.cli.display_stream_events
        adisplay = llm.cli.display_async_stream_events
        timeout_s = self.settings.timeout_s
        session = self

        def watched_stream_events(response: Any) -> Any:
            if getattr(response, "_done", False):  # a replay from llm's buffer: no request
                return stream_events(response)
            record = session.begin(response)
            events = timed_events(
                stream_events(response), record, timeout_s=timeout_s, on_end=session.ended
            )
            session.watched[-1].events = events
            return events

        def watched_astream_events(response: Any) -> Any:
            if getattr(response, "_done", False):
                return astream_events(response)
            record = session.begin(response)
            return atimed_events(
                astream_events(response), record, timeout_s=timeout_s, on_end=session.ended
            )

        def display_stream_events(events: Any, *, show_reasoning: bool = True) -> None:
            if session.live is not None:
                session.live.show_reasoning = show_reasoning
            for event in events:
                session.show(event)
            session.displayed()

        async def display_async_stream_events(events: Any, *, show_reasoning: bool = True) -> None:
            if session.live is not None:
                session.live.show_reasoning = show_reasoning
            async for event in events:
                session.show(event)
            session.displayed()

        Response.stream_events = watched_stream_events  # type: ignore[method-assign]
        AsyncResponse.astream_events = watched_astream_events  # type: ignore[method-assign]
        llm.cli.display_stream_events = display_stream_events
        llm.cli.display_async_stream_events = display_async_stream_events
        try:
            if self.settings.wire:
                from .wire.tap import WireTap

                with WireTap() as self.tap:
                    yield
            else:
                yield
        finally:
            Response.stream_events = stream_events  # type: ignore[method-assign]
            AsyncResponse.astream_events = astream_events  # type: ignore[method-assign]
            llm.cli.display_stream_events = display
            llm.cli.display_async_stream_events = adisplay

    # -- after llm's command ---------------------------------------------------

    def finish(
        self,
        failure: BaseException | None = None,
        *,
        signals: RunSignals | None = None,
        on_busy: Callable[[RunResult], None] | None = None,
    ) -> RunResult:
        """Align, measure and store every response; close the helpers.

        A database that stays busy (``saving.save``) is waited for; meanwhile the run so
        far is handed to ``on_busy`` (to show), once. ``signals`` (holding) ends the wait.
        """
        from .analysis import encodings
        from .analysis.align import align
        from .analysis.stats import gap_threshold, measure
        from .store.saving import save, wait_note

        for watched in self.watched:
            if watched.events is not None:
                # A signal or Ctrl-C that arrived while llm's code (not the capture's)
                # ran leaves the generator suspended: closing it ends the capture
                # (collector, signal handlers, watchdog) as its own failure would.
                watched.events.close()
            record = watched.record
            unfinished = record.error in (UNFINISHED, ABANDONED) and record.stopped is None
            if failure is not None and unfinished:
                record.failed(failure)
        if self.live is not None:
            self.live.close()
        problems: list[str] = []
        warnings: list[str] = []
        responses: list[Analysed] = []
        stored: list[tuple[Trace, Alignment | None]] = []  # as the log keeps them: both clocks
        try:
            first_origin = next(
                (w.record.origin_ns for w in self.watched if w.record.origin_ns is not None), None
            )
            for watched in self.watched:
                origin = watched.record.origin_ns
                trace = watched.record.trace(watched.header, watched.response)
                trace = dataclasses.replace(
                    trace,
                    run_offset_ns=None
                    if origin is None or first_origin is None
                    else origin - first_origin,
                    error=redact(trace.error, [watched.key]),  # an error can echo the key
                )
                if watched.wire_log is not None and origin is not None:
                    trace, problem = _with_wire(trace, watched.wire_log, origin)
                    if problem:
                        warnings.append(problem)
                alignment = stats = None
                shown = trace  # on the clock of its stats; the log keeps both clocks apart
                try:
                    alignment = align(trace, watched.tokenizer)
                except encodings.EncodingError as ex:
                    problems.append(str(ex))
                else:
                    shown, shown_alignment, stats = measure(
                        trace, alignment, gap_ms=gap_threshold(self.settings.gap_ms)
                    )
                stored.append((trace, alignment))
                responses.append(Analysed(shown, None if stats is None else shown_alignment, stats))
        finally:
            for tokenizer in self.tokenizers.values():
                tokenizer.close()

        def result() -> RunResult:
            return RunResult(
                run_id=self.run_id,
                responses=tuple(responses),
                problems=tuple(dict.fromkeys(problems)),
                warnings=tuple(dict.fromkeys(warnings)),
                failure=failure,
            )

        busy_said: list[bool] = []

        def busy(database: pathlib.Path) -> None:
            if not busy_said:
                busy_said.append(True)
                if on_busy is not None:
                    on_busy(result())
                self.notify(wait_note(database))

        for i, (watched, analysed, (trace, alignment)) in enumerate(
            zip(self.watched, list(responses), stored)
        ):
            writer = watched.writer
            if writer is None:
                continue
            # llm's own record of a complete response goes in with the trace, in
            # one transaction (llm's prompt command is told not to log: its
            # read-then-write transaction can lose to any concurrent writer).
            complete = trace.status == STATUS_COMPLETE
            turn_id, problem = save(
                writer,
                trace,
                alignment,
                analysed.stats,
                watched.response if complete else None,
                signals=signals,
                on_busy=functools.partial(busy, writer.path),
            )
            if problem:
                problems.append(problem)
            else:
                responses[i] = dataclasses.replace(
                    analysed, trace=dataclasses.replace(analysed.trace, turn_id=turn_id)
                )
            if writer.warning:
                warnings.append(writer.warning)
        if self.settings.database is not None and not problems:
            warnings += _import_set_aside(self.settings.database, self.notify)
        return result()


def _import_set_aside(database: pathlib.Path, notify: Callable[[str], None]) -> list[str]:
    """Move traces an earlier run set aside into ``database``, now that it is free;
    the files that could not be moved."""
    from .store.saving import import_set_aside

    moved, problems = import_set_aside(database)
    if moved:
        traces = f"{len(moved)} trace{'s' if len(moved) != 1 else ''}"
        notify(f"{traces} set aside while {database} was locked now in it: {', '.join(moved)}")
    return problems


def _with_wire(trace: Trace, log: Any, origin_ns: int) -> tuple[Trace, str | None]:
    """``trace`` with what the tap's ``log`` saw of its request: the wire record, and
    each fragment's wire time. Returns the trace unchanged, and why, when the wire
    shows no event stream (nothing read, an error body)."""
    from .capture.match import wire_times
    from .wire.events import Read, Wire, WireError
    from .wire.formats import decode

    try:
        http = log.response()
        if http is None:
            return trace, "--wire saw no socket reads for this response (a pooled connection?)"
        reads = tuple(Read(r.t_ns - origin_ns, r.data) for r in http.body)  # type: ignore[operator]
        decoded = decode(reads)
    except WireError as ex:
        return trace, f"--wire: {ex}"
    url = None
    if log.host is not None:
        default_port = {"http": 80, "https": 443}.get(log.scheme or "")
        port = "" if log.port in (None, default_port) else f":{log.port}"
        url = f"{log.scheme}://{log.host}{port}{log.path or ''}"
    times = wire_times(trace.fragments, decoded)
    wire = Wire(
        source="socket",
        decoded=decoded,
        reads=reads,
        url=url,
        status=http.status,
        headers=dict(http.headers),
        headers_ns=None if http.headers_ns is None else http.headers_ns - origin_ns,
        wire_bytes=http.wire_bytes,
    )
    fragments = tuple(
        f if t is None else dataclasses.replace(f, wire_t_ns=t)
        for f, t in zip(trace.fragments, times)
    )
    return dataclasses.replace(trace, fragments=fragments, wire=wire), None


def run(
    invoke: Callable[[], Any],
    settings: RunSettings,
    *,
    notify: Callable[[str], None] | None = None,
    expected_model: Any = None,
    on_busy: Callable[[RunResult], None] | None = None,
    find_model: Callable[[], Any] | None = None,
) -> RunResult:
    """Call ``invoke`` (which runs llm's prompt command) with every response it streams captured.

    ``expected_model`` (or what ``find_model`` returns, called once the live view
    shows the run is starting) is the model llm will most likely use: its
    tokenizer starts loading before llm's command runs. Never raises what ended
    the command (or ``find_model``): it is the result's ``failure``, beside every
    response streamed before it. A Ctrl-C or SIGTERM once the command is over is
    the result's ``signal``: everything is saved first. ``on_busy``: see
    ``Session.finish``.
    """
    from .capture.signals import RunSignals

    session = Session(settings, notify=notify or (lambda message: None))
    session.starting()
    failure = None
    # From the first request to the last commit: a signal stops llm's command as
    # it would stop llm, then waits until what arrived is saved.
    with RunSignals() as signals:
        try:
            try:
                with _models_registered_once():
                    model = find_model() if find_model is not None else expected_model
                    if model is not None:
                        session.expect(model)
                    with session.watching():
                        invoke()
            finally:
                signals.hold()
        except BaseException as ex:
            failure = ex
        result = session.finish(failure, signals=signals, on_busy=on_busy)
    return dataclasses.replace(result, signal=signals.received)


LLM_READS_LOG = (
    "_continue",
    "conversation_id",
    "fragments",
    "system_fragments",
    "schema_input",
    "schema_multi",
    "template",
)
"""llm prompt's options that may read what llm keeps in its log database."""


def llm_reads_log(options: dict[str, Any]) -> bool:
    """Whether llm's prompt command, given ``options``, reads its log database (a
    conversation, a fragment or a schema by its id). When it does not, it is given
    one in memory: a run with -n never touches logs.db, and one whose log cannot be
    written still shows its views and ends with "trace not saved".

    >>> llm_reads_log({"_continue": True}), llm_reads_log({"prompt": "hi", "fragments": ()})
    (True, False)
    """
    return any(options.get(name) for name in LLM_READS_LOG)


@contextmanager
def _models_registered_once() -> Iterator[None]:
    """While the block runs, llm asks its plugins for their models once.

    llm registers every plugin's models again at each ``get_model`` (15 ms here,
    80 with llm-gemini, which builds pydantic classes each time); a run finds its
    model before llm's command does, and the command finds it again: the second
    time is the first's list, the same models.
    """
    import llm

    register = llm.get_models_with_aliases
    registered: list[list[Any]] = []

    def once() -> list[Any]:
        if not registered:
            registered.append(register())
        return list(registered[0])

    llm.get_models_with_aliases = once
    try:
        yield
    finally:
        llm.get_models_with_aliases = register
