"""The ``llm streamscope`` command group: one module per command (or pair of them),
each holding only its options, the calls it makes and its printing; ``common`` holds
the group and what the commands share. Importing a command's module adds it to the
group.
"""

from . import compare, export, inspect, logs, replay, run, serve, whatif  # noqa: F401
from .common import streamscope
from .serve import serve_command

__all__ = ["serve_command", "streamscope"]
