"""`trainwise interpret RUN | SETUP_FILE --checkpoint PATH`: the worst predictions, the confused
classes, per-class scores, calibration, (with --label-issues) the training labels that are
probably wrong, and an HTML report. Exit 0 done, 2 unusable input; registered on the main group
in cli/__init__.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from trainwise.cli.common import EXIT_CLEAN, console, err_console, fail_unusable
from trainwise.errors import SetupError

SHOWN = 10  # rows of each terminal table
ALL_CLASSES = 20  # per-class table in full up to this many classes, else the 10 worst by F1


@click.command("interpret", context_settings={"ignore_unknown_options": True})
@click.argument("target", metavar="RUN | FILE[.py][:FUNCTION]")
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="A state dict for the setup file's model (fit's checkpoints/best.pt).")  # fmt: skip
@click.option("--split", type=click.Choice(["val", "train"]), default="val", show_default=True)
@click.option("--top", "k", type=click.IntRange(min=1), default=16, show_default=True,
              help="Top losses kept.")  # fmt: skip
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the result.")
@click.option("--no-report", is_flag=True, help="No HTML report.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Folder of the report (default: the run's folder, else the checkpoint's).")  # fmt: skip
@click.option("--label-issues", is_flag=True,
              help="Find mislabeled training samples (k-fold cross-validation: k trainings).")  # fmt: skip
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1),
              help="Epochs per fold (default: the run's, else 10).")  # fmt: skip
@click.option("--layer", help="The layer whose units' max-activating inputs the report shows.")
@click.option("--attribution", type=click.Choice(["saliency", "integrated-gradients"]),
              default="saliency", show_default=True)  # fmt: skip
@click.option("--runs-dir", type=click.Path(file_okay=False), help="Folder of run records.")
@click.option("--seed", default=0, show_default=True, help="fit's held-out split's seed.")
def interpret_command(target: str, checkpoint: str | None, split: str, k: int,
                      json_path: str | None, no_report: bool, out: str | None,
                      label_issues: bool, folds: int, epochs: int | None, layer: str | None,
                      attribution: str, runs_dir: str | None, seed: int) -> None:  # fmt: skip
    """Interpret a fit RUN (number, id, name or folder: its setup file and best checkpoint), or
    the Setup in FILE with --checkpoint."""
    from trainwise.loader import setup_file

    is_file = checkpoint is not None or target.endswith(".py") or ".py:" in target
    if is_file:
        try:
            setup_file(target)
        except SetupError as exc:
            fail_unusable(exc)
    from trainwise.interpret.core import interpret, interpret_run

    try:
        with err_console.status(f"interpreting {escape(target)}"):
            if is_file:
                from trainwise.loader import load_setup

                interp = interpret(load_setup(target), checkpoint=checkpoint, split=split, k=k,
                                   seed=seed)  # fmt: skip
            else:
                interp = interpret_run(target, split, k, runs_dir)
        if label_issues:
            with err_console.status(f"label issues: {folds}-fold cross-validation"):
                interp.label_issues(folds=folds, epochs=epochs)
        report = None
        if not no_report:
            with err_console.status("drawing the report"):
                report = interp.write_report(out or _default_folder(interp, checkpoint),
                                             layer=layer, attribution=attribution)  # fmt: skip
    except SetupError as exc:
        fail_unusable(exc)
    summary(interp, label_issues)
    if report is not None:
        console.print(f"report: {escape(str(report))}", highlight=False)
    if json_path:
        Path(json_path).write_text(json.dumps(interp.to_dict(), default=str))
        console.print(f"JSON written to {escape(json_path)}", highlight=False)
    sys.exit(EXIT_CLEAN)


def _default_folder(interp: Any, checkpoint: str | None) -> Path:
    if interp.subject.folder is not None:
        return interp.subject.folder
    if checkpoint is not None:
        path = Path(checkpoint).resolve().parent
        return path.parent if path.name == "checkpoints" else path  # a fit run's folder
    return Path(".")


def summary(interp: Any, asked_issues: bool) -> None:
    """The terminal summary: what was read, top losses, confusion, per class, calibration."""
    d = interp.to_dict()
    console.print(f"[bold]interpret[/] {escape(d['source'])}: {d['samples']} {escape(d['split'])} "
                  f"samples, {d['task']}, mean loss {d['loss']:.4g}", highlight=False)  # fmt: skip
    console.print(_top_losses(d))
    if d["most_confused"]:
        console.print(_most_confused(d["most_confused"]))
    if d["per_class"]:
        console.print(_per_class(d["per_class"]))
    if d["calibration"] is not None:
        console.print(f"expected calibration error: {d['calibration']['ece']:.4f} (15 bins; 0 "
                      "= the confidences are the accuracies)", highlight=False)  # fmt: skip
    if d["residuals"] is not None:
        r = d["residuals"]
        console.print(f"residuals (prediction - target): mean {r['mean']:.4g}, MAE {r['mae']:.4g}, "
                      f"RMSE {r['rmse']:.4g}, largest {r['max_abs']:.4g}", highlight=False)  # fmt: skip
    if d["label_issues"] is not None:
        console.print(_label_issues(d))
    elif asked_issues is False and d["task"] == "classification":
        console.print("[dim]label issues: not computed (--label-issues: k-fold cross-validation, "
                      "k trainings)")  # fmt: skip
    for note in d["notes"]:
        console.print(f"  note: {escape(note)}", highlight=False)


def _top_losses(d: dict) -> Table:
    table = Table(title=f"top losses (of {d['samples']})", title_justify="left")
    for column in ("index", "label", "prediction", "probability", "loss"):
        table.add_column(column, justify="right")
    for row in d["top_losses"][:SHOWN]:
        table.add_row(str(row["index"]), _fmt(row["label"]), _fmt(row["pred"]),
                      _fmt(row["prob"]), _fmt(row["loss"]))  # fmt: skip
    return table


def _most_confused(pairs: list[dict]) -> Table:
    table = Table(title="most confused (actual -> predicted)", title_justify="left")
    for column in ("actual", "predicted", "count"):
        table.add_column(column, justify="right")
    for p in pairs[:SHOWN]:
        table.add_row(str(p["actual"]), str(p["predicted"]), str(p["count"]))
    return table


def _per_class(per_class: dict) -> Table:
    rows = list(per_class.items())
    title = "per class"
    if len(rows) > ALL_CLASSES:
        rows = sorted(rows, key=lambda r: r[1]["f1"])[:SHOWN]
        title = f"per class: the {SHOWN} lowest F1 of {len(per_class)}"
    table = Table(title=title, title_justify="left")
    for column in ("class", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="right")
    for name, s in rows:
        table.add_row(name, _fmt(s["precision"]), _fmt(s["recall"]), _fmt(s["f1"]),
                      str(s["support"]))  # fmt: skip
    return table


def _label_issues(d: dict) -> Table:
    issues = d["label_issues"]
    how = d.get("cross_validation") or {}
    table = Table(title=f"label issues: {len(issues)} training samples probably mislabeled "
                  f"({how.get('folds')}-fold cross-validation)", title_justify="left")  # fmt: skip
    for column in ("index", "given", "suggested", "score"):
        table.add_column(column, justify="right")
    for i in issues[:SHOWN]:
        table.add_row(str(i["index"]), str(i["given_label"]), str(i["suggested_label"]),
                      _fmt(i["score"]))  # fmt: skip
    return table


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
