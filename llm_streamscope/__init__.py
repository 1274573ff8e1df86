"""llm-streamscope: see how a language model's answer actually arrives.

Only the llm hooks live here. Nothing heavy is imported at plugin load time, so
``llm --help`` stays as fast as it was, and the tokenizer process (which imports
this package) does not pay for importing llm: the marker is pluggy's own, the
same one ``llm.hookimpl`` is.
"""

import sys

from pluggy import HookimplMarker

hookimpl = HookimplMarker("llm")

if sys.argv[1:2] == ["streamscope"]:  # llm goes on loading plugins: seconds, at times
    from .capture.signals import quiet_at_start_up

    quiet_at_start_up()


@hookimpl
def register_models(register):
    from .sim.model import AsyncSimChat, SimChat

    register(SimChat(), AsyncSimChat())


@hookimpl
def register_commands(cli):
    from .cli import streamscope

    cli.add_command(streamscope)
