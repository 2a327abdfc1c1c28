"""`trainwise fit SETUP`: train with the recipe of tips, a live progress line, the findings as
they fire, and a table of final and best metrics. Exit 0 finished, 1 finished with error
findings (or stopped by one), 2 unusable input; registered on the main group in cli/__init__.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column, Table

from trainwise.cli.common import (
    EXIT_CLEAN,
    EXIT_FINDINGS,
    EXIT_UNUSABLE,
    UNUSABLE_FILE,
    console,
    err_console,
    fail_unusable,
    sample_option,
    show_unusable,
)
from trainwise.errors import SetupError

NONE = "none"  # `--clip none`: the option given, its value None (an unset option is None)


def _number_or(words: tuple[str, ...]):
    """A click converter: one of `words` ("none" stays the word, for Recipe's None), or a
    positive number."""

    def convert(ctx: Any, param: Any, value: str | None) -> Any:
        if value is None:
            return None
        if value in words:
            return value
        try:
            number = float(value)
        except ValueError:
            raise click.BadParameter(f"expected {' | '.join(words)} or a number") from None
        if number <= 0:
            raise click.BadParameter("expected a positive number")
        return number

    return convert


def _numbers(words: tuple[str, ...], count: int | None):
    """A click converter: one of `words`, or comma-separated numbers (`count` of them, when
    given), as a tuple: `--y-range 0,5.5`, `--progressive-resize 0.5,0.75,1`. Recipe checks
    their values."""

    def convert(ctx: Any, param: Any, value: str | None) -> Any:
        if value is None or value in words:
            return value
        try:
            numbers = tuple(float(v) for v in value.split(","))
        except ValueError:
            numbers = ()
        if not numbers or (count is not None and len(numbers) != count):
            many = f"{count} numbers" if count else "numbers"
            raise click.BadParameter(f"expected {' | '.join(words)} or {many} separated by commas")
        return numbers

    return convert


# The Recipe's options, shared by every command that trains (fit, ablate): `--recipe` picks the
# base, each tip option changes one field; an option left out is None and changes nothing.
RECIPE_OPTIONS = (
    click.option("--recipe", "recipe_name", type=click.Choice(["default", "plain"]),
                 default="default", show_default=True, help="plain: the Setup as written, no tips."),
    click.option("--lr", callback=_number_or(("auto",)), help="auto (LR range test) or a number."),
    click.option("--schedule", type=click.Choice(
        ["one-cycle", "cosine", "cosine-restarts", "step", "constant"])),
    click.option("--weight-decay", type=click.FloatRange(min=0)),
    click.option("--clip", callback=_number_or(("auto", "none")), help="auto, none or a max norm."),
    click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True)),
    click.option("--output-bias/--no-output-bias", default=None, help="Init the last bias."),
    click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"])),
    click.option("--optimizer", type=click.Choice(["adamw", "setup"])),
    # the helper tips (off unless given)
    click.option("--finetune/--no-finetune", default=None,
                 help="Discriminative LRs over 3 layer groups and gradual unfreezing."),
    click.option("--finetune-ratio", type=click.FloatRange(min=1),
                 help="LR ratio between layer groups with --finetune (default 3)."),
    click.option("--freeze-bn/--no-freeze-bn", "freeze_batchnorm", default=None,
                 help="BatchNorm statistics and affine fixed."),
    click.option("--tta", type=click.Choice(["auto", "flip", "shift", "flip+shift", NONE]),
                 help="Test-time augmentation of the final validation (auto: by input kind)."),
    click.option("--distill-from", metavar="RUN", help="Distil from a fit run's best model."),
    click.option("--distill-temperature", type=click.FloatRange(min=0, min_open=True),
                 help="Distillation temperature T (default 4)."),
    click.option("--distill-alpha", type=click.FloatRange(0, 1),
                 help="Weight of the teacher's soft targets (default 0.9)."),
    click.option("--progressive-resize", callback=_numbers((NONE,), None),
                 help="Input sizes per epoch as fractions of the full size: 0.5,0.75,1."),
    click.option("--y-range", callback=_numbers(("auto", NONE), 2),
                 help="Bound a regression's outputs: auto (the targets' range) or LO,HI."),
    click.option("--final-fit-on-train-val/--no-final-fit-on-train-val", "final_fit",
                 default=None, help="Then train again on train + validation data."),
)  # fmt: skip


def recipe_options(command: Any) -> Any:
    for option in reversed(RECIPE_OPTIONS):
        command = option(command)
    return command


def recorded_target(target: str) -> str:
    """FILE[:FUNCTION] with FILE absolute: what a later `--distill-from RUN` builds the
    teacher's model from."""
    from trainwise.loader import setup_file, split_target

    _, function = split_target(target)
    return f"{setup_file(target).resolve()}:{function}"


def recipe_from(recipe_name: str, tips: dict[str, Any]) -> Any:
    """The Recipe the options ask for: the base, with each given tip ("none" for None)."""
    from trainwise.train.recipe import Recipe

    base = Recipe.plain() if recipe_name == "plain" else Recipe()
    return base.replace(**{k: None if v == NONE else v for k, v in tips.items() if v is not None})


@click.command("fit")
@click.argument("target", metavar="FILE[.py][:FUNCTION]")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs to train.")
@click.option("--steps", type=click.IntRange(min=1), help="Optimizer steps to train (or --epochs).")
@recipe_options
@click.option("--sample", callback=sample_option, help="Train on a stratified sample: 500 or 0.1.")
@click.option("--monitor", default="val_loss", show_default=True,
              help="The metric that picks the best checkpoint.")  # fmt: skip
@click.option("--early-stop", is_flag=True, help="Stop when the watch finds overfitting.")
@click.option("--resume", type=click.Path(exists=True), help="Continue a killed fit run.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the result.")
@click.option("--record/--no-record", default=True, show_default=True, help="Keep a run record.")
@click.option("--runs-dir", type=click.Path(file_okay=False), help="Folder of run records.")
@click.option("--quiet", is_flag=True, help="No progress line, no findings as they fire.")
@click.option("--devices", default=1, show_default=True, type=click.IntRange(min=1),
              help="Train data-parallel on N processes (torchrun; gloo on CPU).")  # fmt: skip
def fit_command(target: str, epochs: int | None, steps: int | None, recipe_name: str,
                json_path: str | None, record: bool, runs_dir: str | None, quiet: bool,
                seed: int, sample: Any, monitor: str, early_stop: bool, resume: str | None,
                devices: int, **tips: Any) -> None:  # fmt: skip
    """Train the Setup in FILE with a recipe of the tips, watched and recorded."""
    from trainwise.loader import setup_file

    if devices > 1 and "WORLD_SIZE" not in os.environ:
        _run_under_torchrun(devices)
    if int(os.environ.get("RANK", "0")) > 0:  # rank 0 alone shows and writes
        quiet, json_path = True, None

    if (epochs is None) == (steps is None) and resume is None:
        fail_unusable(SetupError("trainwise fit: give --epochs N or --steps N"))
    try:
        setup_file(target)
    except SetupError as exc:
        fail_unusable(exc)
    from trainwise.loader import load_setup
    from trainwise.report.terminal import finding_panel
    from trainwise.train.loop import fit

    try:
        recipe = recipe_from(recipe_name, tips)
        setup = load_setup(target)
        with _progress(quiet) as show:
            result = fit(
                setup, epochs=epochs, steps=steps, recipe=recipe, seed=seed, record=record,
                runs_dir=runs_dir, sample=sample, monitor=monitor, early_stop=early_stop,
                resume=resume, verbose=not quiet, on_progress=show,
                record_info={"setup": recorded_target(target)},
            )  # fmt: skip
    except SetupError as exc:
        fail_unusable(exc)
    console.print(_result_table(result))
    # the recipe as a paragraph of its own: a table's caption is centred and cut to its width
    console.print(f"recipe: {escape(result.recipe.describe())}", highlight=False)
    for note in result.notes:
        console.print(f"  {escape(note)}", highlight=False)
    errors = [f for f in result.findings if f.severity == "error"]
    for finding in errors:
        console.print(finding_panel(finding))
    if result.stopped:
        console.print(f"[bold red]stopped[/]: {escape(result.stopped)}")
    if result.checkpoint is not None:
        console.print(f"best checkpoint: {escape(str(result.checkpoint))}", highlight=False)
    if result.record_path is not None:
        console.print(f"run record: {escape(str(result.record_path))}", highlight=False)
    if json_path:
        Path(json_path).write_text(json.dumps(result.to_dict(), default=str))
        console.print(f"JSON written to {escape(json_path)}")
    sys.exit(EXIT_FINDINGS if errors or result.stopped.startswith("error") else EXIT_CLEAN)


def _run_under_torchrun(devices: int) -> None:
    """Start this same command again on `devices` processes under torchrun (each then runs
    fit data-parallel); its exit code is this command's."""
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):  # drop --devices N / --devices=N
        if arg == "--devices":
            argv = argv[:i] + argv[i + 2 :]
            break
        if arg.startswith("--devices="):
            argv = argv[:i] + argv[i + 1 :]
            break
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={devices}", "-m", "trainwise", *argv]  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        unusable = Path(folder) / "unusable.txt"
        code = subprocess.call(command, env={**os.environ, UNUSABLE_FILE: str(unusable)})
        if code != 0 and unusable.exists():  # a rank's input error, said once, exit 2
            show_unusable(unusable.read_text())
            sys.exit(EXIT_UNUSABLE)
    sys.exit(code)


