"""Trends of a loss over a window measured in steps: a robust fit the loss-curve rules share.

A verdict on a curve ("it stopped improving", "validation rises") is a claim about its trend over
a stretch of training, so it is judged from a fit over a window of steps (iterations, the x of
the history), never from the last two points: how often the user logs or validates changes how
many points fall in the window, not the verdict. The fit is Theil-Sen (the median of pairwise
slopes: one outlier batch or evaluation cannot tilt it) on the log of the loss when it is
positive (changes are then relative: 0.01 is about 1%, whatever the loss's scale or floor), with
a Mann-Kendall statistic saying whether the direction is more than noise. Windows with many
points are first reduced to the medians of at most MAX_POINTS consecutive groups, which smooths
minibatch noise and bounds the cost (the fit is O(points^2)) whatever the cadence.

Plain Python on purpose. A numpy version was 2-3x faster in a loop of fits, but a watch fits a
few times per judging round, between a training step's kernels, where every library call runs
cold: inside fit on the MNIST-1D CNN of benchmarks/fit_recipe.py, a fit cost ~360 us (a window
of ~50 points) and ~320 us (1000+ points) with numpy, against ~75 and ~145 us here.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from trainwise.rules.inflight.base import median
from trainwise.signals import Series

MAX_POINTS = 20  # a window is fitted on at most this many group medians
MIN_STEPS = 100  # a trend verdict needs a window of at least this many steps
MIN_POINTS = 5  # ... and at least this many validation points (5: the fewest for which a
# monotone run is significant, Mann-Kendall z = 2.2)
MAX_WINDOW = 1000  # the window grows with the run (a quarter of it) up to this many steps


def window_steps(last_step: int) -> int:
    """The window a trend is judged over at this step: a quarter of the run so far, at least
    MIN_STEPS and at most MAX_WINDOW steps. A fixed 1% gain per window means less the longer the
    run; a quarter of the run asks "did the last stretch of training still pay off"."""
    return max(MIN_STEPS, min(last_step // 4, MAX_WINDOW))


@dataclass(frozen=True)
class Trend:
    """The fitted trend of one series over a window."""

    change: float  # fitted change from the window's start to its end (log units when `log`)
    z: float  # Mann-Kendall z: > 0 rising, < 0 falling; |z| >= 2 is more than noise
    start: float  # fitted value at the window's start (the series' units)
    end: float  # fitted value at the window's end
    noise: float  # standard error of `change` from the scatter around the fit (same units)
    points: int  # raw points in the window
    span: int  # steps from the window's first point to its last
    log: bool  # whether the fit is on log values (all positive)

    def falls(self, by: float, z: float = 2.0) -> bool:
        """A fall of at least `by` (log units ~ relative) over the window that is more than
        noise: a monotone direction (Mann-Kendall |z| >= z) and twice the fit's standard error."""
        return self.change <= -by and self.z <= -z and -self.change >= 2 * self.noise

    def rises(self, by: float, z: float = 2.0) -> bool:
        return self.change >= by and self.z >= z and self.change >= 2 * self.noise


def tail(series: Series, since: int) -> tuple[list[int], list[float]]:
    """The finite points of `series` at steps >= since."""
    i = bisect_left(series.steps, since)
    steps, values = series.steps[i:], series.values[i:]
    kept = [(s, v) for s, v in zip(steps, values, strict=True) if math.isfinite(v)]
    return [s for s, _ in kept], [v for _, v in kept]


def window_start(series: Series, min_steps: int, min_points: int) -> tuple[int, bool]:
    """The first step of the window a verdict on `series` is judged over: the last `min_steps`
    steps, widened back to hold at least `min_points` points (a sparse cadence widens it); and
    whether the evidence is thin (the history is shorter than either minimum)."""
    steps = series.steps
    n, last = len(steps), steps[-1]
    # The last point at or before `last - min_steps`: the window then spans at least min_steps.
    i = bisect_right(steps, last - min_steps) - 1
    thin = i < 0
    i = max(0, min(i, n - min_points))
    thin = thin or n - i < min_points
    return steps[i], thin


def _groups(steps: list[int], values: list[float]) -> tuple[list[float], list[float]]:
    n = len(values)
    if n <= MAX_POINTS:
        return [float(s) for s in steps], list(values)
    xs, ys = [], []
    for g in range(MAX_POINTS):
        lo, hi = g * n // MAX_POINTS, (g + 1) * n // MAX_POINTS
        chunk_x = steps[lo:hi]
        xs.append(0.5 * (chunk_x[0] + chunk_x[-1]))
        ys.append(median(values[lo:hi]))
    return xs, ys


def fit(steps: list[int], values: list[float]) -> Trend | None:
    """The trend of (steps, values) (finite values, increasing steps); None under 3 points or
    on a window of zero length."""
    if len(values) < 3 or steps[-1] <= steps[0]:
        return None
    xs, ys = _groups(steps, values)
    log = min(ys) > 0
    if log:
        ys = [math.log(y) for y in ys]
    n = len(ys)
    slopes, s = [], 0
    for i in range(n):
        xi, yi = xs[i], ys[i]
        for j in range(i + 1, n):
            dy = ys[j] - yi
            s += (dy > 0) - (dy < 0)
            if xs[j] > xi:
                slopes.append(dy / (xs[j] - xi))
    slope = median(slopes) if slopes else 0.0
    intercept = median([y - slope * x for x, y in zip(xs, ys, strict=True)])
    var = n * (n - 1) * (2 * n + 5) / 18
    z = 0.0 if s == 0 else (s - (1 if s > 0 else -1)) / math.sqrt(var)
    first, last = float(steps[0]), float(steps[-1])
    at_start, at_end = intercept + slope * first, intercept + slope * last
    if log:
        start, end = math.exp(at_start), math.exp(at_end)
    else:
        start, end = at_start, at_end
    change = at_end - at_start
    # The scatter around the line (robust: 1.4826 x the median absolute residual) makes the
    # fitted change uncertain by about scatter x sqrt(12 / n) (least squares on evenly spread x).
    scatter = 1.4826 * median(
        [abs(y - intercept - slope * x) for x, y in zip(xs, ys, strict=True)]
    )
    noise = scatter * math.sqrt(12 / n)
    if not log:  # no log for a loss that reaches 0 or below: relative to its level
        scale = max(abs(median(ys)), 1e-12)
        change, noise = change / scale, noise / scale
    return Trend(change, z, start, end, noise, len(values), int(last - first), log)


def trend_since(series: Series, since: int) -> Trend | None:
    return fit(*tail(series, since))
