"""The ``streamscope-sim`` model: llm's real OpenAI Chat model, pointed at the loopback server.

Nothing here starts a server or loads a tokenizer at import or registration
time (``llm models`` stays cheap): the server starts on the first prompt, or
in :meth:`SimChat.prepare`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import llm
from llm.default_plugins.openai_models import Chat
from pydantic import Field, field_validator

from . import profiles

MODEL_ID = "streamscope-sim"
URL_ENV = "STREAMSCOPE_SIM_URL"
"""Set to a running simulator's base URL (``python -m llm_streamscope.sim`` prints it)
to use that server instead of starting one in this process."""

# The options that travel to the server under "streamscope" (the rest, e.g.
# max_tokens, are ordinary OpenAI parameters).
SIM_OPTIONS = (
    "seed",
    "speed",
    "profile",
    "text",
    "chunks",
    "drop_after",
    "stall_after",
    "stall_s",
    "error",
)


def _sample_list() -> str:
    # Never let a broken install stop llm itself from loading the plugin.
    try:
        return ", ".join(profiles.sample_names())
    except Exception:
        return "prose, code, multilingual"


class SimChat(Chat):
    """A simulated OpenAI chat model streaming a sample text from 127.0.0.1."""

    model_id = MODEL_ID
    needs_key = None  # type: ignore[assignment]  # llm types it str; None = no key
    key_env_var = None  # type: ignore[assignment]
    can_stream = True
    tiktoken_encoding = profiles.ENCODING_NAME
    """The encoding the simulator cuts its chunks with (read by streamscope's alignment)."""

    class Options(llm.Options):
        seed: int | None = Field(
            default=None,
            description="Seed for deterministic timing and chunking",
        )
        # Unset options (None) are not sent: the server's defaults apply to them.
        speed: float | None = Field(
            default=None,
            ge=0,
            description="Time scale: delays are divided by speed; 0 = as fast as possible"
            " (default 1)",
        )
        profile: str | None = Field(
            default=None,
            description="Provider to imitate: "
            + ", ".join(profiles.PROFILES)
            + f" (default {profiles.DEFAULT_PROFILE})",
        )
        text: str | None = Field(
            default=None,
            description="Sample text to stream: "
            + _sample_list()
            + f" (default {profiles.DEFAULT_SAMPLE})",
        )
        chunks: int | None = Field(
            default=None,
            ge=0,
            description="Send exactly this many content chunks, cycling the text",
        )
        max_tokens: int | None = Field(
            default=None,
            ge=1,
            description="Stop after this many tokens (finish_reason 'length')",
        )
        drop_after: int | None = Field(
            default=None,
            ge=0,
            description="Close the connection abruptly after this many content chunks",
        )
        stall_after: int | None = Field(
            default=None,
            ge=0,
            description="Go silent after this many content chunks, for stall_s seconds",
        )
        stall_s: float | None = Field(
            default=None,
            ge=0,
            description="How long the stall_after silence lasts (real seconds, not scaled;"
            " default 60)",
        )
        error: int | None = Field(
            default=None,
            ge=400,
            le=599,
            description="Answer with this HTTP status and an OpenAI error body",
        )

        @field_validator("profile")
        @classmethod
        def _known_profile(cls, value: str | None) -> str | None:
            if value is not None and value not in profiles.PROFILES:
                raise ValueError(
                    f"unknown profile {value!r}; known profiles: {', '.join(profiles.PROFILES)}"
                )
            return value

        @field_validator("text")
        @classmethod
        def _known_text(cls, value: str | None) -> str | None:
            names = profiles.sample_names()
            if value is not None and value not in names:
                raise ValueError(f"unknown text {value!r}; known texts: {', '.join(names)}")
            return value

    def __init__(self) -> None:
        # _Shared.__init__ sets instance attributes; keep what the class (or a subclass) says.
        super().__init__(type(self).model_id, can_stream=type(self).can_stream)

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
        kwargs: dict[str, Any] = super().build_kwargs(prompt, stream)
        options = {name: kwargs.pop(name) for name in SIM_OPTIONS if name in kwargs}
        kwargs["extra_body"] = {"streamscope": options}
        return kwargs

    def execute(
        self,
        prompt: Any,
        stream: bool,
        response: Any,
        conversation: Any = None,
        key: str | None = None,
    ) -> Iterator[Any]:
        # Per call, when iteration starts: llm's prompts are lazy, and the shared
        # server starts on first use, never at registration.
        external = os.environ.get(URL_ENV)
        if external:
            self.api_base = external
        else:
            from .server import get_server

            self.api_base = get_server().base_url
        yield from super().execute(prompt, stream, response, conversation, key)
