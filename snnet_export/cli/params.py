"""Click parameter types of the CLI: the ``--configs`` selection and finite floats.

Each checks its value at parse time, so a bad option is click's one ``Error: Invalid value`` line.
"""
from __future__ import annotations

from typing import Any

import click

from ..errors import SNNetExportError


class _Selection(click.ParamType):
    """``--configs``: syntax checked at parse time by the one selection parser; ids by the library."""

    name = "IDS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from ..selection import parse_ranges

        try:
            if str(value).strip().lower() != "all":
                parse_ranges(str(value))
        except SNNetExportError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


SELECTION = _Selection()


class FiniteFloat(click.ParamType):
    """A float that is finite (no ``nan``/``inf``) and, optionally, above a bound."""

    name = "FLOAT"

    def __init__(self, min: float | None = None, min_open: bool = False) -> None:  # noqa: A002
        self.min, self.min_open = min, min_open

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        import math

        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r:.40} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r:.40} is not a finite number", param, ctx)
        if self.min is not None and (number < self.min or (self.min_open and number == self.min)):
            self.fail(f"{number:g} must be {'>' if self.min_open else '>='} {self.min:g}", param, ctx)
        return number
