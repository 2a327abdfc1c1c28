"""What the commands share: the exit codes, the consoles, the unusable-input exit, and the
options several commands take (--sample: fit, lr-find; later sweep and ablate)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from trainwise.errors import SetupError

console = Console()
err_console = Console(stderr=True)

EXIT_CLEAN, EXIT_FINDINGS, EXIT_UNUSABLE = 0, 1, 2
# Set by `fit --devices N` for the processes torchrun starts: a rank that finds the input
# unusable leaves the message in this file, and the launching command prints it once and exits
# 2 (torchrun's own exit code says only that a process failed).
UNUSABLE_FILE = "TRAINWISE_UNUSABLE_FILE"


def fail_unusable(exc: SetupError) -> None:
    """The linter's exit 2: the message (escaped: it may hold "[static]", lists, indices that
    rich would read as markup) and nothing else; left to the terminal to wrap, so a path or a
    key list in it is never cut by an inserted line break (it stays copyable)."""
    handed_to = os.environ.get(UNUSABLE_FILE)
    if handed_to:
        Path(handed_to).write_text(str(exc))
    else:
        show_unusable(str(exc))
    sys.exit(EXIT_UNUSABLE)


def show_unusable(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


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
