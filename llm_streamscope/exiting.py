"""The end of the ``llm streamscope`` process, once its run has printed everything.

After the last line, Python's own exit tears down every module llm imported
(the providers' SDKs, pydantic: hundreds of thousands of objects), which takes
longer than the run's own work after the stream: the user waits for the prompt
with nothing left to happen. When this process is the ``llm streamscope``
command itself (``prestart`` saw it on the command line: never in-process, as
under tests), the run ends it as Python's exit would, less the teardown: other
threads are waited for, the atexit functions run, standard output and error are
flushed, then ``os._exit``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading


def end_process(code: int) -> None:
    """End the process with exit status ``code`` if it is the command; else return."""
    from . import prestart

    if not prestart.is_the_command:
        return
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing more can reach it
            stream.flush()
    os._exit(code)
