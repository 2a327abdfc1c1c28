"""Which finding explains which: root causes first, their consequences folded under them.

One mistake sets off several rules: a missing `zero_grad()` makes every step huge, so the update
ratio is "too high", gradients "explode", the loss diverges and ReLUs die; a softmax before
CrossEntropyLoss puts a floor under the loss, so the model "cannot overfit". Reported side by
side, the consequences bury the cause and give contradicting advice (lower the LR, raise the
LR). Here the relations between rules are declared once, each with the evidence that must hold,
and `attribute` gives every finding `caused_by` (the slug of the finding that explains it, None
for a root cause) and `explains` (the reverse).

A cause must have been seen no later than its effect: static and protocol findings (no step)
come first; in-flight findings by the step they fired at, and within one step causes before
effects (a cause's rank is its first appearance among the relations' causes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from trainwise.findings import Finding, severity_rank


def _always(cause: Finding, effect: Finding) -> bool:
    return True


@dataclass(frozen=True)
class Explains:
    cause: str
    effects: tuple[str, ...]
    why: str  # how the cause produces them, shown beside the folded consequences
    holds: Callable[[Finding, Finding], bool] = _always  # what the evidence must show


def _killed_by_large_steps(cause: Finding, effect: Finding) -> bool:
    """The units died after steps that rewrote a layer (dead-relu measured them): the same
    too-high learning rate throws the loss around."""
    return cause.evidence.get("largest_update_ratio", 0.0) > 0.1


def _loss_at_softmax_floor(cause: Finding, effect: Finding) -> bool:
    """The failed overfit stopped at the floor the double softmax predicts (within 15%)."""
    floor, final = cause.evidence.get("loss_floor"), effect.evidence.get("final_loss")
    return floor is not None and final is not None and final <= 1.15 * floor + 0.05


def _loss_far_above_expected(cause: Finding, effect: Finding) -> bool:
    """The initial loss is 10x what the targets' scale predicts: unscaled targets or a bad
    output layer; every later training experiment fights that scale first."""
    loss, expected = cause.evidence.get("loss"), cause.evidence.get("expected")
    return bool(loss and expected and expected > 0 and loss >= 10 * expected)


LOSS_CURVE = ("loss-diverging", "loss-oscillating", "loss-plateau", "underfitting", "overfitting")
STEP_SIZE = ("update-ratio-high", "update-ratio-low", "exploding-gradients", "weights-not-updating")
UNITS = ("dead-relu", "saturated-activations", "vanishing-gradients")
TRAINING_EXPERIMENTS = ("cannot-overfit-batch", "cannot-overfit-few", "lr-too-low", "lr-too-high",
                        "no-better-than-baseline")  # fmt: skip

# In order: the earlier a slug appears as a cause, the more basic it is (see the module doc).
RELATIONS: tuple[Explains, ...] = (
    # -- before training (static, protocol) ----------------------------------------------------
    Explains("nonfinite-inputs", ("initial-loss-off", *TRAINING_EXPERIMENTS, "input-independent"),
             "NaN/Inf in the inputs make every loss and gradient computed from them non-finite"),
    Explains("frozen-parameters", (*TRAINING_EXPERIMENTS, "weights-not-updating", "update-ratio-low",
                                   "loss-plateau", "underfitting"),
             "frozen tensors never change, so nothing the optimizer holds can learn"),
    Explains("wrong-loss-for-task", ("initial-loss-off", *TRAINING_EXPERIMENTS),
             "a loss that does not fit the task cannot be driven down as it should"),
    Explains("output-size-mismatch", ("initial-loss-off", *TRAINING_EXPERIMENTS),
             "the model's outputs do not match the targets"),
    Explains("multilabel-needs-sigmoid", ("initial-loss-off", *TRAINING_EXPERIMENTS),
             "a softmax over independent labels cannot fit them"),
    Explains("params-not-in-optimizer", (*TRAINING_EXPERIMENTS, "weights-not-updating"),
             "the tensors the optimizer lacks never change: that part of the model stays random"),
    Explains("constant-init", (*TRAINING_EXPERIMENTS, "input-independent"),
             "units initialized alike get the same gradient and stay alike: the layer acts as "
             "one unit"),
    Explains("saturating-activations", ("cannot-overfit-batch", "cannot-overfit-few",
                                        "no-better-than-baseline"),
             "deep stacks of sigmoid/tanh pass back little gradient, so training crawls"),
    Explains("deep-without-skip", ("cannot-overfit-batch", "cannot-overfit-few",
                                   "no-better-than-baseline"),
             "a deep chain without skips or normalization is hard to train at all"),
    Explains("softmax-before-loss", ("cannot-overfit-batch", "cannot-overfit-few"),
             "the double softmax puts a floor under the loss, and the experiment stopped there",
             _loss_at_softmax_floor),
    Explains("softmax-before-loss", ("no-better-than-baseline",),
             "gradients shrink through the double softmax, so a short run learns slowly"),
    Explains("initial-loss-off", TRAINING_EXPERIMENTS,
             "the loss starts 10x or more above what the targets predict (unscaled targets or "
             "output layer): the experiments fight that scale, not the model's capacity or LR",
             _loss_far_above_expected),
    Explains("lr-too-low", ("no-better-than-baseline",),
             "a short run at a learning rate this low has barely moved"),
    # -- in flight (a loss and its gradient going non-finite at one step: the loss, computed
    # first, is the cause) ------------------------------------------------------------------------
    Explains("nonfinite-loss", ("nonfinite-gradient", *STEP_SIZE, *UNITS, *LOSS_CURVE),
             "a non-finite loss gives non-finite gradients and weights"),
    Explains("nonfinite-gradient", ("nonfinite-loss", *STEP_SIZE, *UNITS, *LOSS_CURVE),
             "non-finite gradients make the weights, and everything after, non-finite"),
    Explains("missing-zero-grad", (*STEP_SIZE, *UNITS, *LOSS_CURVE),
             "without zero_grad() each step applies the sum of all past gradients: steps grow "
             "huge (so the LR looks too high) and the loss goes wrong"),
    Explains("stale-gradients", (*STEP_SIZE, *LOSS_CURVE),
             "the same stale gradient is applied every step, whatever the loss does"),
    Explains("weights-changed-outside-optimizer", (*LOSS_CURVE, "update-ratio-high"),
             "weights overwritten between steps undo the training (the loss jumps back)"),
    Explains("train-eval-mismatch", ("underfitting", "overfitting"),
             "evaluation does not measure the model that trains"),
    Explains("update-ratio-high", ("loss-diverging", "loss-oscillating", "exploding-gradients",
                                   "dead-relu", "saturated-activations", "loss-plateau"),
             "steps that rewrite a layer each time kill units and throw the loss around"),
    Explains("dead-relu", ("update-ratio-low", "weights-not-updating", "vanishing-gradients",
                           "loss-plateau", "underfitting"),
             "dead units pass no gradient: what feeds them stops moving (their small updates "
             "are not an LR too low)"),
    Explains("dead-relu", ("loss-oscillating", "loss-diverging"),
             "the steps that killed the units (up to a tenth of a layer's norm and more) are "
             "the learning rate being too high, which also throws the loss around",
             _killed_by_large_steps),
    Explains("saturated-activations", ("vanishing-gradients", "update-ratio-low", "loss-plateau",
                                       "underfitting"),
             "saturated units pass almost no gradient"),
    Explains("exploding-gradients", ("loss-diverging", "loss-oscillating"),
             "gradient spikes throw the weights off"),
    Explains("vanishing-gradients", ("update-ratio-low", "loss-plateau", "underfitting"),
             "the early layers get almost no gradient, so they barely learn"),
    Explains("lr-schedule-suspicious", ("loss-plateau", "underfitting", "update-ratio-low"),
             "the learning rate decayed to nearly 0 long before the end"),
    Explains("loss-diverging", ("loss-oscillating", "loss-plateau"),
             "a diverged loss neither settles nor improves"),
)  # fmt: skip

_RANK: dict[str, int] = {}
for _i, _relation in enumerate(RELATIONS):
    _RANK.setdefault(_relation.cause, _i)
_BY_PAIR: dict[tuple[str, str], Explains] = {
    (r.cause, effect): r for r in RELATIONS for effect in r.effects
}


def relation(cause: str, effect: str) -> Explains | None:
    return _BY_PAIR.get((cause, effect))


def _seen_order(f: Finding, index: int) -> tuple[int, int, int]:
    return (-1 if f.step is None else f.step, _RANK.get(f.rule, len(RELATIONS)), index)


def attribute(findings: Sequence[Finding]) -> list[Finding]:
    """The same findings in the same order, each with `caused_by` (the slug of the first
    finding seen before it that explains it with the evidence holding, else None) and
    `explains` (the slugs it explains)."""
    order = sorted(range(len(findings)), key=lambda i: _seen_order(findings[i], i))
    cause_of: dict[int, int] = {}
    for k, i in enumerate(order):
        effect = findings[i]
        for j in order[:k]:
            candidate = findings[j]
            if candidate.rule == effect.rule:
                continue
            found = relation(candidate.rule, effect.rule)
            if found is not None and found.holds(candidate, effect):
                cause_of[i] = j
                break
    explained: dict[int, list[str]] = {}
    for i, j in cause_of.items():
        explained.setdefault(j, [])
        if findings[i].rule not in explained[j]:
            explained[j].append(findings[i].rule)
    return [
        replace(
            f,
            caused_by=findings[cause_of[i]].rule if i in cause_of else None,
            explains=tuple(explained.get(i, ())),
        )
        for i, f in enumerate(findings)
    ]


@dataclass(frozen=True)
class Folded:
    """A root cause and the findings it explains, directly or through others."""

    root: Finding
    consequences: tuple[Finding, ...]

    @property
    def why(self) -> str:
        """How the root produces its direct consequences (its relation's sentence)."""
        for c in self.consequences:
            found = relation(self.root.rule, c.rule)
            if found is not None:
                return found.why
        return ""


def fold(findings: Sequence[Finding]) -> list[Folded]:
    """Root causes worst first (in their order within a severity), each with its consequences
    (attributed findings; a chain a -> b -> c folds c under a)."""
    attributed = attribute(findings)
    by_rule_root: dict[int, list[Finding]] = {}
    roots = [i for i, f in enumerate(attributed) if f.caused_by is None]
    first_of: dict[str, int] = {}
    for i, f in enumerate(attributed):
        first_of.setdefault(f.rule, i)
    for f in attributed:
        if f.caused_by is None:
            continue
        root = first_of.get(f.caused_by)
        seen: set[int] = set()
        while root is not None and attributed[root].caused_by is not None and root not in seen:
            seen.add(root)
            root = first_of.get(attributed[root].caused_by)
        if root is None:
            continue
        by_rule_root.setdefault(root, []).append(f)
    ordered = sorted(roots, key=lambda i: (severity_rank(attributed[i].severity), i))
    return [Folded(attributed[i], tuple(by_rule_root.get(i, ()))) for i in ordered]
