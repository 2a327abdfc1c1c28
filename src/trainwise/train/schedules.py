"""The LR schedules of a Recipe: torch's own schedulers, stepped once per optimizer step."""

from __future__ import annotations

import torch
from torch.optim import lr_scheduler

from trainwise.errors import SetupError

ONE_CYCLE_WARMUP = 0.25  # fraction of the run spent rising (fastai's fit_one_cycle default)
RESTART_CYCLES = 4  # cosine with warm restarts: the run holds this many cycles
STEP_DECAYS = 3  # step decay: the LR is divided by 10 this many times, evenly spaced


def build_schedule(
    name: str, optimizer: torch.optim.Optimizer, total_steps: int
) -> lr_scheduler.LRScheduler:
    """The scheduler `name` over `total_steps` optimizer steps, peaking at each group's own LR
    (so discriminative LRs keep their ratios)."""
    if total_steps < 1:
        raise SetupError(f"fit: {total_steps} training steps; expected at least 1")
    peaks = [float(g["lr"]) for g in optimizer.param_groups]
    if name == "one-cycle":
        # OneCycleLR divides by its warm-up's last step, pct_start * total_steps - 1: never 0
        # (4 steps at 0.25), or the first step raises ZeroDivisionError.
        warmup = ONE_CYCLE_WARMUP if ONE_CYCLE_WARMUP * total_steps != 1 else 2 / total_steps
        return lr_scheduler.OneCycleLR(
            optimizer, max_lr=peaks, total_steps=total_steps, pct_start=warmup
        )
    if name == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if name == "cosine-restarts":
        cycle = max(1, total_steps // RESTART_CYCLES)
        return lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=cycle)
    if name == "step":
        every = max(1, total_steps // (STEP_DECAYS + 1))
        return lr_scheduler.StepLR(optimizer, step_size=every, gamma=0.1)
    if name == "constant":
        return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    raise SetupError(f"fit: unknown schedule {name!r}")
