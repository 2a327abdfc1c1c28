"""The LR range-test stage: suggest an LR, and judge the configured one against it.

Runs `lr_find` on a fresh model and optimizer from the setup (nothing the user owns is touched)
and hands its curve and suggestion to the LR rules (`lr-too-high`, `lr-too-low`, rules/lr.py) as
a `RangeTest`. With --quick, a slow step (see the speed stage) skips the sweep, like the other
training experiments.
"""

from __future__ import annotations

from trainwise.lr_find import DEFAULT_NUM_ITER, LRFindResult, lr_find
from trainwise.measurements import RangeTest
from trainwise.rules.lr import weak_too_low_note
from trainwise.stages import experiment as ex
from trainwise.stages.base import CheckRun, StageOutcome

QUICK_NUM_ITER = 60


class LRRangeStage:
    name = "lr-range"
    title = "LR range test"

    def run(self, run: CheckRun) -> StageOutcome:
        blocking = _errors_so_far(run)
        if blocking:
            return StageOutcome(
                skipped=True,
                summary=(
                    f"skipped: the static checks found errors ({', '.join(blocking)}); "
                    "a range test on a broken setup would measure the bug, not the LR"
                ),
            )
        num_iter = QUICK_NUM_ITER if run.quick else DEFAULT_NUM_ITER
        if (step := ex.slow_for_quick(run)) is not None:
            return ex.skipped(
                f"one training step takes {step:.2f}s (slow-step), so the {num_iter}-step sweep "
                f"would take about {step * num_iter:.0f}s, too slow for --quick; run the check "
                "without --quick (or `trainwise lr-find`) for the range test"
            )
        # No record of its own: the check's record holds the range test.
        result = lr_find(run.setup, num_iter=num_iter, seed=run.seed, record=False)
        s = result.suggestion
        if s.lr is None:
            return StageOutcome(
                metrics=_metrics(result), summary=f"no suggestion: {s.reason}", notes=[s.reason]
            )
        measured = RangeTest.of(result)
        outcome = StageOutcome(
            metrics=_metrics(result),
            summary=(
                f"suggested LR {s.lr:.1e} (good range {s.low:.1e}..{s.high:.1e}), "
                f"configured {result.configured_lr:.1e}; {len(result.lrs)} steps"
            ),
            notes=[s.reason] if s.reason else [],
            measurement=measured,
        )
        if not outcome.findings and (note := weak_too_low_note(measured)):
            outcome.notes.append(note)
        return outcome


def _errors_so_far(run: CheckRun) -> list[str]:
    """Slugs of the error findings of the stages run so far (the runner shares its results)."""
    return sorted({f.rule for r in run.results for f in r.findings if f.severity == "error"})


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
