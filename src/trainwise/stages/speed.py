"""Speed profile: where a training step's time goes, with the user's own DataLoader settings.

Data wait (next(iterator)), forward, backward and optimizer step are timed per batch over a few
dozen batches; the first batch (worker start-up, lazy initialization) is left out. The profile
is judged by `data-loader-bound` and `slow-step` (rules/protocol.py).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from trainwise.measurements import LoaderTrial, SpeedProfile
from trainwise.rules.protocol import LOADER_BOUND, SLOW_STEP, ms
from trainwise.stages import experiment as ex
from trainwise.stages.base import CheckRun, StageOutcome

PHASES = ("data", "forward", "backward", "optimizer")


class SpeedStage:
    name = "speed"
    title = "Speed profile"

    def __init__(self, slow_step_seconds: float = SLOW_STEP) -> None:
        self.slow_step_seconds = slow_step_seconds

    def run(self, run: CheckRun) -> StageOutcome:
        run.slow_step_seconds = self.slow_step_seconds  # the one limit --quick skips at, too
        if (reason := ex.blocking_reason(run)) is not None:
            return ex.skipped(reason)
        b = ex.budgets(run)
        loader = (
            run.setup.train if isinstance(run.setup.train, DataLoader) else run.setup.train_loader()
        )
        with ex.isolated(run):
            model, optimizer = ex.fresh(run)
            times = profile(
                run, model, optimizer, loader, b.speed_batches, b.speed_seconds, self.name
            )
            if not times:
                return ex.skipped("the training loader yielded fewer than two batches")
            medians = {p: statistics.median(t[p] for t in times) for p in PHASES}
            step = sum(medians.values())
            # The step time judged: on CPU, wall time inflated by other processes' load is
            # capped by the CPU time the step consumed (which their load does not inflate).
            judged = step
            if run.setup.torch_device.type == "cpu":
                judged = min(step, statistics.median(t["cpu"] for t in times))
            share = medians["data"] / step if step > 0 else 0.0
            run.step_seconds = judged
            trial = None
            if share > LOADER_BOUND:  # the loader is the bottleneck: measure the remedy
                trial = _loader_trial(run, model, optimizer, loader, b, self.name)
        measured = SpeedProfile(
            device=str(run.setup.torch_device),
            batch_size=loader.batch_size,
            num_workers=loader.num_workers,
            phases=medians,
            step_seconds=step,
            step_seconds_judged=judged,
            data_share=share,
            slow_step_seconds=self.slow_step_seconds,
            loader_trial=trial,
        )
        return StageOutcome(
            metrics={
                "batches": len(times),
                "step_seconds": step,
                "step_seconds_judged": judged,
                "data_share": share,
                **{f"{p}_seconds": v for p, v in medians.items()},
                "num_workers": loader.num_workers,
            },
            summary=(
                f"step {ms(step)}: data {ms(medians['data'])} ({share:.0%}), forward "
                f"{ms(medians['forward'])}, backward {ms(medians['backward'])}, optimizer "
                f"{ms(medians['optimizer'])} (median of {len(times)} batches, "
                f"num_workers={loader.num_workers})"
            ),
            measurement=measured,
        )


def profile(run, model, optimizer, loader, batches, seconds, stage) -> list[dict[str, float]]:
    """Per-batch phase times; sync points on CUDA so each phase is charged its own time."""
    device = run.setup.torch_device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    deadline = ex.Deadline(seconds)
    times: list[dict[str, float]] = []
    iterator = iter(loader)
    try:
        for i in range(batches + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            x, y = run.setup.batch_on_device(batch, i, "train loader batch")
            sync()
            t1 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss = ex.loss_of(run, model, x, y, stage)
            sync()
            t2 = time.perf_counter()
            ex.backward(model, loss, x, run, y, stage)
            sync()
            t3 = time.perf_counter()
            optimizer.step()
            sync()
            t4, c4 = time.perf_counter(), time.process_time()
            if i > 0:  # the first batch pays start-up costs
                times.append(
                    {
                        "data": t1 - t0,
                        "forward": t2 - t1,
                        "backward": t3 - t2,
                        "optimizer": t4 - t3,
                        "cpu": c4 - c0,
                    }
                )
            if deadline.passed and len(times) >= 2:
                break
    finally:
        _shutdown(iterator)
    return times


def _shutdown(iterator: Any) -> None:
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:  # stop worker processes now rather than at garbage collection
        shutdown()


def _loader_trial(run, model, optimizer, loader, b, stage) -> LoaderTrial | None:
    """The step profiled again with the suggested loader settings (None when no such loader can
    be built, or it yielded too few batches)."""
    suggested = _suggested(loader)
    if suggested is None:
        return None
    settings, faster = suggested
    times = profile(run, model, optimizer, faster, b.speed_batches, b.speed_seconds, stage)
    if not times:
        return None
    m = {p: statistics.median(t[p] for t in times) for p in PHASES}
    new_step = sum(m.values())
    return LoaderTrial(settings, new_step, m["data"] / new_step if new_step > 0 else 0.0)


def _suggested(loader: DataLoader) -> tuple[str, DataLoader] | None:
    """A copy of the user's loader with parallel workers, when it can be built safely."""
    if loader.num_workers > 0 or isinstance(loader.dataset, IterableDataset):
        return None
    workers = max(1, min(4, (os.cpu_count() or 2)))
    pin = torch.cuda.is_available()
    settings = f"num_workers={workers}, persistent_workers=True" + (
        ", pin_memory=True" if pin else ""
    )
    try:
        faster = DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            sampler=loader.sampler
            if loader.batch_sampler is None or loader.batch_size is not None
            else None,
            collate_fn=loader.collate_fn,
            drop_last=loader.drop_last,
            num_workers=workers,
            persistent_workers=True,
            pin_memory=pin,
        )
    except Exception:
        return None
    return settings, faster
