"""``python -m llm_streamscope.sim [--port N] [--profile P] [--seed N] ...``: the simulator server
in the foreground.

The first line on standard output is the OpenAI base URL (benchmarks and tests
read it); how to point clients at the server follows on standard error. The
simulator options given here are the server's defaults, for requests that do not
set them (llm-anthropic cannot). Ctrl-C or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from . import profiles
from .options import SIM_OPTIONS, InvalidOption, SimOptions, add_arguments
from .server import SimServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llm_streamscope.sim",
        description="Serve the streamscope simulator on 127.0.0.1: OpenAI chat.completions "
        "(/v1/chat/completions) and Anthropic Messages (/v1/messages). The options below "
        "are defaults for requests that do not set them.",
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    defaults = parser.add_argument_group(
        "simulator defaults",
        "Anthropic requests default to the claude-haiku profile unless --profile is given.",
    )
    add_arguments(defaults)
    return parser


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        given = SimOptions.from_strings({name: getattr(args, name) for name in SIM_OPTIONS})
    except InvalidOption as e:
        parser.error(e.message)
    # Only what was given: the others keep each route's own defaults.
    server = SimServer(
        args.port, verbose=args.verbose, defaults=given.model_dump(exclude_unset=True)
    )
    # Load the encoding and tokenize the samples now: done inside the first request,
    # it delayed that response's first chunk by ~600 ms, then sent a burst.
    profiles.prepare_samples()
    signal.signal(signal.SIGTERM, _stop)
    print(server.base_url, flush=True)
    print(
        f"OpenAI format:    base URL {server.base_url} (api_base in extra-openai-models.yaml;"
        " STREAMSCOPE_SIM_URL for the streamscope-sim model)\n"
        f"Anthropic format: ANTHROPIC_BASE_URL={server.url} ANTHROPIC_API_KEY=any"
        " (llm-anthropic)\n"
        f"Gemini format:    {server.url}/v1beta/models/MODEL:streamGenerateContent[?alt=sse]"
        " (llm-gemini reaches it only through an https proxy)\n"
        "Ctrl-C stops the server.",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
