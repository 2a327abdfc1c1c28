"""The learning-rate range test, and a suggestion that stays put across seeds and sweep lengths.

The sweep (Smith 2015, "Cyclical Learning Rates", section 3.3): train for `num_iter` steps while
the LR grows exponentially from `start_lr` to `end_lr`, recording the loss of every batch; stop
once the smoothed loss has grown past `diverge_factor` times its best. It runs on the user's own
model and optimizer (Adam-family, SGD, anything with `param_groups`) inside `state.preserved`, so
weights, buffers, gradients, modes, optimizer state and every RNG are as they were afterwards.

The suggestion ("edge of stability"), and why:
- Work on the log10-LR axis. The sweep is exponential, so a smoothing window measured in decades
  covers the same LRs whatever the number of iterations; windows measured in iterations (the EMA
  of fastai, Lightning and torch-lr-finder) span a different number of decades at 100 and at
  300 iterations, one reason their suggestions move with it.
- Smooth robustly: a running median over +-`bandwidth` decades (one bad batch cannot make a
  minimum or a cliff), then a Gaussian kernel of the same width.
- Anchor on the divergence onset: the first LR past the smoothed minimum where the loss has
  climbed back by a fifth of its drop. There the steps have become too large for the curvature
  (for SGD on a quadratic, lr > 2 / lambda_max), a property of the loss surface more than of
  how far the sweep had trained, so it moves less with the seed and the sweep length than the
  steepest slope or the valley, which depend on the progress made at small LRs.
- Suggest `onset / 10**margin` (margin 0.5 decade: the best of the variants scored by
  benchmarks/lr_ablation.py on the short-budget oracle; benchmarks/lr_suggest.py then reports it
  on the longer budgets). A training run takes thousands of steps where the sweep takes one per
  LR, so its best peak LR sits below the onset, not on it.
- The good range is half a decade either side of the suggestion. The uncertainty of the
  suggestion itself is measured by a moving-block bootstrap of the curve's residuals (resample
  the noise, recompute the suggestion): `interval` is its 10-90%, widened to hold the
  suggestion. The widening is needed: the bootstrap re-smooths the smoothed curve plus
  resampled residuals, and the residuals of the steep climb past the onset land in blocks
  anywhere on the curve, so its picks are biased against the observed curve's; its 10-90% left
  the suggestion outside on 2 of 4 sweeps of a digits CNN (tests/test_lr_find.py).
- Seeded: a Setup's model is built, and the data shuffled, under `seed` (0 by default), so two
  calls give the same answer. `seeds=N` repeats the range test on N seeds (a fresh model each
  with a Setup), suggests the median seed's answer and reports the spread; a spread over half
  a decade (the half-width of the good range) is called out.

How far under the onset a run does best depends on the run (its length, its schedule, how
much it overfits): 0.3 to 1.3 decades on the benchmark's tasks, and a quarter of a decade off
often costs 20-100% in validation loss. No reading of one sweep can know that, so with
`trial_steps` (the length of the planned run) the range test is followed by trial runs at
candidate LRs under the onset, and the best of them is the answer (lr_trials.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainwise.errors import SetupError
from trainwise.findings import Finding
from trainwise.lr_loop import BatchLoss, batch_loss, cycle, group_ratios, set_lrs
from trainwise.lr_trials import Trials, check_trial_steps, run_trials
from trainwise.state import preserved, preserved_loader, preserved_rng

DEFAULT_START_LR = 1e-7
DEFAULT_END_LR = 10.0
DEFAULT_NUM_ITER = 100
DIVERGE_FACTOR = 4.0  # stop once the smoothed loss is 4x its best (fastai's and Lightning's)
BANDWIDTH = 0.15  # decades: half-width of the running median, sigma of the Gaussian
MARGIN = 0.5  # decades below the divergence onset (chosen by benchmarks/lr_ablation.py)
FLOOR_SHIFT = 0.5  # decades: when the loss never climbs, its floor counts as onset - 0.5
RISE = 0.2  # the onset: the loss has climbed back by this share of its drop
RANGE_BELOW, RANGE_ABOVE = 0.5, 0.5  # decades around the suggestion: the good range
WIDE_SPREAD = 0.5  # decades between seeds' suggestions worth a note: the good range's half-width


@dataclass
class Suggestion:
    lr: float | None  # None: the curve gives no answer (reason says why)
    lr_div: float | None = None  # divergence onset: the loss climbs back up from here
    lr_min: float | None = None  # where the smoothed loss is lowest
    lr_steep: float | None = None  # steepest descent on the log-LR axis (None: no descent)
    low: float | None = None  # the range of good LRs around the suggestion
    high: float | None = None
    interval: tuple[float, float] | None = None  # bootstrap 10-90% of `lr`
    reason: str = ""


@dataclass
class LRFindResult:
    """A range test: the sweep as recorded, the smoothed curve, and the suggestion."""

    lrs: np.ndarray  # (N,) LR of the first parameter group at each step
    losses: np.ndarray  # (N,) raw training loss of each step (non-finite kept, marks the end)
    smoothed: np.ndarray  # (N,) robust smoothing on the log-LR axis (NaN past divergence)
    suggestion: Suggestion
    configured_lr: float | None = None  # the optimizer's LR before the test
    stopped_early: bool = False  # the loss diverged before end_lr
    settings: dict[str, Any] = field(default_factory=dict)
    record_path: Path | None = None  # the run record's folder, when one was kept
    trials: Trials | None = None  # trial runs at candidate LRs, when trial_steps was given
    # {seed: range-test suggestion} when seeds > 1 (the suggestion is the median seed's)
    seed_suggestions: dict[int, float | None] | None = None
    # Blocking static findings (as `check` reports them): the range test did not run
    findings: list[Finding] = field(default_factory=list)

    @property
    def spread(self) -> float | None:
        """Decades between the lowest and highest suggestion over the seeds (seeds > 1)."""
        got = [v for v in (self.seed_suggestions or {}).values() if v]
        return float(np.ptp(np.log10(got))) if len(got) > 1 else None

    @property
    def suggested_lr(self) -> float | None:
        """The trials' pick when trials ran and one converged, else the range test's."""
        if self.trials is not None and self.trials.lr is not None:
            return self.trials.lr
        return self.suggestion.lr

    def to_dict(self) -> dict[str, Any]:
        s = self.suggestion
        return {
            "suggested_lr": self.suggested_lr,  # the trials' pick when they ran
            "range_test_lr": s.lr,
            "lr_div": s.lr_div,
            "lr_min": s.lr_min,
            "lr_steep": s.lr_steep,
            "range": [s.low, s.high],
            "interval": list(s.interval) if s.interval else None,
            "reason": s.reason,
            "configured_lr": self.configured_lr,
            "stopped_early": self.stopped_early,
            "settings": self.settings,
            "lrs": self.lrs.tolist(),
            "losses": [float(v) if math.isfinite(v) else None for v in self.losses],
            "trials": self.trials.to_dict() if self.trials is not None else None,
            "seed_suggestions": (
                {str(k): v for k, v in self.seed_suggestions.items()}
                if self.seed_suggestions is not None
                else None
            ),
            "spread_decades": self.spread,
            "findings": [f.to_dict() for f in self.findings],
        }

    def summary(self) -> str:
        """A few plain lines for the terminal."""
        s = self.suggestion
        if len(self.lrs) == 0:  # blocked before the sweep: the reason names the finding
            return f"no range test: {s.reason}"
        n, first, last = len(self.lrs), self.lrs[0], self.lrs[-1]
        lines = [
            f"range test: {n} steps, LR {first:.1e} -> {last:.1e}"
            + (" (stopped: loss diverged)" if self.stopped_early else "")
        ]
        if s.lr is None:
            lines.append(f"no suggestion: {s.reason}")
            return "\n".join(lines)
        picked = self.trials is not None and self.trials.lr is not None
        lines.append(f"{'range test LR' if picked else 'suggested LR'}: {s.lr:.2e}")
        if s.low is not None and s.high is not None:
            lines.append(f"good range:   {s.low:.1e} .. {s.high:.1e} (half a decade either side)")
        if s.interval is not None:
            lines.append(  # the suggestion's precision: the band visibly holds it
                f"uncertainty:  {s.interval[0]:.2e} .. {s.interval[1]:.2e} (bootstrap 10-90%)"
            )
        if self.seed_suggestions is not None:
            lines.append(_spread_line(self.seed_suggestions, self.spread))
        if s.reason:
            lines.append(f"note: {s.reason}")
        if self.trials is not None:
            lines.append(self.trials.summary())
        if self.configured_lr:
            ratio = self.configured_lr / self.suggested_lr
            lines.append(f"configured:   {self.configured_lr:.2e} ({_ratio_words(ratio)})")
        return "\n".join(lines)

    def plot(self, path: str | Path | None = None, ax: Any = None) -> Any:
        """Loss against LR (log axis), raw and smoothed, with the suggestion and range marked.

        Writes PNG/SVG (by the suffix) when `path` is given; returns the matplotlib Axes.
        """
        import matplotlib

        if ax is None and path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        own = ax is None
        if own:
            fig, ax = plt.subplots(figsize=(7, 4.2))
        finite = np.isfinite(self.losses)
        ax.plot(self.lrs[finite], self.losses[finite], color="0.75", lw=1, label="loss per batch")
        ax.plot(self.lrs, self.smoothed, color="C0", lw=2, label="smoothed (log-LR axis)")
        s = self.suggestion
        picked = self.trials is not None and self.trials.lr is not None
        if picked and self.trials.low < self.trials.high:
            ax.axvspan(self.trials.low, self.trials.high, color="C2", alpha=0.12,
                       label="trials within 5% of the best")  # fmt: skip
        elif not picked and s.low is not None and s.high is not None:
            ax.axvspan(s.low, s.high, color="C2", alpha=0.12, label="good range")
        if s.lr is not None:  # with a trial pick, the range test's is only its starting point
            label = f"range test {s.lr:.1e}" if picked else f"suggested {s.lr:.1e}"
            ax.axvline(s.lr, color="C3", lw=1 if picked else 2, label=label)
        if self.configured_lr:
            ax.axvline(
                self.configured_lr,
                color="0.3",
                ls="--",
                label=f"configured {self.configured_lr:.1e}",
            )
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        lo, hi = _plot_ylim(self.smoothed)
        if lo is not None:
            ax.set_ylim(lo, hi)
        handles, labels = ax.get_legend_handles_labels()
        if self.trials is not None:
            h, lab = _plot_trials(ax, self.trials)
            handles, labels = handles + h, labels + lab
        ax.legend(handles, labels, fontsize=8, loc="upper left")
        ax.set_title("LR range test")
        if own and path is not None:
            fig.tight_layout()
            fig.savefig(path)
            plt.close(fig)
        return ax


# -- the sweep --------------------------------------------------------------------------------


def range_test(
    model: nn.Module,
    loader: Iterable,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    *,
    start_lr: float = DEFAULT_START_LR,
    end_lr: float = DEFAULT_END_LR,
    num_iter: int = DEFAULT_NUM_ITER,
    diverge_factor: float = DIVERGE_FACTOR,
    device: torch.device | str | None = None,
    seed: int = 0,
) -> LRFindResult:
    """Sweep the LR exponentially on `model`/`optimizer`; restore both exactly afterwards."""
    if not (0 < start_lr < end_lr):
        raise SetupError(f"lr_find: expected 0 < start_lr < end_lr, got {start_lr}, {end_lr}")
    if num_iter < 10:
        raise SetupError(f"lr_find: num_iter={num_iter} is too few to find anything; use >= 10")
    if not optimizer.param_groups:
        raise SetupError("lr_find: the optimizer has no parameter groups")
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    configured = float(optimizer.param_groups[0]["lr"])
    ratios = group_ratios(optimizer)  # the sweep is quoted for group 0
    gamma = (end_lr / start_lr) ** (1.0 / (num_iter - 1))
    lrs, losses = [], []
    stopped = False
    with preserved(model, optimizer), preserved_loader(loader):
        torch.manual_seed(seed)
        model.train()
        batches = cycle(loader)
        ema, best, beta = 0.0, math.inf, 0.9
        for i in range(num_iter):
            lr = start_lr * gamma**i
            set_lrs(optimizer, lr, ratios)
            optimizer.zero_grad(set_to_none=True)
            loss = batch_loss(model, loss_fn, next(batches), i, device)
            value = float(loss.detach())
            lrs.append(lr)
            losses.append(value)
            if not math.isfinite(value):
                stopped = True
                break
            loss.backward()
            optimizer.step()
            ema = beta * ema + (1 - beta) * value
            smooth = ema / (1 - beta ** (i + 1))  # debiased
            best = min(best, smooth)
            if i >= 10 and smooth > diverge_factor * best:
                stopped = True
                break
        optimizer.zero_grad(set_to_none=True)
    lrs_a, losses_a = np.array(lrs), np.array(losses)
    smoothed = smooth_log_axis(lrs_a, losses_a)
    suggestion = suggest(lrs_a, losses_a, smoothed=smoothed)
    settings = {"start_lr": start_lr, "end_lr": end_lr, "num_iter": num_iter, "seed": seed}
    return LRFindResult(lrs_a, losses_a, smoothed, suggestion, configured, stopped, settings)


# -- the suggestion ---------------------------------------------------------------------------


def smooth_log_axis(
    lrs: np.ndarray, losses: np.ndarray, bandwidth: float = BANDWIDTH
) -> np.ndarray:
    """Running median over +-bandwidth decades, then a Gaussian kernel (sigma = bandwidth).

    The sweep is exponential, so the points are evenly spaced in log10(lr) and a window of
    fixed decades is a fixed number of points: k = bandwidth / spacing on each side.
    """
    out = np.full(len(losses), np.nan)
    ok = np.isfinite(losses)
    n = int(ok.sum())
    if n < 3:
        return out
    x, y = np.log10(lrs[ok]), losses[ok]
    step = (x[-1] - x[0]) / (n - 1) if x[-1] > x[0] else bandwidth
    k = max(1, int(round(bandwidth / step)))
    padded = np.concatenate([np.full(k, np.nan), y, np.full(k, np.nan)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * k + 1)  # (n, 2k+1)
    med = np.nanmedian(windows, axis=1)  # edges: the window shrinks to what exists
    half = min(3 * k, (n - 1) // 2)  # the kernel may not be longer than the curve
    offsets = np.arange(-half, half + 1) * step
    kernel = np.exp(-0.5 * (offsets / bandwidth) ** 2)  # (2 * half + 1,)
    num = np.convolve(med, kernel, mode="same")
    den = np.convolve(np.ones(n), kernel, mode="same")  # renormalized at the edges
    out[ok] = num / den
    return out


def suggest(
    lrs: np.ndarray,
    losses: np.ndarray,
    smoothed: np.ndarray | None = None,
    margin: float = MARGIN,
    bandwidth: float = BANDWIDTH,
    bootstrap: int = 100,
) -> Suggestion:
    """The "edge of stability" rule (see the module docstring), with its bootstrap interval."""
    if smoothed is None:
        smoothed = smooth_log_axis(lrs, losses, bandwidth)
    ok = np.isfinite(smoothed)
    if ok.sum() < 10:
        return Suggestion(None, reason="fewer than 10 finite losses; the loss diverged at once")
    x, s = np.log10(lrs[ok]), smoothed[ok]
    found = _landmarks(x, s)
    if found is None:
        return Suggestion(
            None,
            reason="the loss neither fell nor rose anywhere in the sweep; check that the model "
            "can learn (`trainwise check`) or widen the LR range",
        )
    x_div, x_min, x_steep, note = found
    x_sugg = x_div - margin
    interval = _bootstrap(x, losses[ok], s, margin, bandwidth, bootstrap)
    return Suggestion(
        10**x_sugg,
        lr_div=10**x_div,
        lr_min=10**x_min,
        lr_steep=None if x_steep is None else 10**x_steep,
        low=10 ** (x_sugg - RANGE_BELOW),
        high=10 ** (x_sugg + RANGE_ABOVE),
        interval=interval,
        reason=note,
    )


def _landmarks(x: np.ndarray, s: np.ndarray) -> tuple[float, float, float | None, str] | None:
    """(divergence onset, loss minimum, steepest descent or None, note), all in log10(lr).

    The onset is the first LR past the minimum where the smoothed loss has climbed back by a
    fifth of what it fell (or by 2% of the minimum when it hardly fell: a model that learns
    nothing in the sweep still shows where its steps become unstable).
    """
    i_min = int(np.argmin(s))
    drop = s[0] - s[i_min]
    threshold = s[i_min] + max(RISE * drop, 0.02 * abs(s[i_min]), 1e-12)
    above = np.flatnonzero(s[i_min:] > threshold)
    fell = drop > 0.02 * max(abs(s[0]), 1e-12)
    x_steep = None
    if fell and i_min >= 2:
        slope = np.gradient(s[: i_min + 1], x[: i_min + 1])  # d loss / d log10(lr)
        x_steep = float(x[int(np.argmin(slope))])
    if len(above):
        return float(x[i_min + above[0]]), float(x[i_min]), x_steep, ""
    if not fell:
        return None
    # No climb by the end of the sweep (the loss sat at its floor, e.g. a separable problem):
    # the LR where it reached the floor stands in for the onset, half a margin closer.
    i_floor = int(np.flatnonzero(s <= s[i_min] + 0.05 * drop)[0])
    note = "the loss had not turned up by the end of the sweep; raise end_lr for a firmer answer"
    return float(x[i_floor]) + FLOOR_SHIFT, float(x[i_min]), x_steep, note


def _bootstrap(x, raw, s, margin, bandwidth, n, block: int = 5, seed: int = 0):
    """10-90% interval of the suggestion under resampled noise (moving-block bootstrap)."""
    if n <= 0:
        return None
    resid = raw - s  # (N,) noise around the smoothed curve
    rng = np.random.default_rng(seed)
    N = len(x)
    picks = []
    for _ in range(n):
        starts = rng.integers(0, max(N - block, 1), size=N // block + 1)
        noise = np.concatenate([resid[a : a + block] for a in starts])[:N]
        got = _landmarks(x, smooth_log_axis(10**x, s + noise, bandwidth))
        if got is not None:
            picks.append(got[0] - margin)
    if len(picks) < n // 2:
        return None
    lo, hi = np.percentile(picks, [10, 90])
    # The percentile band of a biased bootstrap need not hold the point estimate (the module
    # docstring says why): widen it to the suggestion made from the observed curve `s`.
    x_sugg = _landmarks(x, s)[0] - margin  # suggest() found the landmarks on this same curve
    return float(10 ** min(lo, x_sugg)), float(10 ** max(hi, x_sugg))


def _spread_line(per_seed: dict[int, float | None], spread: float | None) -> str:
    got = {k: v for k, v in per_seed.items() if v}
    if spread is None:
        return f"seeds:        {len(got)} of {len(per_seed)} seeds gave a suggestion"
    lo, hi = min(got.values()), max(got.values())
    line = (
        f"seeds:        {len(per_seed)} seeds suggested {lo:.1e} .. {hi:.1e} "
        f"({spread:.2f} decade apart; the median seed's answer is given)"
    )
    if spread > WIDE_SPREAD:
        line += (
            f"\nnote: the seeds disagree by more than the good range's half-width "
            f"({WIDE_SPREAD} decade): this sweep is too noisy to trust one seed; a longer sweep "
            "(num_iter 300) or trial runs (trial_steps) give a firmer answer"
        )
    return line


def _ratio_words(ratio: float) -> str:
    if 0.5 <= ratio <= 2:
        return "close to the suggestion"
    if ratio > 1:
        return f"{ratio:.0f}x the suggestion"
    return f"1/{1 / ratio:.0f} of the suggestion"


def _plot_trials(ax: Any, trials: Trials) -> tuple[list, list[str]]:
    """The trials' scores on a second y axis (diverged ones marked at the top), and the pick."""
    twin = ax.twinx()
    scores = np.array(trials.scores, dtype=float)
    lrs = np.array(trials.lrs)
    ok = np.isfinite(scores)
    handles = twin.plot(
        lrs[ok], scores[ok], "o-", color="C1", ms=4, label=f"trials: {trials.scored_on} loss"
    )
    if (~ok).any():
        top = float(scores[ok].max()) if ok.any() else 1.0
        handles += twin.plot(lrs[~ok], np.full((~ok).sum(), top), "x", color="C1", label="diverged")
    twin.set_ylabel(f"{trials.scored_on} loss after {trials.steps} steps")
    if trials.lr is not None:
        handles.append(
            ax.axvline(trials.lr, color="C1", lw=2.5, label=f"suggested {trials.lr:.1e}")
        )
    return handles, [h.get_label() for h in handles]


