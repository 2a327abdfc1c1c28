"""`trainwise sweep SETUP`: a study of fit runs over --param's space, the unpromising cut by the
pruner; a live table while it runs (from the storage: every worker's and machine's trials),
then the best trial, the sheet and the report. Exit 0 when a trial completed, 1 when none
did, 2 unusable input (a malformed --param, an unreachable storage, a setup that fails).
Registered on the main group in cli/__init__.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from trainwise.cli.common import (
    EXIT_CLEAN,
    EXIT_FINDINGS,
    console,
    err_console,
    fail_unusable,
    sample_option,
)
from trainwise.cli.fit import recipe_from, recipe_options
from trainwise.errors import SetupError

EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C
LIVE_ROWS = 12  # the running trials and the latest finished ones, so the table fits a screen
STATE_STYLE = {"complete": "green", "pruned": "yellow", "fail": "red", "running": "cyan",
               "waiting": "dim"}  # fmt: skip


@click.command("sweep")
@click.argument("target", metavar="FILE[.py][:FUNCTION]")
@click.option("--param", "params", multiple=True, metavar="NAME=FORM",
              help="A searched parameter: NAME=log:LO:HI | float:LO:HI | int:LO:HI | "
                   "choice:A,B,... (repeatable; adds to the file's SPACE).")  # fmt: skip
@click.option("--trials", type=click.IntRange(min=1), default=20, show_default=True,
              help="Finished trials the study should hold (a joined study counts its own).")
@click.option("--epochs", type=click.IntRange(min=1), help="Each trial's epochs.")
@click.option("--steps", type=click.IntRange(min=1), help="Each trial's steps (or --epochs).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
              help="Stop starting trials after this many seconds.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Local worker processes sharing the study.")
@click.option("--storage", help="Optuna storage URL (postgresql://..., sqlite:///...) or "
              "journal:PATH; default: a SQLite file in the runs folder.")
@click.option("--study", "study_name", help="The study's name: an existing one is resumed or "
              "joined (default: the file's name and the time).")
@click.option("--sampler", type=click.Choice(["tpe", "random", "grid"]), default="tpe",
              show_default=True)
@click.option("--pruner", type=click.Choice(["asha", "hyperband", "median", "none"]),
              default="asha", show_default=True)
@recipe_options  # the base recipe the sampled Recipe fields change (--lr 3e-3: no range test)
@click.option("--sample", callback=sample_option, help="Train on a stratified sample: 500 or 0.1.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the result.")
@click.option("--runs-dir", type=click.Path(file_okay=False), help="Folder of run records.")
@click.option("--record/--no-record", default=True, show_default=True,
              help="Keep a run record per trial and one for the sweep (sheet, report).")
@click.option("--quiet", is_flag=True, help="No live table.")
def sweep_command(target: str, params: tuple[str, ...], trials: int, epochs: int | None,
                  steps: int | None, timeout: float | None, workers: int, storage: str | None,
                  study_name: str | None, sampler: str, pruner: str, recipe_name: str,
                  sample: Any, seed: int, json_path: str | None, runs_dir: str | None,
                  record: bool, quiet: bool, **recipe_tips: Any) -> None:  # fmt: skip
    """Search hyperparameters of the Setup in FILE: one fit run per trial, pruned early when
    its validation loss is not promising."""
    from trainwise.loader import setup_file

    try:  # argument errors before torch and Optuna are imported (seconds)
        if (epochs is None) == (steps is None):
            raise SetupError("trainwise sweep: give --epochs N or --steps N (each trial's length)")
        setup_file(target)
        from trainwise.sweep.space import parse_param

        for p in params:
            parse_param(p)
    except SetupError as exc:
        fail_unusable(exc)
    from trainwise.sweep import sweep
    from trainwise.sweep.api import default_study_name

    study_name = study_name or default_study_name(target, None)  # named now: Ctrl-C says it

    view = _LiveTable(quiet)
    try:
        recipe = recipe_from(recipe_name, recipe_tips)
        with view:
            result = sweep(
                target, list(params), trials, epochs=epochs, steps=steps, timeout=timeout,
                workers=workers, storage=storage, study=study_name, sampler=sampler,
                pruner=pruner, recipe=recipe,
                seed=seed, sample=sample, runs_dir=runs_dir, record=record, on_update=view.update,
            )  # fmt: skip
    except SetupError as exc:
        fail_unusable(exc)
    except KeyboardInterrupt:
        err_console.print(f"[yellow]interrupted[/]: study {escape(study_name)} keeps its "
                          f"finished trials; add --study {escape(study_name)} to go on")  # fmt: skip
        sys.exit(EXIT_INTERRUPTED)
    _print_result(result)
    if json_path:
        Path(json_path).write_text(json.dumps(result.to_dict(), default=str))
        console.print(f"JSON written to {escape(json_path)}")
    sys.exit(EXIT_CLEAN if result.best is not None else EXIT_FINDINGS)


class _LiveTable:
    """The trials as the storage holds them, redrawn on each update (stderr; nothing with
    --quiet). Unread setup parameters are said once, as soon as a trial reports them."""

    def __init__(self, quiet: bool) -> None:
        self.live = None if quiet else Live(console=err_console, refresh_per_second=2,
                                            transient=False)  # fmt: skip
        self.warned = False

    def __enter__(self) -> _LiveTable:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def update(self, rows: list[Any]) -> None:
        from trainwise.sweep.result import unread_params

        unread = unread_params(rows)
        if unread and not self.warned:
            self.warned = True
            err_console.print(
                f"[yellow]warning:[/] setup(hp) never read {escape(', '.join(unread))} in the "
                "first trial: searching it changes nothing (read it as hp['name'], or drop it)"
            )
        if self.live is not None:
            self.live.update(trials_table(rows, live=True))


def trials_table(rows: list[Any], live: bool = False) -> Table:
    from trainwise.sweep.result import best_row
    from trainwise.sweep.sheet import params_text

    best = best_row(rows)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    caption = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    if best is not None:
        caption += f"; best: trial {best.number}, val loss {best.value:.4g}"
    shown = rows
    if live and len(rows) > LIVE_ROWS:
        running = [r for r in rows if r.state == "running"]
        shown = sorted({*running, *rows[-(LIVE_ROWS - len(running)):]}, key=lambda r: r.number) \
            if len(running) < LIVE_ROWS else running[:LIVE_ROWS]
    table = Table(title="sweep" + (" (live)" if live else ""), caption=caption,
                  title_justify="left")  # fmt: skip
    for name, justify in (("trial", "right"), ("params", "left"), ("val loss", "right"),
                          ("step", "right"), ("state", "left")):  # fmt: skip
        table.add_column(name, justify=justify)
    if not live:
        table.add_column("why")
    for r in shown:
        value = r.value if r.value is not None else r.last
        style = STATE_STYLE.get(r.state, "white")
        cells = [f"{r.number}{' *' if r is best else ''}", escape(params_text(r.params)),
                 f"{value:.4g}" if value is not None else "",
                 str(r.steps if r.state != "running" else (r.last_step or "")),
                 f"[{style}]{r.state}"]  # fmt: skip
        if not live:
            cells.append(escape(r.why or ""))
        table.add_row(*cells)
    return table


def _print_result(result: Any) -> None:
    from trainwise.sweep.sheet import params_text

    console.print(trials_table(result.trials))
    best = result.best
    if best is None:
        console.print("[bold red]no trial completed[/]")
    else:
        console.print(f"[bold]best[/]: trial {best.number}, val loss {best.value:.4g}, "
                      f"{escape(params_text(best.params))}", highlight=False)  # fmt: skip
        if best.record:
            console.print(f"  its run record: {escape(best.record)}", highlight=False)
    if result.unread:
        console.print(f"[yellow]never read by setup(hp)[/]: {escape(', '.join(result.unread))}")
    console.print(f"study {escape(result.study)} in {escape(result.storage)}; the sheet: "
                  f"`trainwise runs --sweep {escape(result.study)}`", highlight=False)  # fmt: skip
    if result.report_path is not None:
        console.print(f"report: {escape(str(result.report_path))}", highlight=False)
