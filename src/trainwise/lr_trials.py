"""Trial runs: the range test's answer checked by actually training at a few LRs.

A range test sweeps the LR once, one step per LR, so it can tell where training becomes
unstable (the divergence onset) but not how far below that edge a full run does best. On the
tasks of benchmarks/lr_suggest.py the best fixed-budget LR lies anywhere from 0.3 to 1.3 decades
under the onset, and a quarter of a decade off the best often costs 20-100% in validation loss.
No reading of the curve closes that gap (benchmarks/lr_ablation.py); training does.

So, given the length of the planned run (`steps`), train from the same starting point at
candidate LRs 0.25, 0.5, ... 1.5 decades under the onset, each for `steps` steps with the LR
annealed to 0 on a cosine (the schedule most runs use), and score each by validation loss (or,
without validation data, by the training loss of the last tenth of the steps, which favours the
largest stable LR). When the best is the lowest candidate, lower ones are added. The pick is the
minimum of a parabola fitted to log(score) through the best trial and two neighbours either
side: one run per LR is noisy, and the lowest of six noisy scores alone is biased towards the
noisiest LRs. It never goes above the best trial when the next higher LR diverged or was much
worse: the best LR often sits right under a cliff, and one seed's best is another's divergence.

Every trial runs inside `state.preserved` and `state.preserved_loader`, so the model, the
optimizer, the RNGs and the loader's shuffling generator are exactly as they were afterwards,
and every trial starts from the same weights, optimizer state and data order (so the trials
differ by their LR, not by their luck).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from trainwise.data import to_device
from trainwise.errors import SetupError
from trainwise.lr_loop import BatchLoss, batch_loss, cycle, group_ratios, set_lrs
from trainwise.state import preserved, preserved_loader

STEP = 0.25  # decades between candidates
FIRST, LAST = 1, 6  # candidates at onset - STEP * k, k = FIRST..LAST (0.25..1.5 decades)
EXTEND = 2  # extra candidates below when the lowest one is the best
DIVERGED = 4.0  # a trial whose smoothed training loss exceeds this x its first loss diverged
CLIFF = 1.5  # a neighbour this much worse than the best (or diverged) is a cliff: don't lean in
NEIGHBOURS = 2  # candidates either side of the best that the parabola is fitted to
GOOD = 0.05  # candidates within 5% of the best score form the measured good range
TAIL = 0.1  # without validation data: the mean training loss of the last tenth of the steps


@dataclass
class Trials:
    """The candidates tried, their scores, and the pick."""

    lrs: list[float]  # candidate peak LRs (group 0), ascending
    scores: list[float]  # validation (or end-of-run training) loss; inf: diverged
    train_scores: list[float]  # training loss over the last tenth of each trial; inf: diverged
    steps: int
    scored_on: str  # "validation" | "training"
    lr: float | None  # the pick; None when every candidate diverged
    low: float | None = None  # the measured good range: candidates within GOOD of the best
    high: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lrs": self.lrs,
            "scores": [s if math.isfinite(s) else None for s in self.scores],
            "train_scores": [s if math.isfinite(s) else None for s in self.train_scores],
            "steps": self.steps,
            "scored_on": self.scored_on,
            "lr": self.lr,
            "range": [self.low, self.high],
            "notes": self.notes,
        }

    def summary(self) -> str:
        cells = "  ".join(trial_cell(lr, s) for lr, s in zip(self.lrs, self.scores, strict=True))
        lines = [f"trial runs ({self.steps} steps each, {self.scored_on} loss): {cells}"]
        if self.lr is not None:
            lines.append(
                f"suggested LR: {self.lr:.2e} (fitted through the best trials; trials within 5% "
                f"of the best: {self.low:.1e} .. {self.high:.1e})"
            )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def run_trials(
    model: nn.Module,
    loader: Iterable,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    onset: float,
    steps: int,
    *,
    val: Iterable | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    on_trial: Callable[[float, float], None] | None = None,
) -> Trials:
    """Train at candidate LRs under the divergence onset `onset`; pick the best (see module).

    on_trial(lr, score) is called after each trial (the CLI shows progress with it)."""
    check_trial_steps(steps)
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    x_on = math.log10(onset)
    xs = [x_on - STEP * k for k in range(FIRST, LAST + 1)][::-1]  # ascending

    def trial(x: float) -> tuple[float, float]:
        score, tail = _trial(model, loader, loss_fn, optimizer, 10**x, steps, val, device, seed)
        if on_trial is not None:
            on_trial(10**x, score)
        return score, tail

    runs = [trial(x) for x in xs]  # (score, training-tail loss) per candidate
    for _ in range(EXTEND):  # the best is the lowest candidate: the optimum may lie lower still
        scores = [r[0] for r in runs]
        if int(np.argmin(scores)) != 0 or not math.isfinite(scores[0]):
            break
        xs.insert(0, xs[0] - STEP)
        runs.insert(0, trial(xs[0]))
    scores = [r[0] for r in runs]
    trials = Trials(
        lrs=[10**x for x in xs],
        scores=scores,
        train_scores=[r[1] for r in runs],
        steps=steps,
        scored_on="validation" if val is not None else "training",
        lr=None,
    )
    _pick(trials, np.array(xs), np.array(scores))
    if val is None:
        trials.notes.append(
            "scored on the training loss (no validation data), which favours the largest stable "
            "LR over the one that generalizes best; give Setup(val=...) or val= for a better pick"
        )
    return trials


def check_trial_steps(steps: int) -> None:
    if steps < 10:
        raise SetupError(f"lr_find: trial_steps={steps} is too few to compare LRs; use >= 10")


def trial_cell(lr: float, score: float) -> str:
    """One trial as the terminal shows it: `lr:score`, or `lr:diverged`."""
    return f"{lr:.1e}:{score:.3g}" if math.isfinite(score) else f"{lr:.1e}:diverged"


def pick_from(raw: dict[str, Any]) -> float | None:
    """The pick of trials saved with `Trials.to_dict()` (the benchmark re-picks from its cache)."""
    scores = [math.inf if s is None else s for s in raw["scores"]]
    trials = Trials(raw["lrs"], scores, [], raw["steps"], raw["scored_on"], None)
    _pick(trials, np.log10(np.array(raw["lrs"])), np.array(scores, dtype=float))
    return trials.lr


def _pick(trials: Trials, xs: np.ndarray, scores: np.ndarray) -> None:
    finite = np.isfinite(scores)
    if not finite.any():
        trials.notes.append("every trial diverged; the range test's suggestion stands")
        return
    i = int(np.nanargmin(np.where(finite, scores, np.nan)))
    below = _good_below_a_band(scores, i)
    if below:
        trials.notes.append(
            f"the best trial ({trials.lrs[i]:.2g}) lies above a band of much worse ones: not "
            f"trusted; picked among the {below} below the band"
        )
        xs, scores, finite = xs[:below], scores[:below], finite[:below]
        i = int(np.nanargmin(np.where(finite, scores, np.nan)))
    best = scores[i]
    trials.lr = float(10 ** _fitted_minimum(xs, scores, i))
    good = xs[finite & (scores <= best * (1 + GOOD) + 1e-12)]
    trials.low, trials.high = float(10 ** good.min()), float(10 ** good.max())
    if i == 0:
        trials.notes.append("the best trial was the lowest LR tried; a lower LR may do better")


def _good_below_a_band(scores: np.ndarray, i: int) -> int:
    """How many candidates lie below a band of bad trials under the best one (i), when some of
    them score within CLIFF of it; else 0. A best trial whose lower neighbour is a cliff, with
    good LRs further down, is a short trial's luck above the range where training is unstable:
    a tiny U-Net's 10-step trials scored 0.43, 0.41, 1.12, 0.96, 1.42, then 0.38 at the top LR,
    which had reached the all-background prediction (IoU 0.63 after 5 epochs; 0.96 at the LR
    below the band). On part A's 18 runs of benchmarks/fit_recipe.py no pick changes."""
    bad = lambda k: not scores[k] <= CLIFF * scores[i]  # noqa: E731 - inf and nan are bad
    if i < 2 or not bad(i - 1):
        return 0
    k = i - 1
    while k > 0 and bad(k - 1):
        k -= 1
    return k  # candidates [0, k) are below the band; k == 0: none is good


