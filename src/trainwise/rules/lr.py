"""Protocol rules about the configured learning rate, judged by the LR range-test stage."""

from __future__ import annotations

from trainwise.rules.registry import Rule, register

_SOURCE = (
    "TIPS.md protocol table, `lr-too-high` / `lr-too-low` (seed 002, the LR finder); "
    "L. N. Smith, Cyclical Learning Rates for Training Neural Networks (2017), section 3.3"
)

LR_TOO_HIGH = register(
    Rule(
        slug="lr-too-high",
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
    )
)

LR_TOO_LOW = register(
    Rule(
        slug="lr-too-low",
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
    )
)
