"""Click types the commands share (imports nothing heavy: ``llm --help`` builds
every command).

``FormatChoice`` is the one ``--format`` of a provider format, in ``inspect``,
``whatif`` and ``serve`` alike: the names of ``wire.FORMATS``, and the older
spellings of ``wire.FORMAT_ALIASES`` taken as the names they stand for.

>>> import click
>>> FormatChoice().convert("openai", None, None)
'openai-chat'
>>> FormatChoice().convert("gemini", None, None)
'gemini'
"""

from __future__ import annotations

import inspect
from typing import Any

import click

from ..analysis.numbers import Bounded
from ..capture.signals import QuietInterruptGroup
from ..wire import FORMAT_ALIASES, FORMATS


def summary(help: str) -> str:
    r"""A command's summary: the first sentence of its help, whole.

    >>> summary("Show a logged run: the same views\n    as a run.\n\nMore here.")
    'Show a logged run: the same views as a run.'
    >>> summary("Serve it. Until Ctrl-C.")
    'Serve it.'
    """
    paragraph = " ".join(inspect.cleandoc(help).split("\n\n")[0].split())
    end = paragraph.find(". ")
    return paragraph if end < 0 else paragraph[: end + 1]


class CommandGroup(QuietInterruptGroup):
    """A group whose ``--help`` lists each command's summary whole: click cuts a
    summary that does not fit one line with "...", this one wraps it. Ctrl-C that
    nothing else handled ends it with 130 and no more (``QuietInterruptGroup``)."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        for command in self.commands.values():
            if command.short_help is None and command.help:
                command.short_help = summary(command.help)
        super().format_commands(ctx, formatter)


class FormatChoice(click.Choice):
    """A provider format by its name in ``wire.FORMATS`` (an older spelling too)."""

    def __init__(self) -> None:
        super().__init__(FORMATS)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return super().convert(FORMAT_ALIASES.get(value, value), param, ctx)


class SimOption(click.Option):
    """An option that is None unless given (the server's defaults then apply, a
    route's own profile among them), and whose help shows the simulator's default
    as click shows a default: ``[default: 60; x>=0]``."""

    def __init__(self, *args: Any, shown_default: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shown_default = shown_default

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        if self.shown_default is not None:
            extra["default"] = self.shown_default
        return extra


def sim_options() -> list[click.Option]:
    """One option per simulator option (``--stall-after``), typed and bounded as
    ``SimOptions`` defines it, so click shows and checks it as its own options
    (``INTEGER RANGE``, ``[default: 60; x>=0]``, ``[gpt-4o-mini|...]``); the
    values are checked again by ``SimOptions.from_strings``. Imports the simulator."""
    from typing import get_args

    import annotated_types

    from ..sim import profiles, texts
    from ..sim.options import SimOptions

    choices = {"profile": tuple(profiles.PROFILES), "text": tuple(texts.sample_names())}
    options: list[click.Option] = []
    for name, info in SimOptions.model_fields.items():
        types = (info.annotation, *get_args(info.annotation))
        kind = next(t for t in (int, float, str) if t in types)
        bounds: dict[str, Any] = {}
        for rule in info.metadata:
            if isinstance(rule, annotated_types.Ge):
                bounds["min"] = rule.ge
            elif isinstance(rule, annotated_types.Gt):
                bounds |= {"min": rule.gt, "min_open": True}
            elif isinstance(rule, annotated_types.Le):
                bounds["max"] = rule.le
        type_: Any
        if name in choices:
            type_ = click.Choice(choices[name])
        elif "min" in bounds and "max" in bounds:  # every number: a finite range
            type_ = Bounded(
                bounds["min"],
                bounds["max"],
                min_open=bounds.get("min_open", False),
                integer=kind is int,
            )
        elif bounds:
            type_ = click.IntRange(**bounds) if kind is int else click.FloatRange(**bounds)
        else:
            type_ = {int: click.INT, float: click.FLOAT, str: click.STRING}[kind]
        default = info.default
        if name == "profile":
            shown = "the --format's own"  # each route has its provider's profile
        else:
            shown = f"{default:g}" if isinstance(default, float) else default
        options.append(
            SimOption(
                ["--" + name.replace("_", "-"), name],
                type=type_,
                help=info.description,
                shown_default=None if shown is None else str(shown),
            )
        )
    return options
