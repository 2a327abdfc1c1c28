"""Who moves the weights: tensors the optimizer holds but cannot train, tensors written outside
the optimizer, frozen tensors that still move."""

from __future__ import annotations

from trainwise.rules.inflight.base import Detector, Phase
from trainwise.rules.optimizer import listed as names_listed  # registers frozen-parameters too
from trainwise.rules.registry import also_in_flight, rule
from trainwise.signals import (
    FROZEN_MOVED,
    FROZEN_MOVED_NAMES,
    STEPPED,
    WRITTEN_OUTSIDE,
    WRITTEN_OUTSIDE_NAMES,
    FrozenMoved,
    WrittenOutside,
)


def listed(names: tuple[str, ...] | list[str]) -> str:
    """Tensor names for a message, as code; the evidence keeps them all."""
    return names_listed(names, quote="`")


@also_in_flight("frozen-parameters")
class FrozenParametersInFlight(Detector):
    """The optimizer's tensors as they are when training runs, whatever they were when the
    watch started: all of them frozen is an error at once; some frozen when the first step
    runs is the static rule's warning (a later freeze is deliberate: frozen-weights-changing
    watches that one)."""

    reads = (STEPPED,)
    when = Phase.STEP

    def __init__(self, rule):
        super().__init__(rule)
        self.judged_first_step = False

    def check(self, view):
        facts = view.model
        if view.iteration == 0 or not facts.params:
            return
        frozen = [info.name for info in facts.frozen]
        accidental = [n for n in frozen if n not in facts.frozen_on_purpose]
        untracked = facts.untracked_trainable
        elsewhere = (
            f"; meanwhile {listed(untracked)} require grad but the optimizer does not hold them "
            "(built before they were created?)"
            if untracked
            else ""
        )
        if frozen and len(frozen) == len(facts.params):
            yield self.finding(
                f"every tensor the optimizer holds has requires_grad=False ({listed(frozen)}): "
                f"they get no gradient, so nothing the optimizer steps can learn{elsewhere}",
                where="(all parameters)",
                evidence={"frozen_held": frozen, "trainable_not_held": list(untracked)},
                fix="Freeze before building the optimizer and give it what should learn: "
                "`optimizer = SGD([p for p in model.parameters() if p.requires_grad], ...)` "
                "after replacing the head; or unfreeze with `p.requires_grad_(True)`.",
            )
        elif accidental and not self.judged_first_step:  # tw.freeze's tensors: on purpose
            yield self.finding(
                f"the optimizer holds {len(accidental)} tensors with requires_grad=False "
                f"({listed(accidental)}); they never change{elsewhere}",
                where=accidental[0],
                evidence={"frozen_held": accidental, "trainable_not_held": list(untracked)},
                severity="warning",
            )
        self.judged_first_step = True


