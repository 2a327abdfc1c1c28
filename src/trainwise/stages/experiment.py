"""What the protocol's experiments share.

- `isolated(run)`: the user's RNG streams (and their module, when the setup holds one) are
  restored afterwards, and every experiment starts from the same seed.
- `fresh(run)`: a fresh model and optimizer, optionally with regularization off.
- `forward` / `train_step`: a crash in the user's model becomes a message naming the stage,
  the layer and the input shape.
- `blocking_reason(run)` / `blocking_finding(run)`: why an experiment would produce nonsense
  (labels the loss cannot take), read from the static rules' findings.
- `Budget`: bounded steps and seconds, smaller with `--quick`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainwise.data import DataSample, Inputs, shape_of, take, to_device
from trainwise.data import first_tensor as first_tensor  # the stages' helper, from data
from trainwise.errors import SetupError
from trainwise.findings import Finding
from trainwise.loss_kinds import BINARY, CLASS_INDEX, L1, MSE
from trainwise.rules.data import labels_out_of_range
from trainwise.rules.dataset import nonfinite_inputs, nonfinite_parts
from trainwise.rules.optimizer import frozen_parameters
from trainwise.rules.protocol import fmt as fmt  # numbers in summaries read as in messages
from trainwise.spec import model_copy, without_target
from trainwise.stages.base import CheckRun, StageOutcome
from trainwise.state import preserved, preserved_rng
from trainwise.steps import TrainingStep
from trainwise.tracing import run_forward


@dataclass(frozen=True)
class Budgets:
    """Bounds of each experiment. Healthy setups stop early; the bounds matter for broken ones."""

    overfit_steps: int  # memorizing one batch takes well under 200 Adam steps on small models
    overfit_seconds: float
    train_steps: int  # the short training against the baselines
    train_seconds: float
    speed_batches: int  # "a few dozen batches" of the user's loader
    speed_seconds: float


# The seconds (of CPU time) are a safety net for slow models (their stages then report
# "inconclusive");
# the step counts are what keep a check short on a small model.
FULL = Budgets(400, 30.0, 300, 30.0, 30, 6.0)
QUICK = Budgets(200, 10.0, 40, 10.0, 6, 1.5)


def budgets(run: CheckRun) -> Budgets:
    return QUICK if run.quick else FULL


class Deadline:
    """A budget of this process's CPU time, not wall time: on a busy machine (a shared CI
    runner) other processes' load must not cut an experiment short and make it inconclusive.
    With 2 threads on an idle machine, wall time is between half the CPU time and all of it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.process_time() + seconds

    @property
    def passed(self) -> bool:
        return time.process_time() > self.end


def show_progress(run: CheckRun, label: str, done: int, total: int) -> None:
    """Move the second progress bar (set by the protocol runner when it draws one)."""
    if run.progress is not None:
        run.progress(label, done, total)


# -- isolation ------------------------------------------------------------------------------


@contextmanager
def isolated(run: CheckRun) -> Iterator[None]:
    """Seed the experiment; restore the user's RNG states (and their module) afterwards.

    Every model the stages train is built fresh (a factory call or a deep copy), so the user's
    module is never trained; `preserved` is the guarantee that holds even if that changes.
    """
    with ExitStack() as stack:
        if isinstance(run.setup.model, nn.Module):
            stack.enter_context(preserved(run.setup.model))
        stack.enter_context(preserved_rng())
        torch.manual_seed(run.seed)
        yield