def _plot_ylim(smoothed: np.ndarray) -> tuple[float | None, float | None]:
    ok = smoothed[np.isfinite(smoothed)]
    if len(ok) == 0:
        return None, None
    lo, first = float(ok.min()), float(ok[0])
    span = max(first - lo, 1e-8)
    return lo - 0.1 * span, first + 0.6 * span


# -- the public entry point -------------------------------------------------------------------


def lr_find(
    model_or_setup: Any,
    loader: Iterable | None = None,
    loss: Callable[[Any, Any], torch.Tensor] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    start_lr: float = DEFAULT_START_LR,
    end_lr: float = DEFAULT_END_LR,
    num_iter: int = DEFAULT_NUM_ITER,
    seed: int = 0,
    seeds: int = 1,
    device: torch.device | str | None = None,
    trial_steps: int | None = None,
    val: Iterable | None = None,
    on_trial: Callable[[float, float], None] | None = None,
    record: bool = True,
    runs_dir: str | Path | None = None,
    name: str | None = None,
    sample: float | int | None = None,
) -> LRFindResult:
    """Run an LR range test and suggest a learning rate.

    `tw.lr_find(setup)` builds a fresh model and optimizer from the Setup; `tw.lr_find(model,
    loader, loss, optimizer)` runs on yours and leaves them exactly as they were (weights,
    buffers, gradients, modes, optimizer state and hyperparameters, RNG).

    seed:     the seed of the sweep's data order and dropout, and of the fresh model built from
              a Setup: the same seed gives the same answer (0 by default)
    seeds:    run the range test on this many seeds (seed, seed+1, ...), suggest the median
              seed's answer and report the spread (`seed_suggestions`, `spread`); N times the cost
    trial_steps: the length of the training run you plan (optimizer steps). When given, the
              range test is followed by trial runs of that length at up to 8 LRs under the
              divergence onset (lr_trials.py), and `suggested_lr` is the best of them: far
              more accurate (benchmarks/lr_suggest.py), at the cost of about 6 such runs.
    val:      validation batches (x, y) to score the trials on; a Setup's own `val` is used
              by default. Without it the trials are scored on their final training loss.
    on_trial: called as on_trial(lr, score) after each trial run (for progress)
    record:   keep a run record (the curve with the suggestion, findings, report.html) in
              runs_dir (default $TRAINWISE_RUNS_DIR, else ./trainwise-runs)
    name:     the record's name (default: the setup's name, else "lr_find")
    sample:   with a Setup: sweep on a stratified sample of its data, a count or a fraction
              (0.1), as `fit --sample` trains on one; the record says so
    """
    from trainwise.spec import Setup

    if trial_steps is not None:
        check_trial_steps(trial_steps)  # before a record is opened
    if seeds < 1:
        raise SetupError(f"lr_find: seeds={seeds}; expected 1 or more")
    options = dict(  # the range test's and the trials' settings, whichever way lr_find is called
        start_lr=start_lr,
        end_lr=end_lr,
        num_iter=num_iter,
        seed=seed,
        seeds=seeds,
        trial_steps=trial_steps,
        on_trial=on_trial,
    )
    recorded = partial(_recorded, record=record, root=runs_dir, seed=seed)
    if sample is not None and not isinstance(model_or_setup, Setup):
        raise SetupError("lr_find(sample=...) samples a Setup's data; give a Setup")
    if isinstance(model_or_setup, Setup):
        setup = model_or_setup
        if sample is not None:
            from trainwise.train.data import class_labels, sampled

            setup, note = sampled(setup, sample, seed, class_labels(setup))
            recorded = partial(recorded, note=note)
        build = partial(_build, setup)
        model, opt = build(seed)
        blocked = _blocking(setup, seed)
        if blocked is not None:  # what check refuses to train on, lr_find refuses too
            test = partial(_refuse, model, opt, *blocked, **options)
            return recorded(test, name or setup.name, opt, setup.torch_device)
        if val is None and setup.val is not None:
            val = setup.val_loader()
        test = partial(
            _find, build, setup.train_loader(), BatchLoss(setup.split_batch, setup.batch_loss),
            device=device or setup.torch_device, val=val, **options,
        )  # fmt: skip
        return recorded(test, name or setup.name, opt, setup.torch_device)
    model = model_or_setup
    if not isinstance(model, nn.Module):
        raise SetupError(
            "lr_find(...) expects a trainwise.Setup, or (model, loader, loss, optimizer) with an "
            f"nn.Module first; got {type(model).__name__}"
        )
    missing = [
        n for n, v in (("loader", loader), ("loss", loss), ("optimizer", optimizer)) if v is None
    ]
    if missing:
        raise SetupError(f"lr_find(model, loader, loss, optimizer): missing {', '.join(missing)}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise SetupError(
            f"lr_find: optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    if not callable(loss):
        raise SetupError(
            f"lr_find: loss must be callable(output, target), got {type(loss).__name__}"
        )

    def build(_seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
        return model, optimizer  # the user's own, restored after each sweep

    test = partial(_find, build, loader, loss, device=device, val=val, **options)
    first = next(model.parameters(), None)
    where = device or (first.device if first is not None else None)
    return recorded(test, name or "lr_find", optimizer, where)


def _recorded(
    test: Callable[[], LRFindResult],
    name: str,
    optimizer: torch.optim.Optimizer,
    device: Any,
    *,
    record: bool,
    root: str | Path | None,
    seed: int,
    note: str = "",
) -> LRFindResult:
    """Runs `test()` (the range test, a partial of _find) inside its run record when `record`;
    sets the result's `record_path`. Recording problems only warn: the answer comes first."""
    from trainwise.runs.lr_find_record import write_result
    from trainwise.runs.record import recording

    settings = {k: test.keywords[k] for k in ("start_lr", "end_lr", "num_iter")}
    if note:  # what the sweep ran on, when not the whole data (a sample)
        settings["data"] = note
    with recording(
        "lr_find",
        record,
        name=name,
        config={"lr_find": settings},
        optimizer=optimizer,
        seed=seed,
        device=str(device) if device is not None else None,
        root=root,
    ) as run:
        result = test()
        if run is not None:
            write_result(run, result)
            result.record_path = run.path
    return result


def _build(setup: Any, seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A fresh model and optimizer from the Setup, initialized under `seed` (the user's RNG
    streams are left as they were)."""
    with preserved_rng():
        torch.manual_seed(seed)
        model = setup.build_model()
        return model, setup.build_optimizer(model)


def _blocking(setup: Any, seed: int) -> tuple[str, Finding] | None:
    """The static finding that makes `check` skip its experiments (labels out of range, nothing
    trainable, non-finite inputs), read the way `check` reads it; None when nothing blocks."""
    from trainwise.stages.base import CheckRun
    from trainwise.stages.experiment import blocking_finding

    with preserved_rng():
        return blocking_finding(CheckRun(setup, seed=seed))


def _refuse(model, optimizer, reason: str, finding: Finding, **options) -> LRFindResult:
    """No sweep: the result carries the blocking finding and says why."""
    empty = np.array([], dtype=float)
    settings = {k: options[k] for k in ("start_lr", "end_lr", "num_iter", "seed")}
    return LRFindResult(
        empty, empty, empty,
        Suggestion(None, reason=f"not run, as `trainwise check` would not: {reason}"),
        configured_lr=float(optimizer.param_groups[0]["lr"]),
        settings=settings,
        findings=[finding],
    )  # fmt: skip


def _find(
    build, loader, loss_fn, *, trial_steps=None, val=None, on_trial=None, seeds=1, **sweep
) -> LRFindResult:
    """The range test (on each of `seeds` seeds: the median seed's result), then (with
    `trial_steps`) the trial runs under its divergence onset."""
    first = sweep.pop("seed", 0)
    runs = []  # (result, model, optimizer) per seed
    for seed in range(first, first + seeds):
        model, optimizer = build(seed)
        runs.append((range_test(model, loader, loss_fn, optimizer, seed=seed, **sweep),
                     model, optimizer))  # fmt: skip
    result, model, optimizer = _median_run(runs)
    if seeds > 1:
        result.seed_suggestions = {r.settings["seed"]: r.suggestion.lr for r, _, _ in runs}
        result.settings["seeds"] = seeds
    if trial_steps is None:
        return result
    onset = result.suggestion.lr_div
    if onset is None:
        why = "no trial runs: the range test found no divergence onset to place them under"
        result.suggestion.reason = "; ".join(filter(None, [result.suggestion.reason, why]))
        return result
    result.trials = run_trials(
        model, loader, loss_fn, optimizer, onset, trial_steps,
        val=val, device=sweep.get("device"), seed=result.settings["seed"], on_trial=on_trial,
    )  # fmt: skip
    result.settings["trial_steps"] = trial_steps
    return result


def _median_run(runs: list) -> tuple:
    """The run whose suggestion is the median of the seeds' (the lower middle for an even count;
    runs without a suggestion count as the lowest); the first with one seed."""
    if len(runs) == 1:
        return runs[0]
    order = sorted(runs, key=lambda r: r[0].suggestion.lr or 0.0)
    return order[(len(order) - 1) // 2]
