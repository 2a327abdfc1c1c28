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
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

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


def _tail_arrays(series: Series, since: int) -> tuple[np.ndarray, np.ndarray]:
    """`tail` as arrays: (k,) int64 steps and (k,) float64 values, copied out of the series
    (a view would pin its buffer, and the series keeps growing)."""
    i = bisect_left(series.steps, since)
    steps = np.frombuffer(series.steps[i:], dtype=np.int64)
    values = np.frombuffer(series.values[i:], dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        steps, values = steps[finite], values[finite]
    return steps, values


def _groups(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(g,) x and y of the fit: the points themselves, or for a longer window the medians of
    MAX_POINTS consecutive groups (sizes differ by one at most) at their groups' mid-steps."""
    n = len(values)
    if n <= MAX_POINTS:
        return steps.astype(np.float64), values
    bounds = (np.arange(MAX_POINTS + 1) * n) // MAX_POINTS
    lo, hi = bounds[:-1], bounds[1:]
    xs = 0.5 * (steps[lo] + steps[hi - 1])
    # Each group's median from one sort of (group, value): the middle one or two of its run.
    group = np.repeat(np.arange(MAX_POINTS), hi - lo)
    ordered = values[np.lexsort((values, group))]
    size = hi - lo
    ys = 0.5 * (ordered[lo + (size - 1) // 2] + ordered[lo + size // 2])
    return xs, ys


def _median(a: np.ndarray) -> float:
    """The median as base.median computes it (np.median's checks cost more than the sort)."""
    ordered = np.sort(a)
    mid = len(ordered) // 2
    return float(ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid]))


@cache
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j), i < j, of n points: the O(n^2) pairs of Theil-Sen and Mann-Kendall."""
    return np.triu_indices(n, 1)


def fit(steps: Sequence[int], values: Sequence[float]) -> Trend | None:
    """The trend of (steps, values) (finite values, increasing steps); None under 3 points or
    on a window of zero length."""
    if len(values) < 3 or steps[-1] <= steps[0]:
        return None
    xs, ys = _groups(np.asarray(steps), np.asarray(values, dtype=np.float64))
    log = bool(ys.min() > 0)
    if log:
        ys = np.log(ys)
    n = len(ys)
    i, j = _pairs(n)
    dy, dx = ys[j] - ys[i], xs[j] - xs[i]
    s = int(np.count_nonzero(dy > 0)) - int(np.count_nonzero(dy < 0))
    later = dx > 0
    slope = _median(dy[later] / dx[later]) if later.any() else 0.0
    intercept = _median(ys - slope * xs)
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
    scatter = 1.4826 * _median(np.abs(ys - intercept - slope * xs))
    noise = scatter * math.sqrt(12 / n)
    if not log:  # no log for a loss that reaches 0 or below: relative to its level
        scale = max(abs(_median(ys)), 1e-12)
        change, noise = change / scale, noise / scale
    return Trend(change, z, start, end, noise, len(values), int(last - first), log)


def trend_since(series: Series, since: int) -> Trend | None:
    return fit(*_tail_arrays(series, since))
