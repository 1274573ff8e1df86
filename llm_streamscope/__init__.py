"""llm-streamscope: see how a language model's answer actually arrives.

Only the llm hooks live here. Nothing heavy is imported at plugin load time, so
``llm --help`` stays as fast as it was, and the tokenizer process (which imports
this package) does not pay for importing llm: the marker is pluggy's own, the
same one ``llm.hookimpl`` is. The one thing done at import is for ``llm
streamscope`` alone: its tokenizer process starts then (``prestart``).
"""

import sys

from pluggy import HookimplMarker

from . import prestart
from ._version import __version__ as __version__

hookimpl = HookimplMarker("llm")

if sys.argv[1:2] == ["streamscope"]:  # llm goes on loading plugins: seconds, at times
    from .capture.signals import quiet_at_start_up

    quiet_at_start_up()
prestart.from_command_line()  # `llm streamscope`: its tokenizer loads while llm starts


@hookimpl
def register_models(register):
    from .sim.model import AsyncSimChat, SimChat

    register(SimChat(), AsyncSimChat())


@hookimpl
def register_commands(cli):
    import click

    from .cli import streamscope

    # Added here, not in cli/, so that the version is read from one place only
    version = click.version_option(__version__, prog_name="llm-streamscope")
    cli.add_command(version(streamscope))
