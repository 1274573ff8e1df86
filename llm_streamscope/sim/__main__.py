"""``python -m llm_streamscope.sim [--port N] [--profile P] [--seed N] ...``: the simulator server
in the foreground.

The same command as ``llm streamscope serve`` (:mod:`llm_streamscope.serving`),
on a free port unless ``--port`` says otherwise. The first line on standard
output is the base URL (benchmarks and tests read it); how to point clients at
the server follows on standard error. Ctrl-C or SIGTERM stops it.
"""

from __future__ import annotations

from ..cli import serve_command


def main(argv: list[str] | None = None) -> None:
    serve_command.main(argv, prog_name="python -m llm_streamscope.sim", default_map={"port": 0})


if __name__ == "__main__":
    main()
