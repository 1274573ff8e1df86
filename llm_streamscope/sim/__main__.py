"""``python -m llm_streamscope.sim [--port N]``: run the simulator server in the foreground."""

from __future__ import annotations

import argparse

from .server import SimServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m llm_streamscope.sim",
        description="Serve the streamscope simulator (OpenAI chat.completions) on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    server = SimServer(args.port, verbose=args.verbose)
    print(server.base_url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
