"""The run's tokenizer process, started while llm itself is still starting up.

llm imports every plugin before it reads its command line, and then the
providers' SDKs (openai, anthropic: most of the 0.8 to 3 seconds ``llm`` takes
to start). Loading an encoding takes a tenth to a third of a second of CPU. So
when this package is imported by ``llm streamscope`` (the run command), it
starts the tokenizer process at once, for the encoding the command line points
to, and the load runs on another core while llm goes on starting: by the time
the request is ready to leave, the encoding is usually loaded, and the request
leaves when plain ``llm prompt``'s would.

The guess is the command line's ``--encoding``, else the encoding tiktoken's
table gives the model named by ``-m`` (or ``LLM_MODEL``, or llm's default model),
else ``o200k_base``. The run takes the process (``take``) when it asks for the
same encoding; otherwise, or when no run takes it (an error, ``--help``), it is
let go when the run asks for another one, or at exit.

>>> plan(["llm", "streamscope", "-m", "gpt-4", "hi"], {}, terminal=False)
Plan(model_id='gpt-4', encoding=None, live=False)
>>> plan(["llm", "streamscope", "logs"], {}, terminal=True) is None
True
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .capture.tokenizer import TokenizerProcess

GROUP = "streamscope"
OTHER_COMMANDS = frozenset(
    ("compare", "export", "inspect", "logs", "replay", "serve", "show", "whatif")
)
"""The group's commands besides ``run`` (the default): they load no tokenizer up front
(tests/test_prestart.py checks this against the group)."""
_NOT_A_RUN = frozenset(("--help", "-h", "--version", "--show-model-options", "--save"))
_NO_VIEW = frozenset(("--no-live", "--json", "-x", "--extract", "--xl", "--extract-last"))


@dataclass(frozen=True)
class Plan:
    """What a command line says of the run it starts, read without click."""

    model_id: str | None
    encoding: str | None
    live: bool
    """The live view can draw (stdout is a colour terminal, no option turns it off)."""


def plan(argv: Sequence[str], environ: Mapping[str, str], *, terminal: bool) -> Plan | None:
    """The run ``argv`` starts, if it is ``llm streamscope [run] ...``; else None.

    ``terminal``: whether stdout is one the live view can draw on.

    >>> plan(["/venv/bin/llm", "streamscope", "run", "--encoding=cl100k_base", "x"], {},
    ...      terminal=True)
    Plan(model_id=None, encoding='cl100k_base', live=True)
    >>> plan(["llm", "streamscope", "--json", "x"], {"LLM_MODEL": "gpt-4o"}, terminal=True)
    Plan(model_id='gpt-4o', encoding=None, live=False)
    """
    if len(argv) < 2 or not _is_llm(argv[0]) or argv[1] != GROUP:
        return None
    args = list(argv[2:])
    if args[:1] == ["run"]:
        args = args[1:]
    elif args and args[0] in OTHER_COMMANDS:
        return None
    if "--" in args:  # what follows is the prompt, not options
        args = args[: args.index("--")]
    if _NOT_A_RUN.intersection(args):
        return None
    model_id = _value(args, ("-m", "--model")) or environ.get("LLM_MODEL") or None
    encoding = _value(args, ("--encoding",))
    return Plan(model_id, encoding, terminal and not _NO_VIEW.intersection(args))


def _is_llm(program: str) -> bool:
    """``llm`` (its script) or ``python -m llm`` (argv[0] is then llm's ``__main__.py``)."""
    path = os.path.normcase(program)
    name = os.path.splitext(os.path.basename(path))[0]
    parent = os.path.basename(os.path.dirname(path))
    return name == "llm" or (name == "__main__" and parent == "llm")


def _value(args: list[str], names: tuple[str, ...]) -> str | None:
    """The last value given to the option ``names`` (``-m X``, ``--model=X``, ``-mX``)."""
    found = None
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                found = args[i + 1]
            elif name.startswith("--") and arg.startswith(name + "="):
                found = arg[len(name) + 1 :]
            elif not name.startswith("--") and arg.startswith(name) and len(arg) > len(name):
                found = arg[len(name) :]
    return found


# ====================
# The process
# ====================

_started: TokenizerProcess | None = None
is_the_command = False
"""Whether this process is ``llm streamscope`` running a prompt, from its command line."""


def from_command_line() -> None:
    """Start the tokenizer process if this process is ``llm streamscope`` running a prompt.

    Called when llm imports the plugin; costs nothing for any other command.
    """
    if len(sys.argv) < 2 or sys.argv[1] != GROUP:
        return
    from .views.live import can_draw

    global is_the_command
    found = plan(sys.argv, os.environ, terminal=can_draw(sys.stdout))
    if found is not None:
        is_the_command = True
        start(found)


def start(found: Plan) -> None:
    """Start the process ``found`` asks for (one at a time); a bad name starts nothing."""
    global _started
    from .analysis import encodings
    from .capture.tokenizer import TokenizerProcess
    from .views import livehost

    name = found.encoding or _model_encoding(found.model_id)
    try:
        encodings.check_encoding_name(name)
        if found.live:  # the process draws the live view too: one process, one load
            process = TokenizerProcess(
                name, terminal=sys.stdout.fileno(), live_host=livehost.MODULE
            )
        else:
            process = TokenizerProcess(name)
    except (encodings.EncodingError, OSError, ValueError):
        return  # the run starts its own, and says what is wrong
    let_go()
    _started = process


def _model_encoding(model_id: str | None) -> str:
    from .analysis import encodings

    if model_id is None:
        try:
            import llm

            model_id = llm.get_default_model()
        except Exception:  # an unreadable llm folder: llm itself will say so
            return encodings.DEFAULT_ENCODING
    return encodings.encoding_for_model_name(model_id) or encodings.DEFAULT_ENCODING


def take(name: str | None, *, live: bool) -> TokenizerProcess | None:
    """The process started for this run, if it loads ``name`` (None: any encoding) and,
    with ``live``, can draw the live view; it is the caller's from then on. A process
    that does not fit is let go."""
    global _started
    process = _started
    if process is None:
        return None
    if (name is None or process.name == name) and (process.draws or not live):
        _started = None
        return process
    let_go()
    return None


def let_go() -> None:
    """Close the process no run has taken (it is killed if still loading)."""
    global _started
    if _started is not None:
        _started.close()
        _started = None


atexit.register(let_go)
