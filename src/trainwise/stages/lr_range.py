"""The LR range-test stage: suggest an LR, and judge the configured one against it.

Runs `lr_find` on a fresh model and optimizer from the setup (nothing the user owns is touched)
and leaves the result in `run.shared["lr_find"]` (and the LR in `run.shared["lr_suggestion"]`)
for later stages. Fires `lr-too-high` when the configured LR is past the divergence onset of the
sweep (where the loss was climbing again), `lr-too-low` when it is more than 2 decades under
the suggestion (1.5 under the bottom of the good range).
"""

from __future__ import annotations

from trainwise.lr_find import DEFAULT_NUM_ITER, LRFindResult, lr_find
from trainwise.rules.lr import LR_TOO_HIGH, LR_TOO_LOW
from trainwise.stages.base import CheckRun, StageOutcome

QUICK_NUM_ITER = 60
TOO_LOW = 100.0  # "far below": 2 decades under the suggestion, 1.5 under its good range


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
        result = lr_find(run.setup, num_iter=num_iter, seed=run.seed)
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
                fix=f"Lower the LR to about {s.lr:.1e}: `{code}`",
            )
        ]
    if lr < s.lr / TOO_LOW:
        return [
            LR_TOO_LOW.finding(
                f"configured LR {lr:.1e} is 1/{s.lr / lr:.0f} of the suggested {s.lr:.1e} "
                f"(good range {s.low:.1e}..{s.high:.1e}): each step barely moves the loss",
                where="optimizer.param_groups[0]['lr']",
                evidence=evidence,
                fix=f"Raise the LR to about {s.lr:.1e}: `{code}`",
            )
        ]
    return []


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