def fresh(run: CheckRun, regularization: bool = True) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A fresh model in train mode and its optimizer; without regularization: dropout p=0 and
    weight decay 0 (the overfitting experiments), LR constant since no scheduler is built."""
    model = run.setup.build_model()
    if not isinstance(run.setup.model, nn.Module):
        # A factory may hand out one shared instance (`model=lambda: net`): train a copy of it.
        model = _copy(model)
    model.train()
    if not regularization:
        for module in model.modules():
            if isinstance(module, nn.modules.dropout._DropoutNd):
                module.p = 0.0
            elif isinstance(module, nn.MultiheadAttention):
                module.dropout = 0.0
    optimizer = run.setup.build_optimizer(model)
    if not regularization:
        for group in optimizer.param_groups:
            if "weight_decay" in group:
                group["weight_decay"] = 0.0
    return model, optimizer


def _copy(model: nn.Module) -> nn.Module:
    try:
        return model_copy(model)
    except Exception:  # an uncopyable module (rare): the factory's own is fresh by contract
        return model


def scale_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        lr = group["lr"]
        group["lr"] = lr * factor if not isinstance(lr, torch.Tensor) else lr.mul_(factor)


def configured_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


# -- running the user's model ---------------------------------------------------------------


def forward(run: CheckRun, model: nn.Module, x: Any, stage: str) -> Any:
    """The model's prediction on x (the logits of a ModelOutput, ...); on a crash, run it
    again under hooks to name the layer (ForwardError)."""
    setup = run.setup
    try:
        return setup.predict(model, x)
    except SetupError:
        raise
    except Exception as exc:
        raise _model_error(run, model, without_target(x), stage, exc) from exc


def _model_error(run: CheckRun, model: nn.Module, x: Any, stage: str, exc: Exception) -> SetupError:
    """The model's crash on x as a SetupError: replayed under hooks first, which raises a
    ForwardError naming the layer when the crash recurs."""
    run_forward(model, x, stage=stage, call=run.setup.call_model)
    return SetupError(
        f"[{stage}] the model raised {type(exc).__name__} on an input of shape {shape_of(x)}: {exc}"
    )


def compute_loss(run: CheckRun, prediction: Any, y: Any, stage: str) -> torch.Tensor:
    """The setup's loss of a prediction (a trivial baseline's, dropout passes' mean...): its
    loss function, or for a model computing its own loss the known loss it matches."""
    loss_fn = run.context.prediction_loss
    if loss_fn is None:
        raise SetupError(
            f"[{stage}] {run.setup.loss_name} cannot be computed on a prediction alone, and "
            "matches no loss trainwise knows"
        )
    try:
        return loss_fn(prediction, y)
    except Exception as exc:
        raise SetupError(
            f"[{stage}] the loss raised {type(exc).__name__} on output {shape_of(prediction)} "
            f"and target {shape_of(y)}: {exc}"
        ) from exc


def loss_of(run: CheckRun, model: nn.Module, x: Any, y: Any, stage: str) -> torch.Tensor:
    """The training loss on (x, y) however the setup computes it (its loss function, the
    model's own loss, a training step); a crash names the model's layer or the loss."""
    setup = run.setup
    if isinstance(setup.loss, TrainingStep):
        try:
            return setup.step_loss(model, x, y)
        except SetupError:
            raise
        except Exception as exc:
            raise SetupError(
                f"[{stage}] {setup.loss_name} raised {type(exc).__name__} on a batch of shape "
                f"{shape_of(x)}: {exc}"
            ) from exc
    try:
        out = setup.call_model(model, x)
    except SetupError:
        raise
    except Exception as exc:
        raise _model_error(run, model, x, stage, exc) from exc
    try:
        return setup.loss_from_output(out, y)
    except SetupError:
        raise
    except Exception as exc:
        raise SetupError(
            f"[{stage}] the loss raised {type(exc).__name__} on output "
            f"{shape_of(setup.batch_format.loss_input(out))} and target {shape_of(y)}: {exc}"
        ) from exc


def evaluate(run: CheckRun, model: nn.Module, x: Any, y: Any, stage: str) -> tuple[Any, float]:
    """(prediction, loss) on (x, y): one forward when the loss is a function of the output,
    two when the model or a training step computes it."""
    if run.setup.loss is not None and not isinstance(run.setup.loss, TrainingStep):
        out = forward(run, model, x, stage)
        return out, float(compute_loss(run, out, y, stage))
    return forward(run, model, x, stage), float(loss_of(run, model, x, y, stage))


def backward(model: nn.Module, loss: torch.Tensor, x: Any, run: CheckRun, y: Any, stage: str):
    """loss.backward(); on a crash, name the module whose backward raised."""
    try:
        loss.backward()
    except Exception as exc:
        layer = _failing_backward_layer(model, x, y, run)
        where = f" in the backward of {layer}" if layer else ""
        raise SetupError(
            f"[{stage}] the backward pass raised {type(exc).__name__}{where} on an input of "
            f"shape {shape_of(x)}: {exc}"
        ) from exc


def _failing_backward_layer(model: nn.Module, x: Any, y: Any, run: CheckRun) -> str:
    """Replay forward and backward with a gradient hook on every module's output: the module
    whose output gradient arrived last is the one whose backward raised."""
    names = {id(m): n for n, m in model.named_modules()}
    last: list[str] = []
    handles = []

    def on_output(module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.requires_grad:
            name = names.get(id(module), "?")
            label = f"layer '{name}' ({type(module).__name__})" if name else type(module).__name__
            output.register_hook(lambda grad: last.append(label))

    try:
        for module in model.modules():
            handles.append(module.register_forward_hook(on_output))
        model.zero_grad(set_to_none=True)
        run.setup.batch_loss(model, x, y).backward()
    except Exception:
        return last[-1] if last else ""
    finally:
        for h in handles:
            h.remove()
    return ""


def train_step(
    run: CheckRun, model: nn.Module, optimizer: torch.optim.Optimizer, x: Any, y: Any, stage: str
) -> float:
    """One optimizer step; returns the loss before the step (one sync)."""
    optimizer.zero_grad(set_to_none=True)
    loss = loss_of(run, model, x, y, stage)
    backward(model, loss, x, run, y, stage)
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def eval_loss(run: CheckRun, model: nn.Module, x: Any, y: Any, stage: str) -> float:
    return float(loss_of(run, model, x, y, stage))


# -- data -----------------------------------------------------------------------------------


def zeros_like(value: Any) -> Any:
    """The input with every tensor zeroed (the target a model takes as a keyword kept)."""
    if isinstance(value, torch.Tensor):
        return torch.zeros_like(value)
    if isinstance(value, Inputs):
        kwargs = {k: v if k == value.target_key else zeros_like(v) for k, v in value.kwargs.items()}
        return Inputs(zeros_like(value.args), kwargs, value.target_key, value.layout)
    if isinstance(value, (tuple, list)):
        return type(value)(zeros_like(v) for v in value)
    if isinstance(value, dict):
        return {k: zeros_like(v) for k, v in value.items()}
    return value


def rows(sample: DataSample, n: int, run: CheckRun, offset: int = 0) -> tuple[Any, Any]:
    """n rows of a sample from `offset`, on the setup's device."""
    index = slice(offset, offset + n)
    device = run.setup.torch_device
    return to_device(take(sample.inputs, index), device), to_device(
        take(sample.targets, index), device
    )


def batches(sample: DataSample, size: int, run: CheckRun, generator: torch.Generator):
    """Endless shuffled mini-batches from an in-memory sample (epoch after epoch)."""
    n = len(sample)
    device = run.setup.torch_device
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - size + 1 if n >= size else 1, size):
            index = order[start : start + size]
            yield (
                to_device(take(sample.inputs, index), device),
                to_device(take(sample.targets, index), device),
            )


