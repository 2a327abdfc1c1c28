"""Update size per step (sampled): layers whose learning rate is far too high or too low for them."""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Any

from trainwise.rules.inflight.base import (
    HISTORY,
    Detector,
    finite_train_loss,
    fmt,
    median,
    weight_params,
)
from trainwise.rules.inflight.trends import MIN_STEPS, trend_since, window_steps
from trainwise.rules.registry import rule
from trainwise.signals import LR, TRAIN_LOSS, UPDATE_RATIO, Series


def _lr_at(lr: Series, t: int, default: float) -> float:
    """The learning rate at iteration t among the last HISTORY ones (steps are increasing)."""
    n = len(lr.steps)
    i = bisect_left(lr.steps, t, max(0, n - HISTORY))
    return lr.values[i] if i < n and lr.steps[i] == t else default


class _UpdateRatio(Detector):
    reads = (UPDATE_RATIO, LR)
    # The healthy band is ~1e-4..1e-2 (seed 004, ~1e-3 typical); we fire a factor 10 beyond it,
    # because Adam's first steps on small-init weights legitimately reach a few 1e-2.
    HIGH, LOW = 1e-1, 1e-5
    SAMPLES = 3

    def ratios(self, view) -> list[tuple[Any, float, float]]:
        """(layer, median recent update ratio, its LR now) per weight layer with enough samples;
        computed once per judging round (update-ratio-high and -low both read it)."""
        found = view.memo.get(_UpdateRatio.ratios)
        if found is None:
            found = view.memo[_UpdateRatio.ratios] = list(self._ratios(view))
        return found

    def _ratios(self, view):
        peak_lr = {}
        for info in weight_params(view):
            series = view.history.get(UPDATE_RATIO.at(info.name))
            lr = view.history.get(LR.at(str(info.group)))
            if len(series) < self.SAMPLES or not len(lr):
                continue
            if info.group not in peak_lr:
                peak_lr[info.group] = max(lr.values)
            peak = peak_lr[info.group]
            # Only steps at >= half the peak LR: a schedule's tail rightly makes updates small.
            vals = [
                r
                for t, r in zip(series.steps[-20:], series.values[-20:], strict=True)
                if _lr_at(lr, t, 0.0) >= 0.5 * peak and math.isfinite(r)
            ][-5:]
            if len(vals) >= self.SAMPLES:
                yield info, median(vals), _lr_at(lr, series.steps[-1], peak)


@rule(
    "update-ratio-high",
    severity="warning",
    category="in-flight",
    summary="A layer's update/weight ratio is far above ~1e-3 per step (learning rate too high for it)",
    why="The ratio of the update norm to the weight norm says how fast a layer moves: ~1e-3 is "
    "healthy, 1e-4..1e-2 acceptable. Above 1e-1 (a factor 10 beyond the band; Adam's first "
    "steps on small weights reach a few 1e-2) the layer is rewritten every few steps and cannot "
    "settle: a warning when the loss shows it (above where it started, or no 1% gain in a "
    "robust fit over the last quarter of the run, 100+ steps). While the loss still falls it is "
    "an info note: some recipes take such steps on purpose (the official word language model: "
    "plain SGD at lr 20 with gradients clipped to 0.25 moves its decoder 0.17 per step and "
    "learns).",
    fix="Lower the learning rate of that layer's parameter group by the factor given, or overall.",
    example="torch.optim.Adam(model.parameters(), lr=0.5)\n\ntorch.optim.Adam(model.parameters(), lr=1e-3)",
    source="Deep Learning Practical Tricks (a tips list) (babysitting: update/weight ratio ~1e-3)",
)
class UpdateRatioHigh(_UpdateRatio):
    reads = (UPDATE_RATIO, LR, TRAIN_LOSS)
    GAIN = 0.01  # the loss fit gains 1% over the window: the large steps still pay off

    def loss_verdict(self, view) -> tuple[bool, str]:
        """(whether the loss shows harm, what it did): above its start, or flat over a window
        of MIN_STEPS+ steps. Too short a run to tell, with the loss below its start: no harm."""
        loss = finite_train_loss(view)
        if len(loss) < 10:
            return False, ""
        # The start: the first loss, or the median of the first 10 when lower (noise). Not the
        # median alone: a learning rate far too high blows the loss up from the first step.
        first, recent = min(loss[0], median(loss[:10])), median(loss[-10:])
        if recent >= first:
            return True, f"the loss is at {fmt(recent)}, not below where it started ({fmt(first)})"
        series = view.history.get(TRAIN_LOSS.key)
        last = series.steps[-1]
        width = window_steps(last)
        fitted = trend_since(series, last - width) if last >= MIN_STEPS else None
        if fitted is not None and fitted.change > -self.GAIN:
            return (
                True,
                f"the loss has not improved over the last {width} steps ({fitted.change:+.1%})",
            )
        return False, f"the loss still falls ({fmt(first)} at the start, {fmt(recent)} now)"

    def check(self, view):
        verdict = None
        for info, r, lr in self.ratios(view):
            if r > self.HIGH:
                if verdict is None:
                    verdict = self.loss_verdict(view)
                harm, loss_says = verdict
                factor = r / 1e-3
                message = (
                    f"each step changes `{info.name}` by {r:.2g} of its norm (median); healthy "
                    f"is ~1e-3, so its learning rate ({lr:.3g}) is ~{factor:.0f}x too high"
                )
                if loss_says:
                    message += f"; {loss_says}"
                if not harm:
                    message += " (large steps that still make progress: watch the loss)"
                yield self.finding(
                    message,
                    where=info.name,
                    evidence={"update_ratio": r, "lr": lr, "loss_shows_harm": harm},
                    fix=f"Lower the learning rate of this layer's group ~{factor:.0f}x "
                    f"(to ~{lr / factor:.2g}), or give it its own parameter group.",
                    severity=None if harm else "info",
                )


@rule(
    "update-ratio-low",
    severity="warning",
    category="in-flight",
    summary="A layer's update/weight ratio is far below ~1e-3 per step (learning rate too low for it)",
    why="Below 1e-5 of its norm per step (a factor 10 under the 1e-4..1e-2 band) a layer needs "
    "hundreds of thousands of steps to change: training looks stuck. Only steps at >= half the "
    "peak learning rate are judged, so a decaying schedule's tail does not fire.",
    fix="Raise the learning rate of that layer's group by the factor given, or run an LR range test.",
    example="torch.optim.SGD(model.parameters(), lr=1e-6)\n\ntorch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)",
    source="Deep Learning Practical Tricks (a tips list) (babysitting: update/weight ratio)",
)
class UpdateRatioLow(_UpdateRatio):
    def check(self, view):
        for info, r, lr in self.ratios(view):
            if 0 < r < self.LOW:
                factor = 1e-3 / r
                yield self.finding(
                    f"each step changes `{info.name}` by only {r:.2g} of its norm (median); "
                    f"healthy is ~1e-3, so its learning rate ({lr:.3g}) is ~{factor:.0f}x too low",
                    where=info.name,
                    evidence={"update_ratio": r, "lr": lr},
                    fix=f"Raise the learning rate of this layer's group ~{factor:.0f}x "
                    f"(to ~{lr * factor:.2g}), or run an LR range test.",
                )
