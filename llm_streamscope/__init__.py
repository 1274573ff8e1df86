"""llm-streamscope: see how a language model's answer actually arrives.

Only the llm hooks live here. Nothing heavy is imported at plugin load time, so
``llm --help`` stays as fast as it was, and the tokenizer process (which imports
this package) does not pay for importing llm: the marker is pluggy's own, the
same one ``llm.hookimpl`` is. The one thing done at import is for ``llm
streamscope`` alone: its tokenizer process starts then (``prestart``).
"""

from pluggy import HookimplMarker

from . import prestart

hookimpl = HookimplMarker("llm")

prestart.from_command_line()  # `llm streamscope`: its tokenizer loads while llm starts


@hookimpl
def register_models(register):
    from .sim.model import AsyncSimChat, SimChat

    register(SimChat(), AsyncSimChat())


@hookimpl
def register_commands(cli):
    from .cli import streamscope

    cli.add_command(streamscope)
