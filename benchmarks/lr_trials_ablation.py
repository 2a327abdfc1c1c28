"""How the trial runs' pick rule was chosen: variants scored on the cached trials, no training.

    .venv/bin/python benchmarks/lr_trials_ablation.py

Reads the raw trials that benchmarks/lr_suggest.py cached (5 seeds x 100/300-step sweeps per
task, 6-8 candidates each) and applies each pick rule; the regret of the median pick is read off
the oracle's mean validation-loss curve, interpolated on log10(lr) as in lr_ablation.py. Near a
cliff (the transformer, the GRU) interpolation between grid points overstates the regret by
orders of magnitude, so the real table (lr_suggest.py, which trains at the pick) is the score;
this is only the comparison between rules. The rule was chosen on these same tasks: read the
differences between the better rules as within the noise (lr_suggest.py's `floor` column).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from lr_ablation import regret_at  # noqa: E402
from lr_oracle import load_cache  # noqa: E402
from lr_suggest import SUGGESTIONS, SWEEP_LENGTHS, method_version  # noqa: E402
from lr_tasks import TASKS  # noqa: E402

from trainwise.lr_trials import pick_from  # noqa: E402


def _arrays(raw: dict) -> tuple[np.ndarray, np.ndarray]:
    x = np.log10(np.array(raw["lrs"]))
    s = np.array([math.inf if v is None else v for v in raw["scores"]], dtype=float)
    return x, s


def _quadratic(x: np.ndarray, s: np.ndarray) -> float:
    ok = np.isfinite(s)
    if ok.sum() < 3:
        return float(x[np.argmin(s)])
    a, b, _ = np.polyfit(x[ok], np.log(s[ok]), 2)
    if a <= 0:
        return float(x[ok][np.argmin(s[ok])])
    return float(np.clip(-b / (2 * a), x[ok].min(), x[ok].max()))


def _kernel(x: np.ndarray, s: np.ndarray, bandwidth: float) -> float:
    ok = np.isfinite(s)
    xs, ls = x[ok], np.log(s[ok])
    w = np.exp(-0.5 * ((xs[:, None] - xs[None, :]) / bandwidth) ** 2)
    return float(xs[np.argmin((w * ls[None, :]).sum(1) / w.sum(1))])


def _within(x: np.ndarray, s: np.ndarray, tolerance: float) -> float:
    return float(x[s <= np.min(s) * (1 + tolerance)].min())


RULES = {
    "trainwise (fit over best +-2, cliff guard)": lambda r: math.log10(pick_from(r)),
    "best candidate": lambda r: float(_arrays(r)[0][np.argmin(_arrays(r)[1])]),
    "fit over all candidates": lambda r: _quadratic(*_arrays(r)),
    "fit over best +-1": lambda r: _local(r, 1),
    "kernel smoothing 0.25 dec": lambda r: _kernel(*_arrays(r), 0.25),
    "lowest within 10% of best": lambda r: _within(*_arrays(r), 0.10),
    "lowest within 25% of best": lambda r: _within(*_arrays(r), 0.25),
}


def _local(raw: dict, k: int) -> float:
    x, s = _arrays(raw)
    i = int(np.argmin(s))
    window = slice(max(0, i - k), i + k + 1)
    return _quadratic(x[window], s[window])


def main() -> None:
    scores = load_cache()
    cached = json.loads(SUGGESTIONS.read_text())
    method = "trainwise-trials"
    version = method_version(method)
    print(f"{'rule':44s} {'median':>7s} {'worst':>9s} {'seed':>5s} {'iter':>5s}   per task")
    for name, rule in RULES.items():
        regrets, spreads, shifts = [], [], []
        for t in TASKS:
            medians = {}
            for n in SWEEP_LENGTHS:
                raws = [cached.get(f"{t.name}|{method}|{version}|n{n}|seed{s}") for s in range(5)]
                picks = [rule(r) for r in raws if r]
                medians[n] = float(np.median(picks)) if picks else math.nan
                if n == SWEEP_LENGTHS[0] and picks:
                    spreads.append(float(np.ptp(picks)))
            regrets.append(regret_at(t, scores, medians[SWEEP_LENGTHS[0]]))
            shifts.append(abs(medians[SWEEP_LENGTHS[1]] - medians[SWEEP_LENGTHS[0]]))
        cells = " ".join(f"{100 * r:.0f}" for r in regrets)
        print(
            f"{name:44s} {100 * np.median(regrets):6.1f}% {100 * np.max(regrets):8.1f}% "
            f"{np.median(spreads):5.2f} {np.median(shifts):5.2f}   {cells}"
        )


if __name__ == "__main__":
    main()
