"""Static rules about the model and how its output meets the loss."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

from trainwise.context import StaticContext
from trainwise.loss_kinds import BCE_LOGITS, CROSS_ENTROPY, NLL
from trainwise.rules.registry import Hit, rule

_SIGMOID_NAMES = ("sigmoid",)


def output_producer(ctx: StaticContext) -> str:
    """Name the layer (or the functional op in forward) that produced the model output."""
    out = ctx.output
    call = ctx.trace.producer_of(out) if isinstance(out, torch.Tensor) else None
    if call is not None and call.name:
        return f"{call.name} ({type(call.module).__name__})"
    fn = ctx.trace.output_function()
    model_name = type(ctx.model).__name__
    if fn is not None:
        return f"{model_name}.forward ({fn})"
    return f"{model_name} output"


def _produced_by_sigmoid(ctx: StaticContext) -> bool:
    out = ctx.output
    call = ctx.trace.producer_of(out) if isinstance(out, torch.Tensor) else None
    if call is not None and isinstance(call.module, nn.Sigmoid):
        return True
    fn = ctx.trace.output_function()
    return fn is not None and fn.lower() in _SIGMOID_NAMES


@rule(
    "softmax-before-loss",
    severity="error",
    category="model",
    summary="The model output already went through softmax/sigmoid and the loss applies it again "
    "(or NLLLoss gets raw logits)",
    why=(
        "CrossEntropyLoss applies log-softmax to its input and BCEWithLogitsLoss applies a "
        "sigmoid. Feeding them probabilities squashes the logits into [0, 1]: with C classes "
        "the loss can never fall below log(1 + (C - 1) / e) (1.46 for 10 classes) and the "
        "gradients shrink, so training stalls at a mediocre accuracy without any error. The "
        "reverse mistake, raw logits into NLLLoss, trains on a loss that is not a likelihood at "
        "all. A log-softmax before CrossEntropyLoss is harmless (log-softmax is idempotent) and "
        "only reported as info."
    ),
    fix=(
        "Return raw logits from the model and let the loss apply the activation: drop the final "
        "nn.Softmax / F.softmax / nn.Sigmoid. Apply softmax or sigmoid only at inference. "
        "Keep a final LogSoftmax only with NLLLoss."
    ),
    example=(
        "model = nn.Sequential(nn.Linear(64, 10), nn.Softmax(dim=1))\n"
        "loss = nn.CrossEntropyLoss()              # applies log-softmax again\n\n"
        "model = nn.Sequential(nn.Linear(64, 10))  # raw logits\n"
        "loss = nn.CrossEntropyLoss()\n"
        "probs = model(x).softmax(dim=1)           # only when you need probabilities"
    ),
    source="A. Marcolini, Deep Learning Best Practices (fast.ai course notes) (fast.ai best practices: log-softmax vs softmax). "
    "PYSIASSIST and NeuraLint list it among the most common PyTorch bugs.",
)
def softmax_before_loss(ctx: StaticContext) -> Iterator[Hit]:
    form, kind = ctx.output_form, ctx.loss_kind
    out = ctx.output
    if not isinstance(out, torch.Tensor) or out.dim() < 2:
        return
    where = output_producer(ctx)
    classes = int(out.shape[1])
    row_sums = out.detach().float().sum(dim=1)
    evidence = {
        "classes": classes,
        "output_min": float(out.min()),
        "output_max": float(out.max()),
        "row_sum_mean": float(row_sums.mean()),
    }
    if kind == CROSS_ENTROPY and form == "probabilities":
        # Softmax outputs p in [0, 1]; CE(softmax(p)) is smallest when p is one-hot:
        # -log(e / (e + C - 1)) = log(1 + (C - 1) / e).
        floor = math.log(1 + (classes - 1) / math.e)
        yield Hit(
            f"the model output is already a softmax (each row sums to "
            f"{evidence['row_sum_mean']:.3f} over {classes} classes) and CrossEntropyLoss applies "
            f"log-softmax again: the loss can never go below {floor:.2f} and gradients shrink",
            where=where,
            evidence={**evidence, "loss_floor": floor},
            fix=f"Remove the softmax at {where} and return raw logits; CrossEntropyLoss applies "
            "log-softmax itself. Use `model(x).softmax(dim=1)` at inference.",
        )
    elif kind == CROSS_ENTROPY and ctx.loss_match[1] == "softmax":
        # The model returns logits, but the loss code (a lambda, a Lightning training_step)
        # applies a softmax before cross-entropy: its value is CE(softmax(out), y), same floor.
        floor = math.log(1 + (classes - 1) / math.e)
        name = ctx.setup.loss_name
        yield Hit(
            f"{name} applies a softmax to the model's {classes} logits before cross-entropy, "
            f"which applies log-softmax again: its loss on a batch ({ctx.setup_loss_value:.4f}) "
            "equals cross_entropy(softmax(logits), y), so it can never go below "
            f"{floor:.2f} and gradients shrink",
            where=name,
            evidence={**evidence, "loss_floor": floor, "loss": ctx.setup_loss_value},
            fix=f"In {name}, pass the raw logits to the cross-entropy: "
            "`F.cross_entropy(logits, y)`, not `F.cross_entropy(F.softmax(logits, dim=1), y)`.",
        )
    elif kind == CROSS_ENTROPY and form == "log-probabilities":
        yield Hit(
            f"the model output is already a log-softmax over {classes} classes and "
            "CrossEntropyLoss applies log-softmax again; this is harmless (log-softmax is "
            "idempotent) but redundant",
            where=where,
            evidence=evidence,
            fix=f"Drop the log-softmax at {where}, or keep it and use nn.NLLLoss().",
            severity="info",
        )
    elif (
        kind == BCE_LOGITS
        and form in ("unit-interval", "probabilities")
        and (_produced_by_sigmoid(ctx))
    ):
        yield Hit(
            f"the model output went through a sigmoid (values in [{evidence['output_min']:.3f}, "
            f"{evidence['output_max']:.3f}]) and BCEWithLogitsLoss applies a sigmoid again",
            where=where,
            evidence=evidence,
            fix=f"Remove the sigmoid at {where}; BCEWithLogitsLoss takes raw logits. Apply "
            "`torch.sigmoid(model(x))` at inference.",
        )
    elif kind == NLL and form != "log-probabilities":
        got = "probabilities (a softmax)" if form == "probabilities" else "raw logits"
        yield Hit(
            f"NLLLoss expects log-probabilities but the model returns {got} "
            f"(values in [{evidence['output_min']:.3f}, {evidence['output_max']:.3f}])",
            where=where,
            evidence=evidence,
            fix="Use nn.CrossEntropyLoss() on raw logits, or end the model with "
            "nn.LogSoftmax(dim=1) (not Softmax) when you keep NLLLoss.",
        )
