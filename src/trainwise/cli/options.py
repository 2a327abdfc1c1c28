"""Options several commands share (fit, lr-find; later sweep and ablate)."""

from __future__ import annotations

from typing import Any

import click


def sample_option(ctx: Any, param: Any, value: str | None) -> float | int | None:
    """--sample: a count of samples (500) or a fraction of the data (0.1)."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise click.BadParameter("expected a count (500) or a fraction (0.1)") from None
    if 0 < number < 1:
        return number
    if number >= 1 and number == int(number):
        return int(number)
    raise click.BadParameter("expected a count >= 1 or a fraction in (0, 1)")
