"""Click parameter types the commands share (imports nothing heavy: ``llm --help``
builds every command).

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

from typing import Any

import click

from .wire import FORMAT_ALIASES, FORMATS


class FormatChoice(click.Choice):
    """A provider format by its name in ``wire.FORMATS`` (an older spelling too)."""

    def __init__(self) -> None:
        super().__init__(FORMATS)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return super().convert(FORMAT_ALIASES.get(value, value), param, ctx)
