"""Runs the stages in order, times them, and keeps one stage's failure from stopping the rest."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import nullcontext

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from trainwise.errors import SetupError
from trainwise.report.model import Report, StageResult
from trainwise.stages.base import CheckRun, Stage, StageOutcome
from trainwise.stages.baselines import BaselinesStage
from trainwise.stages.batch_independence import BatchIndependenceStage
from trainwise.stages.init_loss import InitLossStage
from trainwise.stages.input_dependence import InputDependenceStage
from trainwise.stages.lr_range import LRRangeStage
from trainwise.stages.multi_device import MultiDeviceStage
from trainwise.stages.overfit_batch import OverfitBatchStage
from trainwise.stages.overfit_few import OverfitFewStage
from trainwise.stages.speed import SpeedStage
from trainwise.stages.static import StaticStage
from trainwise.stages.train_eval import TrainEvalStage

log = logging.getLogger("trainwise")


def default_stages(quick: bool = False, devices: int = 1) -> list[Stage]:
    """The protocol, in the order a careful practitioner would run it by hand; with devices
    >= 2, the multi-device stage last (it launches processes: the slowest)."""
    stages: list[Stage] = [
        StaticStage(),
        InitLossStage(),
        SpeedStage(),  # early: --quick skips the training experiments on a slow model
        LRRangeStage(),  # before the experiments that train at the configured LR
        OverfitBatchStage(),
        OverfitFewStage(),
        InputDependenceStage(),
        BatchIndependenceStage(),
        BaselinesStage(),  # the short training; train-eval reuses its model
        TrainEvalStage(),
    ]
    return stages + ([MultiDeviceStage()] if devices >= 2 else [])


def run_protocol(run: CheckRun, stages: Sequence[Stage], show_progress: bool = False) -> Report:
    started = time.perf_counter()
    results = run.results  # later stages read earlier ones (e.g. skip on errors)
    progress = (
        Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        if show_progress
        else nullcontext()
    )
    with progress:
        task = progress.add_task("preflight", total=len(stages)) if show_progress else None
        if show_progress:  # experiments report their steps on a second bar
            steps = progress.add_task("", total=None, visible=False)
            run.progress = lambda label, done, total: progress.update(
                steps, description=f"  {label}", completed=done, total=total, visible=True
            )
        for stage in stages:
            if show_progress:
                progress.update(task, description=f"[bold]{stage.title}")
            results.append(_run_stage(stage, run))
            if show_progress:
                progress.advance(task)
                progress.update(steps, visible=False)
    return Report(run.setup.name, results, time.perf_counter() - started)


def _run_stage(stage: Stage, run: CheckRun) -> StageResult:
    t0 = time.perf_counter()
    try:
        outcome = stage.run(run)
    except SetupError:
        raise  # the user's input is unusable: the caller reports it (exit code 2)
    except Exception as exc:  # trainwise's own fault: report it, run the other stages
        log.warning("trainwise: stage %s crashed: %s: %s", stage.name, type(exc).__name__, exc)
        return StageResult(
            stage.name,
            stage.title,
            "crashed",
            time.perf_counter() - t0,
            summary=f"internal error in trainwise ({type(exc).__name__}: {exc}); please report it",
        )
    return StageResult(
        stage.name,
        stage.title,
        _status(outcome),
        time.perf_counter() - t0,
        summary=outcome.summary,
        metrics=outcome.metrics,
        findings=outcome.findings,
        notes=outcome.notes,
    )


def _status(outcome: StageOutcome) -> str:
    if outcome.skipped:
        return "skipped"
    severities = {f.severity for f in outcome.findings}
    if outcome.failed or (outcome.failed is None and "error" in severities):
        return "fail"
    return "warn" if "warning" in severities else "pass"