# -- what the loss should be ----------------------------------------------------------------


def reference_loss(run: CheckRun) -> tuple[float | None, str]:
    """The loss of a model that knows nothing yet, and how it was derived.

    Cross-entropy over C classes: log C (uniform predictions). Binary cross-entropy: log 2 per
    label. MSE: the target variance (the mean predictor). L1: the mean absolute deviation from
    the median. None for a loss trainwise does not recognize.
    """
    ctx = run.context
    kind = ctx.loss_kind
    targets = ctx.train_sample.targets
    if kind in CLASS_INDEX and ctx.num_classes:
        return math.log(ctx.num_classes), f"log({ctx.num_classes}) for {ctx.num_classes} classes"
    if kind in BINARY:
        return math.log(2.0), "log(2) per label"
    if isinstance(targets, torch.Tensor) and torch.is_floating_point(targets):
        t = targets.double()
        if kind == MSE:
            return float(t.var()), "the target variance"
        if kind == L1:
            return float(
                (t - t.median()).abs().mean()
            ), "the mean absolute deviation of the targets"
    return None, ""


def training_skip_reason(run: CheckRun) -> str | None:
    """Why a training experiment should not run: blocking data, or --quick on a slow model."""
    if (reason := blocking_reason(run)) is not None:
        return reason
    if (step := slow_for_quick(run)) is not None:
        return (
            f"one training step takes {step:.2f}s (slow-step), too slow for --quick; run the "
            "check without --quick for the training experiments"
        )
    return None


