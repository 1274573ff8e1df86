"""The ``llm streamscope`` command group.

The only module that prints, owns a rich ``Console`` and raises
``click.ClickException``. Heavy imports (rich, tiktoken, the simulator) happen
inside the commands so that ``llm --help`` does not pay for them.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click
from click_default_group import DefaultGroup

if TYPE_CHECKING:
    from rich.console import Console

    from .trace import Fragment

VIEW_CHOICES = ("both", "tokens", "chunks")


@click.group(cls=DefaultGroup, default="run", default_if_no_args=False)
def streamscope() -> None:
    """See how a model's answer actually arrives.

    Streams a prompt, timestamps every fragment the moment it arrives, aligns the
    fragments with the model's BPE tokens and reports TTFT, gaps, stalls, tokens
    per chunk and tokens/s. `run` is the default command:

    \b
        llm streamscope -m streamscope-sim "Why does streaming feel fast?"
        llm streamscope -m gpt-4o-mini "Explain SSE" --json
        llm streamscope run --help
    """


@streamscope.command(name="run")
@click.argument("prompt", required=False)
@click.option("model_id", "-m", "--model", help="Model to use", envvar="LLM_MODEL")
@click.option("-s", "--system", help="System prompt to use")
@click.option(
    "options",
    "-o",
    "--option",
    type=(str, str),
    multiple=True,
    help="key/value options for the model",
)
@click.option("--key", help="API key to use")
@click.option(
    "encoding_name",
    "--encoding",
    help="tiktoken encoding to align with (default: the model's, else o200k_base)",
)
@click.option(
    "--view",
    type=click.Choice(VIEW_CHOICES),
    default="both",
    show_default=True,
    help="Show token boundaries, chunk boundaries or both",
)
@click.option(
    "--gap-ms",
    type=click.FloatRange(min=0),
    default=50.0,
    show_default=True,
    help="Gaps between chunks longer than this count as stalls",
)
@click.option("json_", "--json", is_flag=True, help="Output one JSON document instead of views")
def run(
    prompt: str | None,
    model_id: str | None,
    system: str | None,
    options: tuple[tuple[str, str], ...],
    key: str | None,
    encoding_name: str | None,
    view: str,
    gap_ms: float,
    json_: bool,
) -> None:
    """Stream PROMPT and show how it arrived: live text, alignment view, rate stats.

    The prompt comes from the argument and/or standard input, as with `llm prompt`.
    """
    import llm

    from . import encodings
    from .align import align
    from .capture import capture
    from .render import LIVE_TABLE, AlignmentPanel, stats_table, trace_document
    from .stats import compute_stats
    from .trace import STATUS_COMPLETE, STATUS_INTERRUPTED

    model = _resolve_model(llm, model_id)
    prompt_kwargs = _validated_options(llm, model, options)
    if isinstance(model, llm.KeyModel):
        if model.needs_key:
            try:
                model.get_key(key)
            except llm.NeedsKeyException as ex:
                raise click.ClickException(str(ex)) from None
        prompt_kwargs["key"] = key
    prompt = _read_prompt(prompt)

    if encoding_name:
        try:
            encodings.check_encoding_name(encoding_name)  # fail before the request, not after
        except encodings.EncodingError as ex:
            raise click.ClickException(str(ex)) from None
        exact = True
    else:
        encoding_name, exact = encodings.encoding_for_model(model)
    prepare = getattr(model, "prepare", None)
    if callable(prepare):
        prepare()  # e.g. the simulator starts its server before the clock starts
    loader = encodings.EncodingLoader(encoding_name)

    live = None if json_ else LiveText(LIVE_TABLE)
    trace = capture(
        model.prompt(prompt, system=system, stream=True, **prompt_kwargs),
        model_id=model.model_id,
        encoding_name=encoding_name,
        encoding_exact=exact,
        prompt=prompt,
        system=system,
        options={k: v for k, v in prompt_kwargs.items() if k != "key"},
        on_fragment=live.write if live else None,
    )
    if live:
        live.close()

    try:
        encoding = loader.result()
    except encodings.EncodingError as ex:
        raise click.ClickException(str(ex)) from None
    alignment = align(trace, encoding)
    stats = compute_stats(trace, alignment, gap_ms=gap_ms)

    if json_:
        click.echo(
            json.dumps(
                trace_document(trace, alignment, stats), ensure_ascii=False, indent=2, default=str
            )
        )
    elif trace.fragments:
        console = make_console()
        color = console.color_system is not None
        if not exact:
            console.print(
                f"Encoding {encoding_name} is approximate: tiktoken does not know "
                f"{model.model_id}'s tokenizer (set one with --encoding).",
                style="yellow",
                markup=False,
                highlight=False,
            )
        console.rule("alignment", style="dim")
        console.print(AlignmentPanel(alignment, view=view, color=color))
        console.rule("stats", style="dim")
        console.print(stats_table(trace, stats))

    if trace.status != STATUS_COMPLETE:
        received = len(trace.fragments)
        where = f" after {received} fragment{'s' if received != 1 else ''}" if received else ""
        click.echo(f"Error: stream {trace.status}{where}: {trace.error}", err=True)
        sys.exit(130 if trace.status == STATUS_INTERRUPTED else 1)


class LiveText:
    """Writes text fragments to stdout as they arrive, as ``llm`` does.

    Reasoning goes to stderr, dimmed, like ``llm prompt``. Control characters are
    made visible before anything reaches the terminal.
    """

    def __init__(self, table: dict[int, str]):
        self.table = table
        self.out = sys.stdout
        self.err = sys.stderr
        self.last = "\n"
        self.was_reasoning = False

    def write(self, fragment: Fragment) -> None:
        if not fragment.text:
            return
        if fragment.kind == "text":
            if self.was_reasoning:
                self.err.write("\n")
                self.was_reasoning = False
            self.out.write(fragment.text.translate(self.table))
            self.out.flush()
            self.last = fragment.text[-1]
        elif fragment.kind == "reasoning":
            self.was_reasoning = True
            self.err.write(click.style(fragment.text.translate(self.table), dim=True))
            self.err.flush()

    def close(self) -> None:
        if self.last != "\n":
            self.out.write("\n")
        self.out.flush()


def make_console() -> Console:
    """A console for stdout: styled on a terminal, plain text when piped or with NO_COLOR."""
    import os

    from rich.console import Console

    # NO_COLOR means plain text here (rich alone would drop colours but keep bold).
    plain = bool(os.environ.get("NO_COLOR"))
    # highlight=False: rich must not colour numbers or URLs inside model text.
    return Console(highlight=False, soft_wrap=False, color_system=None if plain else "auto")


def _resolve_model(llm: Any, model_id: str | None) -> Any:
    try:
        model = llm.get_model(model_id or llm.get_default_model())
    except llm.UnknownModelError as ex:
        raise click.ClickException(str(ex)) from None
    if not model.can_stream:
        raise click.ClickException(
            f"Model {model.model_id} cannot stream, so there is nothing to time: "
            "streamscope needs a streaming model"
        )
    return model


def _validated_options(llm: Any, model: Any, options: tuple[tuple[str, str], ...]) -> dict:
    """Validate -o options with the model's own pydantic class, as `llm prompt` does."""
    import pydantic
    from llm.cli import get_model_options, render_errors

    validated: dict[str, Any] = {}
    if options:
        try:
            validated = {k: v for k, v in model.Options(**dict(options)) if v is not None}
        except pydantic.ValidationError as ex:
            raise click.ClickException(" ".join(render_errors(ex.errors()).split())) from None
    for k, v in get_model_options(model.model_id).items():
        validated.setdefault(k, v)
    return validated


def _read_prompt(prompt: str | None) -> str:
    """The prompt argument, with anything piped on stdin before it (as `llm prompt`)."""
    stdin = sys.stdin
    if stdin is not None and not stdin.isatty():
        piped = stdin.read()
        if piped:
            prompt = f"{piped} {prompt}" if prompt else piped
    elif prompt is None and stdin is not None:
        prompt = stdin.read()
    if not prompt or not prompt.strip():
        raise click.ClickException("No prompt: give one as an argument or on standard input")
    return prompt
