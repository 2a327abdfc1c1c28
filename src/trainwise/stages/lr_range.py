"""The LR range-test stage: suggest an LR, and judge the configured one against it.

Runs `lr_find` on a fresh model and optimizer from the setup (nothing the user owns is touched)
and leaves the result in `run.shared["lr_find"]` (and the LR in `run.shared["lr_suggestion"]`)
for later stages. Fires `lr-too-high` when the configured LR is past the divergence onset of the
sweep (where the loss was climbing again). `lr-too-low` needs two pieces of evidence, because a
range test's suggestion is uncertain (a short --quick sweep, and Adam-family optimizers, which
train well over a wide range of LRs): the configured LR is more than 2 decades under the
suggestion, and the sweep's loss was still flat there, a decade or more below the LR where it
began to fall. A configured LR far under the suggestion on a loss that was already falling gets
a note, not a warning. With --quick, a slow step (see the speed stage) skips the sweep, like the
other training experiments.
"""

from __future__ import annotations

import numpy as np

from trainwise.lr_find import DEFAULT_NUM_ITER, LRFindResult, lr_find
from trainwise.rules.lr import LR_TOO_HIGH, LR_TOO_LOW
from trainwise.stages import experiment as ex
from trainwise.stages.base import CheckRun, StageOutcome

QUICK_NUM_ITER = 60
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


class LRRangeStage:
    name = "lr-range"
    title = "LR range test"

    def run(self, run: CheckRun) -> StageOutcome:
        blocking = _static_errors(run)
        if blocking:
            return StageOutcome(
                skipped=True,
                summary=(
                    f"skipped: the static checks found errors ({', '.join(blocking)}); "
                    "a range test on a broken setup would measure the bug, not the LR"
                ),
            )
        num_iter = QUICK_NUM_ITER if run.quick else DEFAULT_NUM_ITER
        step = run.shared.get(ex.STEP_SECONDS_KEY, 0.0)
        if run.quick and step > ex.SLOW_STEP:  # the threshold the other experiments skip at
            return ex.skipped(
                f"one training step takes {step:.2f}s (slow-step), so the {num_iter}-step sweep "
                f"would take about {step * num_iter:.0f}s, too slow for --quick; run the check "
                "without --quick (or `trainwise lr-find`) for the range test"
            )
        # No record of its own: the check's record holds the range test.
        result = lr_find(run.setup, num_iter=num_iter, seed=run.seed, record=False)
        run.shared["lr_find"] = result
        run.shared["lr_suggestion"] = result.suggested_lr
        outcome = StageOutcome(metrics=_metrics(result))
        s = result.suggestion
        if s.lr is None:
            outcome.summary = f"no suggestion: {s.reason}"
            outcome.notes.append(s.reason)
            return outcome
        outcome.summary = (
            f"suggested LR {s.lr:.1e} (good range {s.low:.1e}..{s.high:.1e}), "
            f"configured {result.configured_lr:.1e}; {len(result.lrs)} steps"
        )
        if s.reason:
            outcome.notes.append(s.reason)
        outcome.findings.extend(judge(result))
        if not outcome.findings and (note := _weak_too_low_note(result)):
            outcome.notes.append(note)
        return outcome


def judge(result: LRFindResult) -> list:
    """lr-too-high / lr-too-low findings for the configured LR against the suggestion."""
    s, lr = result.suggestion, result.configured_lr
    if s.lr is None or not lr or s.lr_div is None:
        return []
    evidence = {
        "configured_lr": lr,
        "suggested_lr": s.lr,
        "good_range": [s.low, s.high],
        "divergence_onset": s.lr_div,
        "ratio": lr / s.lr,
    }
    code = f"optimizer=lambda p: torch.optim.<YourOptimizer>(p, lr={s.lr:.1e}, ...)"
    if lr > s.lr_div:
        return [
            LR_TOO_HIGH.finding(
                f"configured LR {lr:.1e} is {lr / s.lr:.0f}x the suggested {s.lr:.1e}, past "
                f"{s.lr_div:.1e} where the range test's loss was already climbing back up",
                where="optimizer.param_groups[0]['lr']",
                evidence=evidence,
                fix=f"Lower the LR to about {s.lr:.1e}: `{code}`. {CONFIRM}",
            )
        ]
    start = descent_start(result)
    if lr < s.lr / TOO_LOW and start is not None and lr <= start / FLAT_GAP:
        evidence["descent_start"] = start
        evidence["fallen_share_at_configured"] = fallen_share(result, lr)
        return [
            LR_TOO_LOW.finding(
                f"configured LR {lr:.1e} is 1/{s.lr / lr:.0f} of the suggested {s.lr:.1e} "
                f"(good range {s.low:.1e}..{s.high:.1e}), and {start / lr:.0f}x under "
                f"{start:.1e}, where the range test's loss began to fall (by the configured LR "
                f"it had fallen {fallen_share(result, lr):.0%} of its drop): each step barely "
                "moves the loss",
                where="optimizer.param_groups[0]['lr']",
                evidence=evidence,
                fix=f"Raise the LR to about {s.lr:.1e}: `{code}`. {CONFIRM}",
            )
        ]
    return []


def descent_start(result: LRFindResult) -> float | None:
    """The LR where the sweep's smoothed loss began to fall for good (see DESCENT_SHARE)."""
    ok = np.isfinite(result.smoothed)
    lrs, s = result.lrs[ok], result.smoothed[ok]  # (N,)
    if len(s) < 3:
        return None
    i_min = int(np.argmin(s))
    drop = s[0] - s[i_min]
    if i_min == 0 or drop <= 0:
        return None
    still_high = np.flatnonzero(s[: i_min + 1] >= s[0] - DESCENT_SHARE * drop)  # s[0] is in it
    return float(lrs[still_high[-1]])


def fallen_share(result: LRFindResult, lr: float) -> float:
    """How much of its total drop the smoothed sweep loss had made by `lr` (0 below the sweep)."""
    ok = np.isfinite(result.smoothed)
    lrs, s = result.lrs[ok], result.smoothed[ok]
    drop = s[0] - s.min()
    if len(s) < 2 or drop <= 0:
        return 0.0
    at = float(np.interp(np.log10(lr), np.log10(lrs), s))  # clamps to s[0] below the sweep
    return max(0.0, (s[0] - at) / drop)


def _weak_too_low_note(result: LRFindResult) -> str | None:
    """Far under the suggestion, but the loss was already falling there: worth a line only."""
    s, lr = result.suggestion, result.configured_lr
    if s.lr is None or not lr or lr >= s.lr / TOO_LOW:
        return None
    return (
        f"the suggestion {s.lr:.1e} is {s.lr / lr:.0f}x the configured LR {lr:.1e}, but the "
        f"range test's loss was already falling there ({fallen_share(result, lr):.0%} of its "
        "drop made by it), so this is no evidence that the LR is too low; a range test's "
        "suggestion is uncertain, and Adam-family optimizers train well over a wide range"
    )


def _static_errors(run: CheckRun) -> list[str]:
    """Slugs of the error findings of the stages run so far (the runner shares its results)."""
    results = run.shared.get("results", [])
    return sorted({f.rule for r in results for f in r.findings if f.severity == "error"})


def _metrics(result: LRFindResult) -> dict:
    s = result.suggestion
    return {
        "suggested_lr": s.lr,
        "good_range": [s.low, s.high],
        "interval": list(s.interval) if s.interval else None,
        "configured_lr": result.configured_lr,
        "steps": len(result.lrs),
        "stopped_early": result.stopped_early,
    }
