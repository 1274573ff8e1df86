"""``llm streamscope replay``: a logged run played again at the timing it arrived with."""

from __future__ import annotations

import pathlib
import sys

import click

from ..analysis.numbers import SPEED
from .common import (
    VIEW_CHOICES,
    Views,
    _analysed,
    _can_draw,
    _load_run,
    database_option,
    present_run,
    streamscope,
    timeline_option,
    trace_selector,
)


@streamscope.command(name="replay")
@trace_selector
@click.option(
    "--speed",
    type=SPEED,
    default=1.0,
    show_default=True,
    help="Time scale: 2 plays twice as fast, 0 at once",
)
@click.option(
    "--view",
    type=click.Choice(VIEW_CHOICES),
    default="both",
    show_default=True,
    help="Show token boundaries, chunk boundaries or both",
)
@timeline_option
@click.option("--no-live", is_flag=True, help="Plain text instead of the live view")
@database_option
def replay_command(
    trace_id: str | None,
    latest: bool,
    speed: float,
    view: str,
    timeline: str | None,
    no_live: bool,
    database: pathlib.Path | None,
) -> None:
    """Replay a logged run or trace live, at the timing it arrived with, then its views.

    In a terminal it replays in the live view, as a run shows it."""
    from ..capture.signals import interruption_code, interruption_words
    from ..replaying import replay

    result = _load_run(database, trace_id, latest)
    live_view = not no_live and _can_draw(sys.stdout)
    interrupted = replay(result.responses, speed=speed, live_view=live_view)
    present_run(result.run_id, _analysed(result), Views(view=view, timeline=timeline))
    if interrupted is not None:
        click.echo(f"Error: replay {interruption_words(interrupted)}", err=True)
        sys.exit(interruption_code(interrupted))
