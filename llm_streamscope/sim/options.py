"""The simulator's options, defined once: for the llm model, the server and the command line.

:class:`SimOptions` lists every option with its type, bounds, default and
description. The three places that take options read it:

* the ``streamscope-sim`` model's ``-o`` options are :func:`llm_options` of it:
  the same fields, unset (None) by default, so the server's defaults apply;
* the server validates a request's ``"streamscope"`` object (and its own
  defaults) with :meth:`SimOptions.parse`, strictly, as JSON values;
* ``llm streamscope serve`` (and ``python -m llm_streamscope.sim``) makes one
  flag per field (``clitypes.sim_options``: click types and bounds read from
  the fields) and validates the values given with :meth:`SimOptions.from_strings`.

>>> SimOptions.parse({"profile": "claude-haiku", "speed": 0}).profile
'claude-haiku'
>>> SimOptions.parse({"chunks": -1})
Traceback (most recent call last):
...
llm_streamscope.sim.options.InvalidOption: Invalid value for 'streamscope.chunks': Input should be greater than or equal to 0.
"""  # noqa: E501

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from ..analysis.numbers import COUNT_MAX, MS_MAX
from . import profiles, texts


class InvalidOption(ValueError):
    """A simulator option (or request parameter) with a bad value; ``param`` names it."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    @classmethod
    def from_validation(cls, error: ValidationError, prefix: str) -> InvalidOption:
        """The first problem pydantic found, worded for an API error; ``prefix`` goes
        before the option's name (``streamscope.`` in a request body)."""
        first = error.errors()[0]
        name = ".".join(str(part) for part in first["loc"])
        param = prefix + name
        if first["type"] == "extra_forbidden":
            unknown = sorted({str(e["loc"][0]) for e in error.errors() if e["loc"]})
            return cls(
                f"Unrecognized streamscope option(s): {', '.join(unknown)}; "
                f"known: {', '.join(SimOptions.model_fields)}.",
                prefix.rstrip("."),
            )
        if first["type"] == "value_error":  # a validator's own sentence
            return cls(str(first["ctx"]["error"]), param)
        return cls(f"Invalid value for '{param}': {first['msg']}.", param)


def _sample_list() -> str:
    # Never let a broken install stop llm itself from loading the plugin.
    try:
        return ", ".join(texts.sample_names())
    except Exception:
        return "prose, code, multilingual"


class _Checks(BaseModel):
    """The checks a type cannot say, shared by :class:`SimOptions` and the llm options."""

    @field_validator("profile", check_fields=False)
    @classmethod
    def _known_profile(cls, value: str | None) -> str | None:
        if value is not None and value not in profiles.PROFILES:
            raise ValueError(
                f"Unknown profile {value!r}; known profiles: {', '.join(profiles.PROFILES)}."
            )
        return value

    @field_validator("text", check_fields=False)
    @classmethod
    def _known_text(cls, value: str | None) -> str | None:
        if value is not None:
            names = texts.sample_names()
            if value not in names:
                raise ValueError(f"Unknown text {value!r}; known texts: {', '.join(names)}.")
        return value


