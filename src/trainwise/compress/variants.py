"""Each method's variant of a trained model, and the same structure again to load a saved one.

The training methods go through `tw.fit`: a pruned model's fine-tune (its pruning masks kept
by torch.nn.utils.prune's hooks, at the run's LR decayed by a cosine schedule, the trained
output bias kept), and a student's distillation (tw.DistillationLoss from the original, the
run's recipe and LR, a fresh student). The fine-tune's LR is the run's, not the seeds' tenth
for fine-tuning (which is for pretrained features under a new head): with half its channels
removed the MNIST-1D CNN came back to 86.1% in 2 epochs at a tenth, 96.8% at the run's LR
(97.9% before pruning; docs/notes/issue19.md).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

import trainwise.compress.quantize as quantize
from trainwise.compress.methods import Method, Step
from trainwise.compress.narrow import CannotNarrow, narrower
from trainwise.compress.quantize import NotApplicable
from trainwise.compress.shallow import shallower
from trainwise.spec import Setup

PRUNED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
CALIBRATION_BATCHES = 32  # training batches the static int8 observers see (~1000 samples at 32)
FINETUNE_LR_SHARE = 1.0  # the fine-tune's LR, as a share of the run's (see the module doc)
FALLBACK_LR = 1e-3  # when the run's LR is unknown (AdamW's default)


@dataclass
class Plan:
    """How the training methods train: the setup (its own device), the run's recipe (or
    None: fit's default), epochs of the pruning fine-tunes and of the distillation, seed."""

    setup: Setup
    task: str
    recipe: Any
    finetune_epochs: int
    distill_epochs: int
    seed: int = 0


def build(
    method: Method,
    model: nn.Module,
    plan: Plan,
    example: Any,
    done: dict[str, tuple[nn.Module, list[str]]] | None = None,
) -> tuple[nn.Module, str]:
    """(the variant on the CPU in eval mode, a note on how it was made); NotApplicable when
    a step does not apply. `model`: the trained original on the CPU; `example`: a CPU input
    batch (as the setup splits it). `done`: the models of chains built before, by spec, so
    that distill:half-width and distill:half-width+static-int8 train one student (each step
    copies the model it is given, so a kept one is never changed)."""
    done = {} if done is None else done
    notes: list[str] = []
    for i, step in enumerate(method.steps):
        prefix = "+".join(s.spec for s in method.steps[: i + 1])
        if prefix not in done:
            built, note = _built(step, model, plan, example)
            done[prefix] = (built, [*notes, f"{step.spec}: {note}"])
        model, notes = done[prefix]
    if len(notes) == 1:
        notes = [notes[0].removeprefix(f"{method.spec}: ")]
    return model, "; ".join(notes)


def _built(method: Step, model: nn.Module, plan: Plan, example: Any) -> tuple[nn.Module, str]:
    call = plan.setup.call_model
    try:
        if method.kind == "dynamic-int8":
            return quantize.dynamic_int8(model), f"quantized engine {quantize.backend()}"
        if method.kind == "static-int8":
            return _static(model, plan, example), (
                f"calibrated on {CALIBRATION_BATCHES} training batches, engine {quantize.backend()}"
            )
        if method.kind == "prune":
            return _pruned(model, method.amount, plan)
        if method.kind == "prune-channels":
            kept = narrower(model, 1 - method.amount, lambda m: call(m, example), copy_weights=True)
            return _finetuned(kept, plan, "channels removed")
        if method.kind == "distill":
            return _distilled(model, method, plan, example)
    except CannotNarrow as exc:
        raise NotApplicable(str(exc)) from exc
    raise ValueError(method.kind)


def structure(method: Method, model: nn.Module, setup: Setup, example: Any) -> nn.Module:
    """A model of the variant's structure to load its saved state dict into: `model` is a
    freshly built (untrained) one of the setup."""
    model = model.cpu().eval()
    for step in method.steps:
        model = _structure(step, model, setup, example)
    return model


def _structure(method: Step, model: nn.Module, setup: Setup, example: Any) -> nn.Module:
    call = setup.call_model
    if method.kind == "dynamic-int8":
        return quantize.dynamic_int8(model)
    if method.kind == "static-int8":
        return quantize.static_structure(model, _positional(example))
    if method.kind == "prune":
        return model  # the masks are applied for good before saving: a plain state dict
    if method.depth:
        return shallower(model, method.amount, lambda m: call(m, example))
    keep = 1 - method.amount if method.kind == "prune-channels" else method.amount
    return narrower(model, keep, lambda m: call(m, example), copy_weights=False)


def _positional(x: Any) -> tuple:
    if isinstance(x, torch.Tensor):
        return (x,)
    if isinstance(x, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in x):
        return tuple(x)
    raise NotApplicable("static int8 traces models called on tensors; this input is a "
                        f"{type(x).__name__}")  # fmt: skip


