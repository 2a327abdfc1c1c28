"""Speed profile: where a training step's time goes, with the user's own DataLoader settings.

Data wait (next(iterator)), forward, backward and optimizer step are timed per batch over a few
dozen batches; the first batch (worker start-up, lazy initialization) is left out.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from trainwise.data import as_pair, to_device
from trainwise.rules import CATALOGUE
from trainwise.stages import experiment as ex
from trainwise.stages.base import CheckRun, StageOutcome

LOADER_BOUND = 0.5  # data wait over half the step: the loader is the bottleneck
PHASES = ("data", "forward", "backward", "optimizer")


class SpeedStage:
    name = "speed"
    title = "Speed profile"

    def __init__(self, slow_step_seconds: float = ex.SLOW_STEP) -> None:
        self.slow_step_seconds = slow_step_seconds

    def run(self, run: CheckRun) -> StageOutcome:
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
            run.shared[ex.STEP_SECONDS_KEY] = judged
            outcome = StageOutcome(
                metrics={
                    "batches": len(times),
                    "step_seconds": step,
                    "step_seconds_judged": judged,
                    "data_share": share,
                    **{f"{p}_seconds": v for p, v in medians.items()},
                    "num_workers": loader.num_workers,
                }
            )
            outcome.summary = (
                f"step {_ms(step)}: data {_ms(medians['data'])} ({share:.0%}), forward "
                f"{_ms(medians['forward'])}, backward {_ms(medians['backward'])}, optimizer "
                f"{_ms(medians['optimizer'])} (median of {len(times)} batches, "
                f"num_workers={loader.num_workers})"
            )
            if share > LOADER_BOUND:
                outcome.findings.append(
                    _loader_bound(run, model, optimizer, loader, medians, share, b, self.name)
                )
        if judged > self.slow_step_seconds:
            breakdown = ", ".join(f"{p} {_ms(v)}" for p, v in medians.items())
            outcome.findings.append(
                CATALOGUE["slow-step"].finding(
                    f"One training step takes {_ms(step)} on {run.setup.torch_device} (batch of "
                    f"{loader.batch_size}; {_ms(judged)} of CPU time): {breakdown}. Debugging "
                    "turnaround suffers; the "
                    f"largest part is {max(medians, key=medians.get)}.",
                    evidence={"step_seconds": step, "step_seconds_judged": judged, **medians},
                )
            )
        return outcome


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
            x, y = as_pair(batch, i, "train loader batch")
            x, y = to_device(x, device), to_device(y, device)
            sync()
            t1 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss = ex.compute_loss(run, ex.forward(model, x, stage), y, stage)
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


def _loader_bound(run, model, optimizer, loader, medians, share, b, stage):
    step = sum(medians.values())
    evidence: dict[str, Any] = {"data_share": share, "step_seconds": step, **medians}
    trial = _suggested(loader)
    tried = ""
    if trial is not None:
        settings, faster = trial
        times = profile(run, model, optimizer, faster, b.speed_batches, b.speed_seconds, stage)
        if times:
            m = {p: statistics.median(t[p] for t in times) for p in PHASES}
            new_step = sum(m.values())
            new_share = m["data"] / new_step if new_step > 0 else 0.0
            evidence.update(
                {
                    "suggested": settings,
                    "suggested_step_seconds": new_step,
                    "suggested_data_share": new_share,
                }
            )
            tried = (
                f" Measured with DataLoader({settings}): step {_ms(new_step)}, data wait "
                f"{new_share:.0%} (speed-up {step / new_step:.2f}x on this machine)."
                if new_step > 0
                else ""
            )
    return CATALOGUE["data-loader-bound"].finding(
        f"Waiting for data takes {share:.0%} of the training step ({_ms(medians['data'])} of "
        f"{_ms(step)}, median over the profiled batches) with num_workers={loader.num_workers}."
        + tried,
        evidence=evidence,
    )


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


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}ms" if seconds < 1 else f"{seconds:.2f}s"
