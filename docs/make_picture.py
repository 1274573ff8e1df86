"""Draw docs/streamscope.svg, the README's picture, with streamscope itself.

A seeded simulator run (Claude's chunking: one to five tokens per chunk, its
half-second TTFT, a stall), streamed over loopback HTTP at its own pace, its
views drawn by ``--svg``. The chunking is the same every time; the times are
those of the run, so they move a little from one drawing to the next.

    .venv/bin/python docs/make_picture.py
"""

import os
import pathlib
import subprocess
import sys
import tempfile

PICTURE = pathlib.Path(__file__).with_name("streamscope.svg")
RUN = [
    *("-m", "streamscope-sim"),
    *("-o", "seed", "1", "-o", "profile", "claude-haiku", "-o", "chunks", "24"),
    *("--no-live", "--no-log"),
    "Why does streaming feel fast?",
]


def main() -> None:
    with tempfile.TemporaryDirectory() as user_path:
        env = {**os.environ, "LLM_USER_PATH": user_path, "NO_COLOR": "1"}
        command = [sys.executable, "-m", "llm", "streamscope", *RUN, "--svg", str(PICTURE)]
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    print(f"wrote {PICTURE}")


if __name__ == "__main__":
    main()
