"""The sweep's own run record (kind "sweep"): its settings (study, storage, space, sampler,
pruner), each finished trial's value as a metric (so `trainwise runs` shows the best), and at
the end sheet.json, sheet.csv, sheet.md and report.html. A trial's own fit record holds its
curves and checkpoints; the sheet links them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from trainwise.sweep.plan import SweepPlan
from trainwise.sweep.result import SweepResult

SHEET_JSON, SHEET_CSV, SHEET_MD = "sheet.json", "sheet.csv", "sheet.md"


def settings(plan: SweepPlan, workers: int) -> dict[str, Any]:
    return {
        "study": plan.study, "storage": plan.storage.shown,
        "space": {n: p.describe() for n, p in plan.space.items()},
        "trials": plan.trials, "epochs": plan.epochs, "steps": plan.steps,
        "sampler": plan.sampler, "pruner": plan.pruner, "workers": workers, "seed": plan.seed,
        "sample": plan.sample, "timeout": plan.timeout, "setup": plan.target,
        "recipe": plan.recipe.to_dict(),
    }  # fmt: skip


@contextmanager
def sweep_record(plan: SweepPlan, workers: int) -> Iterator[Callable[[SweepResult], None]]:
    """Yields finish(result): it writes the sheet and the report into the record (when one
    is kept) and sets result.record_path / report_path."""
    from trainwise.runs.record import recording

    config = {"sweep": settings(plan, workers)}
    with recording("sweep", enabled=plan.record, name=plan.study, config=config,
                   seed=plan.seed, root=plan.runs_dir, tensorboard=False, html=False) as run:  # fmt: skip

        def finish(result: SweepResult) -> None:
            if run is None:
                return
            _write(run, plan, result, config["sweep"])

        yield finish
    if run is not None:
        _report(run.path)


def _write(run: Any, plan: SweepPlan, result: SweepResult, config: dict[str, Any]) -> None:
    import optuna

    from trainwise.runs.layout import atomic_write
    from trainwise.sweep.sheet import importances, sheet_data, to_csv, to_markdown
    from trainwise.sweep.storage import open_storage

    for row in result.trials:
        if row.value is not None:
            run.log_metrics(row.number, {"val_loss": row.value})
    study = optuna.load_study(study_name=plan.study, storage=open_storage(plan.storage, False))
    data = sheet_data(plan.study, plan.storage.shown, result.trials, config["space"], config,
                      importances(study))  # fmt: skip
    atomic_write(run.path / SHEET_JSON, json.dumps(data, indent=1))
    atomic_write(run.path / SHEET_CSV, to_csv(result.trials))
    atomic_write(run.path / SHEET_MD, to_markdown(result.trials))
    run.log_config(outcome={"counts": result.counts(), "best": result.to_dict()["best"],
                            "unread": result.unread})  # fmt: skip
    result.record_path = run.path
    result.report_path = run.path / "report.html"


def _report(folder: Any) -> None:
    """report.html, after the record is closed (the page shows its final status)."""
    from trainwise.report.sweep import write_sweep_report

    try:
        write_sweep_report(folder)
    except (OSError, ValueError) as exc:  # a report that cannot be written: the sweep is done
        import logging

        logging.getLogger("trainwise").warning("trainwise: no sweep report (%s)", exc)
