"""`trainwise ablate SETUP --tip T ...`: each tip on and off over several seeds, and a table of
what it did. Exit 0 when the table is made, 2 for unusable input (an unknown tip, a bad setup);
registered on the main group in cli/__init__.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from trainwise.cli.common import EXIT_CLEAN, console, err_console, fail_unusable, sample_option
from trainwise.cli.fit import recipe_from, recipe_options
from trainwise.errors import SetupError

VERDICT_STYLE = {"helps": "green", "hurts": "red"}


@click.command("ablate")
@click.argument("target", metavar="FILE[.py][:FUNCTION]", required=False)
@click.option("--tip", "tips", multiple=True, help="A tip to measure (repeatable; default all).")
@click.option("--list", "list_tips", is_flag=True, help="List the tips and exit.")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs per run.")
@click.option("--steps", type=click.IntRange(min=1), help="Optimizer steps per run (or --epochs).")
@click.option("--seeds", default=3, show_default=True, type=click.IntRange(min=1),
              help="Seeds per variant.")  # fmt: skip
@recipe_options
@click.option("--metric", help="The validation metric compared (default: accuracy or loss).")
@click.option("--sample", callback=sample_option, help="Train on a stratified sample: 500 or 0.1.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the result.")
@click.option("--record/--no-record", default=True, show_default=True, help="Keep run records.")
@click.option("--runs-dir", type=click.Path(file_okay=False), help="Folder of run records.")
def ablate_command(target: str | None, tips: tuple[str, ...], list_tips: bool, epochs: int | None,
                   steps: int | None, seeds: int, recipe_name: str, metric: str | None,
                   sample: Any, json_path: str | None, record: bool, runs_dir: str | None,
                   **recipe_tips: Any) -> None:  # fmt: skip
    """Train the Setup in FILE with and without each tip, on several seeds (the recipe's
    options set the recipe the tips are switched in)."""
    from trainwise.train.ablate import TIPS, ablate, resolve_tips

    if list_tips:
        console.print(_tips_table(TIPS))
        sys.exit(EXIT_CLEAN)
    try:
        if target is None:
            raise SetupError("trainwise ablate: give a setup file (or --list)")
        if (epochs is None) == (steps is None):
            raise SetupError("trainwise ablate: give --epochs N or --steps N")
        resolve_tips(list(tips))  # an unknown tip fails before any loading
        from trainwise.loader import load_setup

        setup = load_setup(target)
        recipe = recipe_from(recipe_name, recipe_tips)
        result = ablate(
            setup, list(tips), epochs=epochs, steps=steps, recipe=recipe, seeds=seeds,
            metric=metric, sample=sample, record=record, runs_dir=runs_dir, on_run=_show_run,
        )  # fmt: skip
    except SetupError as exc:
        fail_unusable(exc)
    console.print(_result_table(result))
    if json_path:
        Path(json_path).write_text(json.dumps(result.to_dict()))
        console.print(f"JSON written to {escape(json_path)}")
    if result.record_path is not None:
        console.print(f"ablation record: {escape(str(result.record_path))}", highlight=False)
    sys.exit(EXIT_CLEAN)


def _show_run(tip: str, on: bool, seed: int, value: float) -> None:
    err_console.print(f"  {escape(tip)} {'on' if on else 'off'}, seed {seed}: {value:.4g}",
                      highlight=False)  # fmt: skip


def _tips_table(tips: dict[str, Any]) -> Table:
    table = Table(title="trainwise ablate: the tips")
    for column in ("tip", "what it does", "the belief it tests"):
        table.add_column(column)
    for tip in tips.values():
        table.add_row(tip.slug, escape(tip.does), escape(tip.belief))
    return table


def _result_table(result: Any) -> Table:
    table = Table(title=f"ablate: {result.metric}, {len(result.seeds)} seeds",
                  caption=escape(result.recipe.describe()))  # fmt: skip
    for column in ("tip", "with", "without", "with - without", "90% interval", "verdict"):
        table.add_column(column, justify="left" if column in ("tip", "verdict") else "right")
    for t in result.tips:
        if t.skipped:
            table.add_row(t.tip, "", "", "", "", f"skipped: {escape(t.skipped)}")
            continue
        style = VERDICT_STYLE.get(t.verdict, "")
        lo, hi = t.interval
        table.add_row(
            t.tip, f"{t.with_:.4g}", f"{t.without:.4g}", f"{t.diff:+.4g}",
            f"[{lo:+.3g}, {hi:+.3g}]", f"[{style}]{t.verdict}[/]" if style else t.verdict,
        )  # fmt: skip
    return table
