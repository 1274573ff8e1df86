"""``llm streamscope serve``: the simulator as a server for any client."""

from __future__ import annotations

import pathlib
from typing import Any

import click

from ..analysis.numbers import Bounded
from ..serving import DEFAULT_FORMAT, LOOPBACK
from ..views.sanitize import echo_line, visible
from .common import streamscope
from .types import FormatChoice


class ServeCommand(click.Command):
    """A command with one option per simulator option (``--stall-after``), added the
    first time they are needed (parsing, help): reading them imports the simulator."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not getattr(self, "_with_sim_options", False):
            from .types import sim_options

            self.params += sim_options()
            self._with_sim_options = True
        return super().get_params(ctx)


@streamscope.command(name="serve", cls=ServeCommand)
@click.option(
    "serve_format",
    "--format",
    type=FormatChoice(),
    default=DEFAULT_FORMAT,
    show_default=True,
    help="The format the printed URL and instructions are for (every format is served)",
)
@click.option(
    "--port",
    type=Bounded(0, 65535, integer=True),
    default=8000,
    show_default=True,
    help="Port to listen on (0: a free one)",
)
@click.option(
    "--host",
    default=LOOPBACK,
    show_default=True,
    help="Address to listen on; anything but loopback lets other machines in",
)
@click.option(
    "--replay",
    type=click.Path(dir_okay=False, path_type=pathlib.Path),
    help="Serve this captured stream (anything inspect reads) on its format's route",
)
@click.option(
    "--timing",
    type=click.Path(dir_okay=False, path_type=pathlib.Path),
    help="When the --replay file's bytes arrived (t_seconds<TAB>byte_offset lines;"
    " default: FILE.times beside it, else the profile's timing)",
)
@click.option("--verbose", is_flag=True, help="Log every request to standard error")
def serve_command(
    serve_format: str,
    port: int,
    host: str,
    replay: pathlib.Path | None,
    timing: pathlib.Path | None,
    verbose: bool,
    **sim_options: Any,
) -> None:
    """Serve the simulator over HTTP, for any client, until Ctrl-C.

    One server speaks every format at once (OpenAI chat, Anthropic Messages,
    Gemini; see --format). The first line on standard output is the base URL;
    how to point clients at it follows on standard error. The simulator options
    below are the server's defaults for requests that do not set them (in a
    "streamscope" body object); the network conditions (--latency-ms, --ttft-ms,
    --jitter-ms, --bandwidth, --keepalive-ms, --stall-after, --drop-after,
    --error) apply to every response. --seed makes chunking and timing the same
    on every request.

    \b
        llm streamscope serve --profile gpt-4o-mini --port 8000
        llm streamscope serve --format anthropic --ttft-ms 400 --stall-after 5 --stall-s 2
        llm streamscope serve --replay capture.sse --timing capture.sse.times
    """
    from ..serving import ServeError, ServeSettings, Serving, exposed, instructions, serve

    def announce(serving: Serving) -> None:
        click.echo(serving.base_url)
        if exposed(host):
            echo_line(
                f"Warning: listening on {host}: other machines can reach the simulator "
                "(no key, no TLS)"
            )
        for line in instructions(serving):  # with newlines: the lines of a YAML file
            click.echo(visible(line), err=True)

    settings = ServeSettings(
        format=serve_format,
        port=port,
        host=host,
        defaults=sim_options,
        replay=replay,
        timing=timing,
        verbose=verbose,
    )
    from ..sim.options import InvalidOption

    try:
        serve(settings, announce)
    except InvalidOption as ex:
        raise click.UsageError(ex.message, click.get_current_context()) from None
    except ServeError as ex:
        raise click.ClickException(str(ex)) from None