class _progress:
    """A rich progress bar (epoch, step, loss, val metrics, ETA); nothing with --quiet."""

    def __init__(self, quiet: bool) -> None:
        # The numbers first: on a narrow terminal the description (epoch, losses, metrics) is
        # cut with an ellipsis, never the step count or the time left; the bar stays short.
        self.bar = None if quiet else Progress(
            TextColumn("{task.description}",
                       table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis")),
            BarColumn(bar_width=12), MofNCompleteColumn(table_column=Column(no_wrap=True)),
            TimeRemainingColumn(table_column=Column(no_wrap=True)), console=err_console,
            transient=False, expand=True,
        )  # fmt: skip
        self.task = None
        self.tail = ""  # the last validation point's numbers

    def __enter__(self):
        if self.bar is None:
            return None
        self.bar.__enter__()
        self.task = self.bar.add_task("fit", total=None)
        return self.show

    def show(self, status: Any) -> None:
        if status.loss is not None:  # a validation point: the numbers shown until the next
            self.tail = f"  loss {_metric_text(status.loss)}" + "".join(
                f"  val {k} {_metric_text(v)}" for k, v in status.val.items() if k != "ece"
            )
        words = f"epoch {status.epoch}/{status.epochs}{self.tail}"
        self.bar.update(self.task, completed=status.step, total=status.total, description=words)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _result_table(result: Any) -> Table:
    table = Table(title=f"fit: {result.steps} steps")
    table.add_column("metric")
    table.add_column("final", justify="right")
    table.add_column(f"best (step {result.best.get('step', '-')})", justify="right")
    for name, value in result.metrics.items():
        best = result.best.get(name)
        table.add_row(name, _metric_text(value), _metric_text(best) if best is not None else "-")
    return table


def _metric_text(value: float) -> str:
    """4 significant digits, trailing zeros kept (an accuracy of 1.0 reads "1.000", not "1"
    beside "0.9742"); no trailing point on a large number ("1235", not "1235.")."""
    return f"{value:#.4g}".rstrip(".")
