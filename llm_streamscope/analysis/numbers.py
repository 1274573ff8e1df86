"""Every number an option takes: finite, in a documented range, checked at parse time.

``Bounded`` is the one click type of every numeric option. Its range is shown
in ``--help`` (``0<=x<=3600000``), as click shows its own ranges; NaN, the
infinities and anything outside the range are usage errors, so no NaN or
Infinity can reach a document, a thread's timeout or the log.
"""

from __future__ import annotations

import json
import math
from typing import Any

import click


class Bounded(click.FloatRange):
    """A number from ``min`` to ``max`` (both given: the range is finite), a whole
    one with ``integer``; with ``min_open``, above ``min``.

    >>> Bounded(0, 10).check("2.5")
    2.5
    >>> Bounded(1, 100, integer=True).check("7")
    7
    >>> Bounded(0, 10).check("nan")
    Traceback (most recent call last):
    ...
    ValueError: 'nan' is not a finite number.
    >>> Bounded(0, 10, min_open=True).check("0")
    Traceback (most recent call last):
    ...
    ValueError: 0.0 is not in the range 0<x<=10.
    """

    def __init__(
        self, min: float, max: float, *, min_open: bool = False, integer: bool = False
    ) -> None:
        super().__init__(min, max, min_open=min_open)
        self.integer = integer
        self.name = "integer range" if integer else "float range"

    def check(self, value: Any) -> Any:
        """``value`` (a number or its text) as a number in range; else ValueError,
        its message fit for the user."""
        try:
            number = int(value) if self.integer else float(value)
        except (TypeError, ValueError):
            kind = "integer" if self.integer else "number"
            raise ValueError(f"{value!r} is not a valid {kind}.") from None
        if not math.isfinite(number):
            raise ValueError(f"{value!r} is not a finite number.")
        above = number > self.min if self.min_open else number >= self.min  # type: ignore[operator]
        if not (above and number <= self.max):  # type: ignore[operator]
            raise ValueError(f"{number} is not in the range {self._describe_range()}.")
        return number

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self.check(value)
        except ValueError as ex:
            self.fail(str(ex), param, ctx)


MS_MAX = 3_600_000
"""The longest time in milliseconds an option takes: an hour."""

GAP_MS = Bounded(0, MS_MAX)
TIMEOUT_S = Bounded(0, 86_400, min_open=True)
"""A timeout in seconds: above 0, at most a day."""
SPEED = Bounded(0, 1000)
"""A time scale: 0 at once, up to a thousand times as fast."""
COUNT_MAX = 1_000_000_000


def finite_json(value: Any, **options: Any) -> str:
    """``json.dumps(value, **options)`` that never writes NaN or Infinity (which are
    not JSON): a float that is not finite is written as null. No option can give
    one; a plugin's own option, or a figure computed from one, still might.

    >>> finite_json({"speed": float("inf"), "rate": [1.5, float("nan")]})
    '{"speed": null, "rate": [1.5, null]}'
    """
    try:
        return json.dumps(value, allow_nan=False, **options)
    except ValueError:
        return json.dumps(finite(value), allow_nan=False, **options)


def finite(value: Any) -> Any:
    """``value`` with every float that is not finite made None (JSON's null).

    >>> finite([1.5, {"x": float("-inf")}])
    [1.5, {'x': None}]
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value
