"""Protocol rules about the configured learning rate, judged on an LR range test.

Both read a `RangeTest` (trainwise/measurements.py): the LR range-test stage of `check` builds
one from its sweep, and `lr_find`'s run record from its result (through `judge`). This module
imports neither `lr_find` nor the stages nor runs/: the judgement sits below all three.

`lr-too-high` fires when the configured LR is past the divergence onset of the sweep (where the
loss was climbing again). `lr-too-low` needs two pieces of evidence, because a range test's
suggestion is uncertain (a short --quick sweep, and Adam-family optimizers, which train well
over a wide range of LRs): the configured LR is more than 2 decades under the suggestion, and
the sweep's loss was still flat there, a decade or more below the LR where it began to fall. A
configured LR far under the suggestion on a loss that was already falling gets a note
(`weak_too_low_note`), not a warning.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from trainwise.findings import Finding
from trainwise.measurements import RangeTest
from trainwise.rules.registry import Hit, rule
from trainwise.rules.registry import judge as judge_measurement

TOO_LOW = 100.0  # "far below": 2 decades under the suggestion, 1.5 under its good range
# Where the descent starts: the last LR before the minimum at which the smoothed loss had not yet
# fallen by DESCENT_SHARE of its total drop. A tenth is above the smoothed curve's noise on the
# fault suite's healthy cases (the noisiest, the transformer, wobbles by ~8% of its drop).
DESCENT_SHARE = 0.1
# "Flat at the configured LR": it lies at least this factor (a decade) under the descent start,
# so even 10x the configured LR, after every smaller step of the sweep, had not moved the loss.
# Healthy Adam/AdamW cases sit 1-3x under the start or past it (notes/issue5.md, addendum).
FLAT_GAP = 10.0
CONFIRM = (
    "To pin the LR down for your run's length, `trainwise lr-find <setup file> --trial-steps "
    "<steps of your run>` trains that long at several LRs under the onset and picks the best"
)
WHERE = "optimizer.param_groups[0]['lr']"

_SOURCE = (
    "A. Marcolini, Deep Learning Best Practices (fast.ai course notes, the LR finder); "
    "L. N. Smith, Cyclical Learning Rates for Training Neural Networks (2017), section 3.3"
)


@rule(
    "lr-too-high",
    severity="warning",
    category="protocol",
    summary="the configured LR is beyond the point where the range test's loss stops falling",
    why=(
        "In the LR range test the loss stops improving, then climbs, once the steps become "
        "too large for the loss surface. A configured LR well past that point makes "
        "training unstable from the first steps: loss spikes, NaNs, or a model that "
        "settles far from where a smaller step would have taken it."
    ),
    fix=(
        "Lower the learning rate to the suggested one (the finding gives it, and "
        "`trainwise lr-find FILE --plot lr.png` draws the curve), or warm up to it."
    ),
    example=(
        "optimizer=lambda p: torch.optim.AdamW(p, lr=0.5)  # far past the loss minimum\n"
        "\n"
        "optimizer=lambda p: torch.optim.AdamW(p, lr=3e-3)  # tw.lr_find(setup).suggested_lr"
    ),
    source=_SOURCE,
    reads=RangeTest,
)
def lr_too_high(m: RangeTest) -> Iterator[Hit]:
    if not m.judgeable or m.configured_lr <= m.lr_div:
        return
    lr, suggested = m.configured_lr, m.suggested_lr
    yield Hit(
        f"configured LR {lr:.1e} is {lr / suggested:.0f}x the suggested {suggested:.1e}, past "
        f"{m.lr_div:.1e} where the range test's loss was already climbing back up",
        where=WHERE,
        evidence=_evidence(m),
        fix=f"Lower the LR to about {suggested:.1e}: `{_code(m)}`. {CONFIRM}",
    )


@rule(
    "lr-too-low",
    severity="warning",
    category="protocol",
    summary="the configured LR is far under the suggestion, where the range-test loss is flat",
    why=(
        "Below the region where the range-test loss falls steeply, each step barely moves "
        "the loss: the same budget buys much less progress, and runs that look converged "
        "are only slow. An LR a decade or more under the steepest descent wastes most of "
        "the training time."
    ),
    fix=(
        "Raise the learning rate to the suggested one (the finding gives it), or check the "
        "curve with `trainwise lr-find FILE --plot lr.png`."
    ),
    example=(
        "optimizer=lambda p: torch.optim.SGD(p, lr=1e-5, momentum=0.9)  # barely moves\n"
        "\n"
        "optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)  # the suggestion"
    ),
    source=_SOURCE,
    reads=RangeTest,
)
def lr_too_low(m: RangeTest) -> Iterator[Hit]:
    if not m.judgeable or m.configured_lr > m.lr_div:
        return  # past the onset: lr-too-high's case
    lr, s = m.configured_lr, m.suggested_lr
    start = descent_start(m)
    if lr < s / TOO_LOW and start is not None and lr <= start / FLAT_GAP:
        share = fallen_share(m, lr)
        yield Hit(
            f"configured LR {lr:.1e} is 1/{s / lr:.0f} of the suggested {s:.1e} "
            f"(good range {m.low:.1e}..{m.high:.1e}), and {start / lr:.0f}x under "
            f"{start:.1e}, where the range test's loss began to fall (by the configured LR "
            f"it had fallen {share:.0%} of its drop): each step barely "
            "moves the loss",
            where=WHERE,
            evidence={**_evidence(m), "descent_start": start, "fallen_share_at_configured": share},
            fix=f"Raise the LR to about {s:.1e}: `{_code(m)}`. {CONFIRM}",
        )


def judge(result: Any) -> list[Finding]:
    """lr-too-high / lr-too-low findings for an `LRFindResult` (its configured LR against its
    suggestion): what `lr_find`'s run record keeps."""
    return judge_measurement(RangeTest.of(result))