class SimOptions(_Checks):
    """The simulator options of one response, validated, with their defaults.

    ``profile`` and ``text`` pick the cutting/pacing profile and the sample;
    ``seed`` fixes chunking and timing; delays are divided by ``speed`` (0: no
    delay); ``chunks`` sends exactly that many answer chunks, cycling the text;
    ``reasoning`` thinks that many hidden tokens before the first chunk;
    ``drop_after`` closes the connection after that many chunks, ``stall_after``
    goes silent there for ``stall_s`` real seconds; ``error`` answers with that
    HTTP status instead. The network conditions are in real milliseconds:
    ``latency_ms`` shifts every chunk, ``ttft_ms`` replaces the profile's TTFT,
    ``jitter_ms`` delays each chunk by a seeded random amount, ``bandwidth``
    caps the body's bytes per second, ``keepalive_ms`` fills silences with SSE
    comments (see :class:`~.engine.Schedule` and :func:`~.engine.send_paced`).
    """

    # defer_build: the llm plugin reads only the fields; the server validates.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    seed: int | None = Field(
        default=None,
        ge=-(2**63),
        le=2**63 - 1,
        description="Seed for deterministic timing and chunking (a 64-bit integer)",
    )
    speed: float = Field(
        default=1.0,
        ge=0,
        le=1000,
        description="Time scale: delays are divided by speed; 0 = as fast as possible",
    )
    profile: str = Field(
        default=profiles.DEFAULT_PROFILE,
        description="Provider to imitate: " + ", ".join(profiles.PROFILES),
    )
    text: str = Field(
        default=texts.DEFAULT_SAMPLE, description="Sample text to stream: " + _sample_list()
    )
    chunks: int | None = Field(
        default=None,
        ge=0,
        le=COUNT_MAX,
        description="Send exactly this many content chunks, cycling the text",
    )
    reasoning: int = Field(
        default=0,
        ge=0,
        le=COUNT_MAX,
        description="Think this many hidden reasoning tokens (paced like chunks) before the"
        " first chunk; usage reports them as reasoning_tokens",
    )
    drop_after: int | None = Field(
        default=None,
        ge=0,
        le=COUNT_MAX,
        description="Close the connection abruptly after this many content chunks",
    )
    stall_after: int | None = Field(
        default=None,
        ge=0,
        le=COUNT_MAX,
        description="Go silent after this many content chunks, for stall_s seconds",
    )
    stall_s: float = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description="How long the stall_after silence lasts, in real seconds whatever the speed",
    )
    error: int | None = Field(
        default=None, ge=400, le=599, description="Answer with this HTTP status and an error body"
    )
    # The network between server and client: real milliseconds, whatever the speed.
    latency_ms: float | None = Field(
        default=None,
        ge=0,
        le=MS_MAX,
        description="Network latency: the response, headers and every chunk, comes this many"
        " ms later (real time)",
    )
    ttft_ms: float | None = Field(
        default=None,
        ge=0,
        le=MS_MAX,
        description="The first content chunk comes this many ms after the request, in place"
        " of the profile's TTFT (real time)",
    )
    jitter_ms: float | None = Field(
        default=None,
        ge=0,
        le=MS_MAX,
        description="Delay each chunk by a random 0 to this many ms more (seeded; chunks"
        " can bunch up, never reorder)",
    )
    bandwidth: int | None = Field(
        default=None,
        ge=1,
        le=COUNT_MAX,
        description="Cap the streamed body at this many bytes per second: the sender paces"
        " its bytes",
    )
    keepalive_ms: float | None = Field(
        default=None,
        gt=0,
        le=MS_MAX,
        description="Send an SSE ': keep-alive' comment whenever the stream has been silent"
        " this many ms (SSE formats only)",
    )

    @classmethod
    def parse(cls, options: Mapping[str, Any], prefix: str = "streamscope.") -> SimOptions:
        """Validate a mapping of option names to JSON values (strictly: ``"3"`` is not 3,
        nor ``true`` 1); raises :class:`InvalidOption`, naming the option after ``prefix``."""
        try:
            return cls.model_validate(dict(options), strict=True)
        except ValidationError as e:
            raise InvalidOption.from_validation(e, prefix) from None

    @classmethod
    def from_strings(cls, options: Mapping[str, Any]) -> SimOptions:
        """Validate option values given on a command line (text, or numbers click
        converted); None = not given.

        >>> SimOptions.from_strings({"seed": "7", "speed": "0.5", "text": None}).seed
        7
        """
        given = {name: value for name, value in options.items() if value is not None}
        try:
            return cls.model_validate(given)
        except ValidationError as e:
            raise InvalidOption.from_validation(e, "") from None

    def delays(self) -> Iterator[float] | None:
        """The profile's TTFT and gaps for this seed (seconds), or None at speed 0.

        With ``reasoning`` the first delay also holds that many gaps: the hidden
        tokens take as long as streamed ones would.
        """
        if self.speed <= 0:
            return None
        delays = profiles.get_profile(self.profile).delays(self.seed)
        if not self.reasoning:
            return delays
        first = next(delays) + sum(itertools.islice(delays, self.reasoning))
        return itertools.chain((first,), delays)

    def plan(
        self, text: str, *, max_tokens: int | None = None, whole: bool = False
    ) -> profiles.Plan:
        """The :class:`~.profiles.Plan` of ``text`` under these options.

        ``whole`` ignores ``chunks`` (for parts of an answer that are not the
        answer text: a thinking block, a tool call's arguments).
        """
        return profiles.plan(
            text,
            profiles.get_profile(self.profile),
            seed=self.seed,
            chunks=None if whole else self.chunks,
            max_tokens=max_tokens,
        )


SIM_OPTIONS = tuple(SimOptions.model_fields)
"""The simulator's own options: the body's ``"streamscope"`` object, the server's defaults."""


def _with_default(name: str) -> str:
    """A field's description, its range when it is a number and its default when it
    has one (``(0 to 1,000, default 1)``).

    >>> _with_default("speed")
    'Time scale: delays are divided by speed; 0 = as fast as possible (0 to 1,000, default 1)'
    """
    info = SimOptions.model_fields[name]
    bounds = {type(m).__name__: m for m in info.metadata}
    notes = []
    if "Le" in bounds and bounds["Le"].le < 2**63 - 1:  # else the description says
        low = bounds["Ge"].ge if "Ge" in bounds else bounds["Gt"].gt
        above = "" if "Ge" in bounds else "above "
        notes.append(f"{above}{low:,} to {bounds['Le'].le:,}")
    if info.default is not None:
        default = f"{info.default:g}" if isinstance(info.default, float) else info.default
        notes.append(f"default {default}")
    return f"{info.description or ''} ({', '.join(notes)})" if notes else info.description or ""


def llm_options(base: type[BaseModel], **extra: Any) -> type[BaseModel]:
    """The class of an llm model's options: every simulator option, unset (None) by default
    so that the server's defaults apply, with the same bounds, checks and descriptions.

    ``base`` is ``llm.Options``; ``extra`` adds fields (``name=(type, Field(...))``).
    """
    fields: dict[str, Any] = {}
    for name, info in SimOptions.model_fields.items():
        unset = copy.copy(info)  # keeps the bounds (ge, le)
        unset.default = None
        unset.description = _with_default(name)
        annotation: Any = info.annotation
        fields[name] = (annotation | None, unset)
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        "Options", __base__=(base, _Checks), **fields, **extra
    )
    return model
