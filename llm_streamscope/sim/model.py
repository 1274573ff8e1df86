"""The ``streamscope-sim`` model: llm's real OpenAI Chat model (and its async twin, AsyncChat),
pointed at the loopback server.

Nothing here starts a server or loads a tokenizer at import or registration
time (``llm models`` stays cheap): the server starts on the first prompt, or
in :meth:`SimChat.prepare`.
"""

from __future__ import annotations

import os
from typing import Any

import llm
from llm.default_plugins.openai_models import AsyncChat, Chat
from pydantic import Field

from . import profiles, texts
from .options import SIM_OPTIONS, llm_options

MODEL_ID = "streamscope-sim"
URL_ENV = "STREAMSCOPE_SIM_URL"
"""Set to a running simulator's base URL (``python -m llm_streamscope.sim`` prints it)
to use that server instead of starting one in this process."""


class _Sim:
    """What the sync and async models share (mixed in before llm's Chat / AsyncChat)."""

    model_id = MODEL_ID
    needs_key = None  # llm types it str; None = no key
    key_env_var = None
    can_stream = True
    tiktoken_encoding = texts.ENCODING_NAME
    """The encoding the simulator cuts its chunks with (read by streamscope's alignment)."""

    Options = llm_options(
        llm.Options,
        # An ordinary OpenAI parameter, not one of the simulator's own options.
        max_tokens=(
            int | None,
            Field(
                default=None,
                ge=1,
                description="Stop after this many tokens (finish_reason 'length')",
            ),
        ),
    )
    api_base: str | None

    def __init__(self) -> None:
        # _Shared.__init__ sets instance attributes; keep what the class (or a subclass) says.
        super().__init__(  # type: ignore[call-arg]
            type(self).model_id,
            can_stream=type(self).can_stream,
            supports_tools=True,
            supports_schema=True,
            vision=True,  # accepts image and PDF attachments (and ignores what they show)
        )

    def __str__(self) -> str:
        return f"Streamscope simulator: {self.model_id}"

    def prepare(self) -> None:
        """Start the server and tokenize the samples, so neither lands inside a measured TTFT."""
        if os.environ.get(URL_ENV):
            return  # another process serves: nothing here to start
        from .server import get_server

        get_server()
        profiles.prepare_samples()

    def build_kwargs(self, prompt: Any, stream: bool) -> dict[str, Any]:
        kwargs: dict[str, Any] = super().build_kwargs(prompt, stream)  # type: ignore[misc]
        options = {name: kwargs.pop(name) for name in SIM_OPTIONS if name in kwargs}
        kwargs["extra_body"] = {"streamscope": options}
        return kwargs

    def get_client(self, key: str | None, *, async_: bool = False) -> Any:
        # Aim the client when a prompt starts to run: llm's prompts are lazy, and the
        # shared server starts on first use, never at registration.
        external = os.environ.get(URL_ENV)
        if external:
            self.api_base = external
        else:
            from .server import get_server

            self.api_base = get_server().base_url
        return super().get_client(key, async_=async_)  # type: ignore[misc]


# The ignores: llm types needs_key as str (None here: no key), and its own bases disagree.
class SimChat(_Sim, Chat):  # type: ignore[misc]
    """A simulated OpenAI chat model streaming a sample text (or a tool call) from 127.0.0.1."""


class AsyncSimChat(_Sim, AsyncChat):  # type: ignore[misc]
    """:class:`SimChat` for ``llm --async`` and llm's async API, on llm's AsyncChat."""
