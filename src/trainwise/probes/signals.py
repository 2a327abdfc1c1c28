"""The signal history: plain numbers per step (and per layer), nothing else.

Probes write here, rules read here, and a run-record writer can consume it as is. Each series
is a pair of compact arrays (step index, value), so 10k steps of a few dozen series stay a few
megabytes and no tensor is ever kept.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator


class Series:
    """One signal over training: `steps[i]` is the optimizer step at which `values[i]` was seen."""

    __slots__ = ("steps", "values")

    def __init__(self) -> None:
        self.steps = array("q")
        self.values = array("d")

    def append(self, step: int, value: float) -> None:
        self.steps.append(step)
        self.values.append(value)

    def __len__(self) -> int:
        return len(self.values)

    def last(self, n: int) -> list[float]:
        return list(self.values[-n:]) if n else []

    def finite_last(self, n: int) -> list[float]:
        return [v for v in self.values[-n:] if math.isfinite(v)]


class Signals:
    """All series of one watched run, keyed `family` or `family/layer` (e.g. `grad_norm/fc1.weight`)."""

    def __init__(self) -> None:
        self.series: dict[str, Series] = {}

    def add(self, key: str, step: int, value: float) -> None:
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = Series()
        series.append(step, value)

    def get(self, key: str) -> Series:
        return self.series.get(key) or Series()

    def __contains__(self, key: str) -> bool:
        return key in self.series

    def layers(self, family: str) -> Iterator[tuple[str, Series]]:
        """(layer, series) for every `family/layer` key, in the order they first appeared."""
        prefix = family + "/"
        for key, series in self.series.items():
            if key.startswith(prefix):
                yield key[len(prefix) :], series

    def to_dict(self) -> dict[str, dict[str, list[float]]]:
        """{key: {"steps": [...], "values": [...]}}: what a run-record writer serializes."""
        return {
            key: {"steps": list(s.steps), "values": list(s.values)}
            for key, s in self.series.items()
        }


def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return math.nan
    mid = n // 2
    return ordered[mid] if n % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated q-th percentile (0..100), as numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