@rule(
    "weights-changed-outside-optimizer",
    severity="warning",
    category="in-flight",
    summary="Weights changed between two optimizer steps: something other than the optimizer "
    "wrote them",
    why="Between one optimizer step and the next only the optimizer should move the weights. A "
    "validation that swaps in averaged (EMA/SWA) weights and restores a backup that was a "
    "reference rather than a copy (`model.state_dict()` returns the live tensors) leaves the "
    "averaged weights in training, so the loss jumps back after every validation. The watch "
    "fingerprints every tensor at each step's end and the next step's start. Writes after a "
    "validation are warned about; writes between every pair of steps (weight clipping, a "
    "momentum teacher, a constraint projected by hand) are usually deliberate and only noted.",
    fix="Restore from a copy: `backup = copy.deepcopy(model.state_dict())` before loading the "
    "EMA weights, `model.load_state_dict(backup)` after validating; or evaluate a separate EMA "
    "model (`torch.optim.swa_utils.AveragedModel`).",
    example="backup = model.state_dict()          # references, not a copy\n"
    "model.load_state_dict(ema.state_dict())\nvalidate(model)\nmodel.load_state_dict(backup)\n\n"
    "backup = copy.deepcopy(model.state_dict())\nmodel.load_state_dict(ema.state_dict())\n"
    "validate(model)\nmodel.load_state_dict(backup)",
    source="TrainCheck (OSDI 2025), parameter invariants; the EMA restore bug of "
    "https://github.com/aqlaboratory/openfold/pull/90",
)
class WeightsChangedOutsideOptimizer(Detector):
    reads = (WRITTEN_OUTSIDE, WRITTEN_OUTSIDE_NAMES)
    when = Phase.STEP
    # Gaps between steps are compared after each validation and on sampled steps (probes.writes).
    HABIT_GAPS = 10  # gaps compared before a write in (nearly) every one is called a habit
    HABIT_SHARE = 0.9
    MIN_GAPS, OCCASIONAL_SHARE = 3, 0.5  # a write in at most half of >= 3 gaps: not a habit

    def __init__(self, rule):
        super().__init__(rule)
        self.seen_step = -1
        self.warned: set[str] = set()
        self.gaps = self.writes = 0  # gaps between steps compared so far, and those written

    def check(self, view):
        event = view.history.event(WRITTEN_OUTSIDE_NAMES)
        if not isinstance(event, WrittenOutside) or event.step == self.seen_step:
            return
        self.seen_step = event.step
        counts = view.history.get(WRITTEN_OUTSIDE.key).values
        self.writes += sum(1 for c in counts[self.gaps :] if c)  # only the gaps new since
        self.gaps = gaps = len(counts)
        writes = self.writes
        habit = gaps >= self.HABIT_GAPS and writes >= self.HABIT_SHARE * gaps
        names = event.params
        if habit:
            yield self.finding(
                f"{listed(names)} changed between {writes} of {gaps} pairs of optimizer steps: "
                "something writes them by hand every step (weight clipping, a momentum/EMA "
                "teacher, a constraint). If that is intended, nothing to do",
                where="(every step)",
                evidence={"params": list(names), "gaps": gaps, "gaps_written": writes},
                severity="info",
            )
            return
        occasional = gaps >= self.MIN_GAPS and writes <= self.OCCASIONAL_SHARE * gaps
        if not (event.after_eval or occasional):
            return  # a write in most gaps so far: too early to tell a habit from an accident
        new = [n for n in names if n not in self.warned]
        if not new:
            return
        self.warned.update(new)
        when = (
            "right after a validation (weights swapped for evaluation and not restored?)"
            if event.after_eval
            else "with no optimizer step in between (a checkpoint loaded, weights copied or "
            "averaged into the model?)"
        )
        yield self.finding(
            f"{listed(names)} changed between optimizer steps at step {event.step}, {when}; "
            f"{writes} of {gaps} gaps between steps so far had such writes",
            where=names[0],
            evidence={
                "params": list(names),
                "step": event.step,
                "after_validation": event.after_eval,
                "gaps": gaps,
                "gaps_written": writes,
            },
        )


@rule(
    "frozen-weights-changing",
    severity="warning",
    category="in-flight",
    summary="A tensor with requires_grad=False still changes when the optimizer steps",
    why="Setting requires_grad=False stops new gradients, not the optimizer: if the tensor's "
    ".grad is a zero tensor rather than None (`zero_grad(set_to_none=False)`, the default "
    "before PyTorch 2.0, or a freeze mid-training), SGD momentum and Adam's moments keep "
    'stepping it and weight decay keeps shrinking it. The "frozen" layer drifts away from '
    "its pretrained values.",
    fix="When freezing, also drop the gradient (`p.grad = None`), or rebuild the optimizer "
    "over the trainable tensors only; `optimizer.zero_grad(set_to_none=True)` (the default since "
    "PyTorch 2.0) keeps frozen tensors' grads None.",
    example="for p in model[0].parameters():\n    p.requires_grad = False\n\n"
    "for p in model[0].parameters():\n    p.requires_grad = False\n    p.grad = None",
    source="https://discuss.pytorch.org/t/why-there-is-still-a-small-change-in-frozen-layer-"
    "parameters/153740; TrainCheck (OSDI 2025)",
)
class FrozenWeightsChanging(Detector):
    reads = (FROZEN_MOVED, FROZEN_MOVED_NAMES)
    when = Phase.STEP

    def __init__(self, rule):
        super().__init__(rule)
        self.seen_step = -1
        self.named: set[str] = set()

    def check(self, view):
        event = view.history.event(FROZEN_MOVED_NAMES)
        if not isinstance(event, FrozenMoved) or event.step == self.seen_step:
            return
        self.seen_step = event.step
        new = [n for n in event.params if n not in self.named]
        if not new:
            return
        self.named.update(new)
        moved_steps = sum(1 for c in view.history.get(FROZEN_MOVED.key).values if c)
        yield self.finding(
            f"{listed(new)} {'has' if len(new) == 1 else 'have'} requires_grad=False but the "
            f"optimizer's step changed {'it' if len(new) == 1 else 'them'} (step {event.step}; "
            f"{moved_steps} step(s) so far moved frozen tensors): the .grad is not None, so "
            "momentum or weight decay still apply",
            where=new[0],
            evidence={"params": new, "step": event.step, "steps_moved": moved_steps},
        )