def slow_for_quick(run: CheckRun) -> float | None:
    """The measured step time when --quick should skip training on it (over slow-step's limit,
    the speed stage's), else None. Every training experiment, the LR sweep included, skips at
    this one threshold."""
    step = run.step_seconds or 0.0
    return step if run.quick and step > run.slow_step_seconds else None


def blocking_reason(run: CheckRun) -> str | None:
    """Why experiments would produce nonsense on this setup, or None, from the static findings."""
    blocked = blocking_finding(run)
    return None if blocked is None else blocked[0]


def blocking_finding(run: CheckRun) -> tuple[str, Finding] | None:
    """(why experiments would produce nonsense on this setup, the static finding that says so),
    or None. `lr_find` reads it too, so that it refuses what `check` refuses, in the same words.

    Labels outside the model's outputs make cross-entropy crash (or silently read memory out of
    bounds on GPU); a model with nothing trainable cannot run backward(); non-finite inputs poison
    every loss. The static stage reports all three; each experiment skips, naming the finding.
    """
    found: dict[str, Finding] = {}  # the first finding of each rule on the training data
    for f in static_findings(run):
        if _on_training_data(f):
            found.setdefault(f.rule, f)
    if (f := found.get(labels_out_of_range.slug)) is not None:
        e = f.evidence
        return (
            f"labels span {e['label_min']}..{e['label_max']} but the model has "
            f"{e['num_outputs']} outputs (labels-out-of-range): the loss cannot be computed"
        ), f
    frozen = found.get(frozen_parameters.slug)
    if frozen is not None and frozen.evidence.get("trainable") == 0:
        # backward() would raise "element 0 of tensors does not require grad"; the static stage
        # reports the cause (frozen-parameters), so every experiment skips instead of aborting.
        return (
            "no parameter of the model requires grad (frozen-parameters): nothing can train"
        ), frozen
    if (f := found.get(nonfinite_inputs.slug)) is not None:
        part = nonfinite_parts(run.context.train_sample)[0]  # the part the finding is about
        return f"NaN/Inf in the training {part} (nonfinite-inputs)", f
    return None


# The static rules whose findings block the experiments (see blocking_reason).
BLOCKING = (labels_out_of_range, frozen_parameters, nonfinite_inputs)


def static_findings(run: CheckRun) -> list[Finding]:
    """What the static rules found: the static stage's findings, or, when this run has no static
    stage (a custom list of stages), the blocking rules run once on the run's context."""
    if run.static_findings is None:
        run.static_findings = [r.from_hit(hit) for r in BLOCKING for hit in r.check(run.context)]
    return run.static_findings


def _on_training_data(finding: Finding) -> bool:
    """A finding about the model, or about the training split (not the validation split)."""
    return not str(finding.where).startswith("val[")


def skipped(reason: str) -> StageOutcome:
    return StageOutcome(summary=f"skipped: {reason}", skipped=True)