def _evidence(m: RangeTest) -> dict[str, Any]:
    return {
        "configured_lr": m.configured_lr,
        "suggested_lr": m.suggested_lr,
        "good_range": [m.low, m.high],
        "divergence_onset": m.lr_div,
        "ratio": m.configured_lr / m.suggested_lr,
    }


def _code(m: RangeTest) -> str:
    return f"optimizer=lambda p: torch.optim.<YourOptimizer>(p, lr={m.suggested_lr:.1e}, ...)"


def descent_start(m: RangeTest) -> float | None:
    """The LR where the sweep's smoothed loss began to fall for good (see DESCENT_SHARE)."""
    ok = np.isfinite(m.smoothed)
    lrs, s = m.lrs[ok], m.smoothed[ok]  # (N,)
    if len(s) < 3:
        return None
    i_min = int(np.argmin(s))
    drop = s[0] - s[i_min]
    if i_min == 0 or drop <= 0:
        return None
    still_high = np.flatnonzero(s[: i_min + 1] >= s[0] - DESCENT_SHARE * drop)  # s[0] is in it
    return float(lrs[still_high[-1]])


def fallen_share(m: RangeTest, lr: float) -> float:
    """How much of its total drop the smoothed sweep loss had made by `lr` (0 below the sweep)."""
    ok = np.isfinite(m.smoothed)
    lrs, s = m.lrs[ok], m.smoothed[ok]
    drop = s[0] - s.min()
    if len(s) < 2 or drop <= 0:
        return 0.0
    at = float(np.interp(np.log10(lr), np.log10(lrs), s))  # clamps to s[0] below the sweep
    return max(0.0, (s[0] - at) / drop)


def weak_too_low_note(m: RangeTest) -> str | None:
    """Far under the suggestion, but the loss was already falling there: worth a line only."""
    s, lr = m.suggested_lr, m.configured_lr
    if s is None or not lr or lr >= s / TOO_LOW:
        return None
    return (
        f"the suggestion {s:.1e} is {s / lr:.0f}x the configured LR {lr:.1e}, but the "
        f"range test's loss was already falling there ({fallen_share(m, lr):.0%} of its "
        "drop made by it), so this is no evidence that the LR is too low; a range test's "
        "suggestion is uncertain, and Adam-family optimizers train well over a wide range"
    )