def _fitted_minimum(xs: np.ndarray, s: np.ndarray, i: int) -> float:
    """log10(lr) where a parabola fitted to log(score) over candidate i and up to NEIGHBOURS
    finite candidates either side is lowest, kept within those candidates, and never above
    candidate i when the next higher LR is a cliff (diverged, or CLIFF x worse): the best LR
    often sits right under the edge, and one seed's best is another seed's divergence.

    One trial per LR is noisy (another seed moves a validation loss by 10-30% near the
    optimum), and the lowest of 6 noisy scores is biased towards the noisiest LRs; a fit
    through 5 of them averages that noise out (benchmarks/lr_suggest.py)."""
    window = np.arange(max(0, i - NEIGHBOURS), min(len(xs), i + NEIGHBOURS + 1))
    window = window[np.isfinite(s[window])]
    lo, hi = float(xs[window].min()), float(xs[window].max())
    if i + 1 < len(xs) and not s[i + 1] <= CLIFF * s[i]:  # inf fails the test too
        hi = float(xs[i])
    if len(window) < 3:
        return float(xs[i])
    a, b, _ = np.polyfit(xs[window], np.log(np.maximum(s[window], 1e-12)), 2)
    if a <= 0:  # no curvature: the data give no minimum between the candidates
        return float(xs[i])
    return float(np.clip(-b / (2 * a), lo, hi))


