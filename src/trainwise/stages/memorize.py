"""Memorizing a few samples with regularization off: the experiment behind the two overfit
stages, and the evidence that tells why it failed (judged by cannot-overfit-batch and
cannot-overfit-few, rules/protocol.py)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trainwise.data import sole_input
from trainwise.loss_kinds import BINARY, CLASS_INDEX
from trainwise.measurements import Memorized, Retry
from trainwise.stages import experiment as ex
from trainwise.stages.base import CheckRun, StageOutcome

NEAR_ZERO = 0.1  # "near zero": 10% of the know-nothing loss (0.23 for 10-class cross-entropy)
CLASSIFICATION_FLOOR = 0.2
LR_RETRIES = (10.0, 0.1)  # the two other LRs that tell "LR too low" from "LR too high"


@dataclass
class Memorization:
    """One memorization run as it goes (the model included); `record` makes its frozen record
    for the rules. Its near-zero target is where the experiment stops: reached or not is what
    the overfit rules judge."""

    samples: int
    lr: float
    target: float
    losses: list[float] = field(default_factory=list)  # loss before each step
    reached: bool = False
    out_of_time: bool = False
    seconds: float = 0.0
    no_gradient: list[str] = field(default_factory=list)  # parameters left without gradient
    output_spread: float | None = None  # relative spread of the final outputs across samples
    model: nn.Module | None = None

    @property
    def steps(self) -> int:
        return len(self.losses)

    @property
    def initial(self) -> float:
        return self.losses[0] if self.losses else math.nan

    @property
    def final(self) -> float:
        return self.losses[-1] if self.losses else math.nan

    @property
    def finite(self) -> bool:
        return all(math.isfinite(v) for v in self.losses)


def near_zero_target(run: CheckRun, initial: float) -> float:
    reference, _ = ex.reference_loss(run)
    target = NEAR_ZERO * (reference if reference else initial)
    if run.context.loss_kind in CLASS_INDEX + BINARY:
        # With few classes 10% of log C asks for more confidence than memorizing needs (0.07
        # for two classes): 0.2 nats is a mean probability of ~0.82 on the right label.
        target = max(target, CLASSIFICATION_FLOOR)
    return target


def memorize(
    run: CheckRun,
    x: Any,
    y: Any,
    stage: str,
    max_steps: int,
    seconds: float,
    lr_factor: float = 1.0,
) -> Memorization:
    """Train a fresh model (dropout 0, weight decay 0, constant LR) on (x, y) until its loss is
    near zero, the steps run out, or the time does."""
    model, optimizer = ex.fresh(run, regularization=False)
    ex.scale_lr(optimizer, lr_factor)
    result = Memorization(
        samples=ex.first_tensor(y).shape[0],
        lr=ex.configured_lr(optimizer),
        target=math.inf,
        model=model,
    )
    deadline = ex.Deadline(seconds)
    started = time.perf_counter()
    for step in range(max_steps):
        loss = ex.train_step(run, model, optimizer, x, y, stage)
        result.losses.append(loss)
        ex.show_progress(run, f"{stage}: loss {loss:.3g}", step + 1, max_steps)
        if step == 0:
            result.target = near_zero_target(run, loss)
            result.no_gradient = [
                n
                for n, p in model.named_parameters()
                if p.requires_grad and (p.grad is None or not bool(p.grad.any()))
            ]
        if not math.isfinite(loss):
            break
        if loss <= result.target:
            result.reached = True
            break
        if deadline.passed:
            result.out_of_time = True
            break
    result.seconds = time.perf_counter() - started
    result.output_spread = output_spread(run, model, x, stage)
    return result


def inconsistent_labels(x: Any, y: Any) -> int:
    """How many samples share an identical input with a sample of a different label."""
    x = sole_input(x)
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or y.dim() != 1:
        return 0
    _, group = torch.unique(x.flatten(1), dim=0, return_inverse=True)
    count = 0
    for g in group.unique():
        labels = y[group == g]
        if labels.numel() > 1 and labels.unique().numel() > 1:
            count += labels.numel()
    return count


@torch.no_grad()
def output_spread(run: CheckRun, model: nn.Module, x: Any, stage: str) -> float | None:
    """max |out_i - out_0| / max |out|: 0 when every sample gets the same output."""
    out = ex.first_tensor(ex.forward(run, model, x, stage))
    if out is None or out.dim() == 0 or out.shape[0] < 2 or not torch.is_floating_point(out):
        return None
    out = out.float()
    return float((out - out[:1]).abs().max() / (out.abs().max() + 1e-12))


def measure(
    run: CheckRun,
    kind: type[Memorized],
    what: str,
    x: Any,
    y: Any,
    stage: str,
    max_steps: int,
    seconds: float,
) -> tuple[StageOutcome, Memorization]:
    """Run the memorization; on failure, retry at other LRs and gather the evidence. The outcome
    carries the record (of type `kind`) for the overfit rule that reads it."""
    result = memorize(run, x, y, stage, max_steps, seconds)
    metrics = {
        "samples": result.samples,
        "lr": result.lr,
        "steps": result.steps,
        "initial_loss": result.initial,
        "final_loss": result.final,
        "target": result.target,
        "loss_curve": _curve(result.losses),
    }
    progress = f"loss {ex.fmt(result.initial)} -> {ex.fmt(result.final)}"
    if result.reached:
        summary = (
            f"{what}: {progress} (near zero: <= {ex.fmt(result.target)}) in {result.steps} "
            f"steps at lr {ex.fmt(result.lr)}"
        )
        return StageOutcome(
            metrics=metrics, summary=summary, measurement=record(kind, what, result)
        ), result
    if result.out_of_time and result.finite:
        # A slow model (see the speed stage) or a busy machine: too few steps to judge.
        summary = (
            f"inconclusive: the time budget ({ex.fmt(seconds)}s) ran out after {result.steps} "
            f"of {max_steps} steps ({progress})"
        )
        return StageOutcome(metrics=metrics, summary=summary, skipped=True), result
    retries = tuple(_retry(run, x, y, stage, max_steps, seconds, result))
    measured = record(kind, what, result, retries, inconsistent_labels(x, y))
    summary = (
        f"{what}: {progress} after {result.steps} steps at lr {ex.fmt(result.lr)} "
        f"(near zero: <= {ex.fmt(result.target)})"
    )
    return StageOutcome(
        metrics={**metrics, **measured.diagnostics}, summary=summary, measurement=measured
    ), result


def _retry(run, x, y, stage, max_steps, seconds, result: Memorization):
    """The memorization at the other LRs worth trying, until one comes near zero."""
    for factor in _retries(result):
        retry = memorize(run, x, y, stage, max_steps, seconds / 2, lr_factor=factor)
        yield Retry(factor, retry.lr, retry.final, retry.steps, retry.reached)
        if retry.reached:
            return


def record(
    kind: type[Memorized],
    what: str,
    result: Memorization,
    retries: tuple[Retry, ...] = (),
    inconsistent: int = 0,
) -> Memorized:
    """The frozen record of a memorization run, of type `kind` (which rule reads it)."""
    return kind(
        what=what,
        samples=result.samples,
        lr=result.lr,
        steps=result.steps,
        initial=result.initial,
        final=result.final,
        target=result.target,
        reached=result.reached,
        finite=result.finite,
        retries=retries,
        no_gradient=tuple(result.no_gradient),
        inconsistent_samples=inconsistent,
        output_spread=result.output_spread,
    )


def _retries(result: Memorization) -> tuple[float, ...]:
    """The LRs worth trying: a loss that fell steadily but too slowly points at a higher LR, a
    loss that rose, jumped or went non-finite at a lower one; otherwise try both."""
    losses = result.losses
    if not result.finite or max(losses) > 1.5 * losses[0]:
        return (LR_RETRIES[1],)
    rises = sum(b > a for a, b in zip(losses, losses[1:], strict=False))
    if losses[-1] < losses[0] and rises <= 0.1 * len(losses):
        return (LR_RETRIES[0],)
    return LR_RETRIES


def _curve(losses: list[float], points: int = 50) -> dict[str, object]:
    """The loss curve for the report at up to `points` evenly spaced steps (first and last
    included), with the step of each point: {"x": steps, "y": losses, "xlabel", "ylabel"}."""
    if len(losses) <= points:
        idx = list(range(len(losses)))
    else:
        idx = sorted({round(i * (len(losses) - 1) / (points - 1)) for i in range(points)})
    return {
        "x": idx,
        "y": [round(losses[i], 6) for i in idx],
        "xlabel": "step",
        "ylabel": "training loss",
    }