def _static(model: nn.Module, plan: Plan, example: Any) -> nn.Module:
    from trainwise.train.loop import _on_device

    setup = plan.setup
    cpu = dataclasses.replace(setup, device="cpu")
    loader = setup.train_loader(shuffle=True)

    def batches():
        for i, batch in enumerate(loader):
            if i == CALIBRATION_BATCHES:
                return
            yield _on_device(cpu, batch, i, "train")[0]

    calibrate = quantize.calibration(batches(), lambda m, x: m(*_positional(x)))
    variant = quantize.static_int8(model, _positional(example), calibrate)
    try:  # an op the quantized backend lacks fails here, on a real batch
        with torch.no_grad():
            setup.call_model(variant, example)
    except Exception as exc:
        raise NotApplicable(
            f"the int8 model fails on the {quantize.backend()} backend "
            f"({quantize._first_line(exc)})"
        ) from exc
    return variant


def _pruned(model: nn.Module, amount: float, plan: Plan) -> tuple[nn.Module, str]:
    masks = _global_masks(model, amount)

    def masked() -> nn.Module:
        # a pruned module cannot be deep-copied (its weight is computed from weight_orig):
        # each copy is pruned again from the same masks, which fit's training keeps applying
        fresh = copy.deepcopy(model)
        for name, mask in masks.items():
            torch_prune.custom_from_mask(fresh.get_submodule(name), "weight", mask)
        return fresh

    what = f"{amount:.0%} of the weights zeroed (global L1)"
    tuned, note = _finetuned(masked, plan, what)
    for name in masks:
        torch_prune.remove(tuned.get_submodule(name), "weight")  # the mask applied for good
    return tuned, note


def _global_masks(model: nn.Module, amount: float) -> dict[str, torch.Tensor]:
    """{layer name: 0/1 mask} zeroing the fraction `amount` of all Linear/Conv weights of least
    magnitude, counted over the layers together (torch.nn.utils.prune.global_unstructured)."""
    scratch = copy.deepcopy(model)
    named = [(n, m) for n, m in scratch.named_modules() if isinstance(m, PRUNED)]
    if not named:
        raise NotApplicable("no Linear or Conv layer to prune")
    torch_prune.global_unstructured([(m, "weight") for _, m in named],
                                    pruning_method=torch_prune.L1Unstructured, amount=amount)  # fmt: skip
    return {n: m.weight_mask.detach().clone() for n, m in named}


def _finetuned(model: nn.Module | Callable[[], nn.Module], plan: Plan, what: str
               ) -> tuple[nn.Module, str]:  # fmt: skip
    from trainwise.train.loop import fit
    from trainwise.train.recipe import Recipe

    lr = _run_lr(plan) * FINETUNE_LR_SHARE
    base = plan.recipe or Recipe()
    recipe = dataclasses.replace(base, lr=lr, schedule="cosine", output_bias=False)
    factory = model if callable(model) and not isinstance(model, nn.Module) else _factory(model)
    trained = _fit(fit, plan.setup, factory, plan.finetune_epochs, recipe, plan.seed)
    note = f"{what}; fine-tuned {plan.finetune_epochs} epochs at lr {lr:.3g} (cosine)"
    return trained, note


def _distilled(teacher: nn.Module, method: Step, plan: Plan, example: Any
               ) -> tuple[nn.Module, str]:  # fmt: skip
    from trainwise.train.distill import DistillationLoss
    from trainwise.train.loop import fit
    from trainwise.train.recipe import Recipe

    if plan.task != "classification":
        raise NotApplicable(f"distillation here is for single-label classification; this is "
                            f"{plan.task}")  # fmt: skip
    call = plan.setup.call_model
    torch.manual_seed(plan.seed)  # the student's initialization, whatever was built before
    if method.depth:
        student = shallower(teacher, method.amount, lambda m: call(m, example))
    else:
        student = narrower(teacher, method.amount, lambda m: call(m, example), copy_weights=False)
    loss = DistillationLoss(copy.deepcopy(teacher).to(plan.setup.torch_device))
    setup = dataclasses.replace(plan.setup, loss=loss.training_step())
    base = plan.recipe or Recipe()
    recipe = dataclasses.replace(base, lr=_run_lr(plan) if plan.recipe else base.lr,
                                 label_smoothing=0.0)  # fmt: skip
    trained = _fit(fit, setup, _factory(student), plan.distill_epochs, recipe, plan.seed)
    note = (
        f"student at {'depth' if method.depth else 'width'} {method.amount:g}, trained {plan.distill_epochs} epochs on {loss!r} "
        f"(lr {recipe.lr if isinstance(recipe.lr, str) else format(recipe.lr, '.3g')})"
    )
    return trained, note


def _run_lr(plan: Plan) -> float:
    lr = getattr(plan.recipe, "lr", None)
    return float(lr) if isinstance(lr, (int, float)) else FALLBACK_LR


def _factory(model: nn.Module) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        return copy.deepcopy(model)

    build.__qualname__ = f"compressed {type(model).__name__}"
    return build


def _fit(fit: Any, setup: Setup, factory: Callable[[], nn.Module], epochs: int, recipe: Any,
         seed: int) -> nn.Module:  # fmt: skip
    setup = dataclasses.replace(setup, model=factory)
    result = fit(setup, epochs=epochs, recipe=recipe, seed=seed, record=False, verbose=False)
    if result.stopped:
        raise NotApplicable(f"its training stopped: {result.stopped}")
    return result.model.cpu().eval()