def _trial(
    model, loader, loss_fn, optimizer, peak: float, steps: int, val, device, seed: int
) -> tuple[float, float]:
    """One cosine-annealed run from the current state at peak LR `peak`: (its score, its
    training loss over the last tenth), both inf if it diverged. Everything is restored after."""
    ratios = group_ratios(optimizer)
    tail_from = steps - max(1, int(TAIL * steps))
    with preserved(model, optimizer), preserved_loader(loader):
        torch.manual_seed(seed)
        model.train()
        batches = cycle(loader)
        first, ema, tail = None, 0.0, []
        for i in range(steps):
            lr = peak * 0.5 * (1 + math.cos(math.pi * i / steps))
            set_lrs(optimizer, lr, ratios)
            optimizer.zero_grad(set_to_none=True)
            loss = batch_loss(model, loss_fn, next(batches), i, device)
            value = float(loss.detach())
            if not math.isfinite(value):
                return math.inf, math.inf
            first = value if first is None else first
            ema = 0.9 * ema + 0.1 * value
            if i >= 10 and ema / (1 - 0.9 ** (i + 1)) > DIVERGED * max(first, 1e-12):
                return math.inf, math.inf
            if i >= tail_from:
                tail.append(value)
            loss.backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        end = float(np.mean(tail))
        score = _validation_loss(model, loss_fn, val, device) if val is not None else end
    return (score if math.isfinite(score) else math.inf), end


@torch.no_grad()
def _validation_loss(model: nn.Module, loss_fn, val: Iterable, device) -> float:
    """Mean loss over the validation batches, weighted by batch size."""
    loss_of = BatchLoss.of(loss_fn)
    model.eval()
    total, count = 0.0, 0
    for i, batch in enumerate(val):
        x, y = loss_of.split(batch, i, "lr_find: the validation loader's batch")
        y = to_device(y, device)
        n = len(y) if hasattr(y, "__len__") else 1
        total += float(loss_of.loss(model, to_device(x, device), y)) * n
        count += n
    if count == 0:
        raise SetupError("lr_find: the validation loader yielded no batches")
    return total / count
