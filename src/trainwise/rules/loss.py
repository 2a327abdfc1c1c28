"""Static rules about how the targets, the model's head and the loss fit together."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from trainwise.context import StaticContext
from trainwise.loss_kinds import BINARY, CLASS_INDEX, IGNORE_INDEX, REGRESSION
from trainwise.rules.model import output_producer
from trainwise.rules.registry import Hit, rule

# A row counts as "multi-hot" when it holds two or more 1s. One such row in a hundred is already a
# labelling scheme, not noise: CrossEntropyLoss then trains towards a split probability.
MULTI_HOT_MIN_SHARE = 0.01
# Samples per output class needed before a class missing from the sample is taken as missing
# from the data: with 20 samples per class, a class of 1/C of the data is absent from a uniform
# sample with probability (1 - 1/C)^(20 C) < e^-20.
SAMPLES_PER_CLASS_TO_TRUST = 20


def _targets(ctx: StaticContext) -> torch.Tensor | None:
    y = ctx.train_sample.targets
    return y if isinstance(y, torch.Tensor) else None


def _output(ctx: StaticContext) -> torch.Tensor | None:
    out = ctx.output
    return out if isinstance(out, torch.Tensor) and out.dim() >= 1 else None


@rule(
    "multilabel-needs-sigmoid",
    severity="error",
    category="model",
    summary="Targets are multi-hot (several 1s per row) but the loss is CrossEntropyLoss",
    why=(
        "CrossEntropyLoss puts a softmax over the classes: the probabilities compete and sum to "
        "1, so a sample with three true labels can at best give each one a third. PyTorch "
        "accepts a multi-hot float target silently (it reads it as class probabilities), so "
        "nothing crashes; the model just learns to split its belief and a 0.5 threshold at "
        "inference finds almost no positive labels."
    ),
    fix=(
        "Use nn.BCEWithLogitsLoss() on the raw logits (one independent sigmoid per label) and "
        "threshold `torch.sigmoid(logits) > 0.5` at inference."
    ),
    example=(
        "y = multi_hot                     # (N, C), e.g. [0, 1, 1, 0, 1]\n"
        "loss = nn.CrossEntropyLoss()      # softmax: labels compete\n\n"
        "loss = nn.BCEWithLogitsLoss()     # one sigmoid per label\n"
        "predicted = torch.sigmoid(model(x)) > 0.5"
    ),
    source="A. Marcolini, Deep Learning Best Practices (fast.ai course notes) (fast.ai: multi-label classification uses a sigmoid "
    "per class, not a softmax).",
)
def multilabel_needs_sigmoid(ctx: StaticContext) -> Iterator[Hit]:
    y, out = _targets(ctx), _output(ctx)
    if ctx.loss_kind not in CLASS_INDEX or y is None or out is None:
        return
    if y.dim() != 2 or y.shape[1] < 2 or y.shape[1:] != out.shape[1:]:
        return
    binary = bool(((y == 0) | (y == 1)).all())
    positives = (y > 0).sum(dim=1)  # (N,)
    several = int((positives > 1).sum())
    if not binary or several < max(1, MULTI_HOT_MIN_SHARE * len(y)):
        return
    yield Hit(
        f"{several} of {len(y)} sampled train targets have several labels set (mean "
        f"{float(positives.float().mean()):.2f} positive labels per sample over {y.shape[1]}) but "
        "the loss is a softmax cross-entropy, which makes the labels compete",
        where="loss",
        evidence={
            "multi_hot_rows": several,
            "sampled": len(y),
            "labels": int(y.shape[1]),
            "mean_positives": float(positives.float().mean()),
        },
        fix="Use `loss=nn.BCEWithLogitsLoss()` on raw logits and predict with "
        "`torch.sigmoid(model(x)) > 0.5`.",
    )


@rule(
    "wrong-loss-for-task",
    severity="error",
    category="model",
    summary="The loss does not match the targets (MSE on class indices, cross-entropy or BCE on "
    "continuous targets)",
    why=(
        "A regression loss on class indices treats class 7 as 'closer' to class 8 than to class "
        "1 and learns the average label; a classification loss on continuous targets reads them "
        "as probabilities (PyTorch accepts float targets in CrossEntropyLoss and "
        "BCEWithLogitsLoss without complaint), so the loss is meaningless: with a single output "
        "column the softmax cross-entropy is exactly 0 whatever the model does."
    ),
    fix=(
        "Class indices: nn.CrossEntropyLoss() on C logits. Continuous targets: nn.MSELoss() or "
        "nn.L1Loss()/nn.HuberLoss(). Targets in [0, 1] per label: nn.BCEWithLogitsLoss()."
    ),
    example=(
        "y = house_prices                  # (N, 1) float\n"
        "loss = nn.CrossEntropyLoss()      # softmax over 1 column: loss is always 0\n\n"
        "loss = nn.MSELoss()               # or nn.HuberLoss() for heavy tails"
    ),
    source="Matching the loss to the target type.",
)
def wrong_loss_for_task(ctx: StaticContext) -> Iterator[Hit]:
    y, out, kind = _targets(ctx), _output(ctx), ctx.loss_kind
    if y is None or out is None:
        return
    integer = not torch.is_floating_point(y)
    yf = y.float()
    evidence = {
        "loss": kind,
        "target_dtype": str(y.dtype).removeprefix("torch."),
        "target_min": float(yf.min()),
        "target_max": float(yf.max()),
        "distinct_targets": int(torch.unique(yf).numel()),
    }
    if kind in REGRESSION and (integer or ctx.setup.task == "classification"):
        classes = int(yf.max()) + 1
        yield Hit(
            f"a regression loss ({kind}) is trained on integer class labels "
            f"({evidence['distinct_targets']} distinct values {int(yf.min())}..{int(yf.max())}): "
            "it treats the classes as ordered numbers and learns their average",
            where="loss",
            evidence=evidence,
            fix=f"Give the model {classes} outputs and use `nn.CrossEntropyLoss()` on the raw "
            "logits with the integer labels as targets (or cast the targets to float if they "
            "really are quantities).",
        )
    elif kind in REGRESSION and _one_hot(y, out):
        yield Hit(
            f"{kind} regresses one-hot class targets over {y.shape[1]} classes; the gradient of "
            "a squared error vanishes for confidently wrong outputs, so classification trains "
            "slower and less accurately than with cross-entropy",
            where="loss",
            evidence=evidence,
            fix="Use `nn.CrossEntropyLoss()` with `y.argmax(dim=1)` as the target.",
            severity="warning",
        )
    elif kind in CLASS_INDEX and torch.is_floating_point(y):
        same = y.dim() >= 2 and y.shape[1:] == out.shape[1:]
        if same and _distributions(y):
            return  # soft labels (label smoothing, mixup): a valid use of CrossEntropyLoss
        if same and bool(((y == 0) | (y == 1)).all()):
            return  # multi-hot: multilabel-needs-sigmoid says it better
        single = out.dim() >= 2 and out.shape[1] == 1
        yield Hit(
            f"cross-entropy gets continuous float targets (values "
            f"{evidence['target_min']:.3g}..{evidence['target_max']:.3g}, "
            f"{evidence['distinct_targets']} distinct) that are not class probabilities"
            + (
                "; with one output column its softmax is 1 and the loss is always 0"
                if single
                else ""
            ),
            where="loss",
            evidence=evidence,
            fix="For continuous targets use `nn.MSELoss()` (or `nn.HuberLoss()`); for classes, "
            "make the targets integer class indices (`y.long()`).",
        )
    elif kind in BINARY and torch.is_floating_point(y):
        outside = int(((y < 0) | (y > 1)).sum())
        if outside:
            yield Hit(
                f"binary cross-entropy gets targets outside [0, 1] ({outside} values, range "
                f"{evidence['target_min']:.3g}..{evidence['target_max']:.3g}): these are not "
                "probabilities and the loss has no minimum there",
                where="loss",
                evidence={**evidence, "outside_unit_interval": outside},
                fix="For continuous targets use `nn.MSELoss()`; for binary labels map them to 0/1.",
            )


def _one_hot(y: torch.Tensor, out: torch.Tensor) -> bool:
    return (
        y.dim() == 2
        and y.shape[1:] == out.shape[1:]
        and y.shape[1] > 1
        and bool(((y == 0) | (y == 1)).all())
        and bool((y.sum(dim=1) == 1).all())
    )


def _distributions(y: torch.Tensor) -> bool:
    """Rows of non-negative values summing to 1 along dim 1 (soft class probabilities)."""
    return bool((y >= 0).all()) and torch.allclose(y.sum(dim=1), torch.ones(()), atol=1e-3)


@rule(
    "output-size-mismatch",
    severity="error",
    category="model",
    summary="The number of outputs differs from the number of classes in the labels, or the "
    "output shape differs from the target shape",
    why=(
        "A head with more outputs than classes wastes probability on classes that never occur "
        "(typical after reusing a pretrained 1000-way head); one with fewer crashes on the "
        "larger labels; a single output under cross-entropy gives a loss of exactly 0. For "
        "regression, an output of shape (N, 1) against targets of shape (N,) broadcasts inside "
        "the loss to an (N, N) matrix: every prediction is compared with every target and the "
        "model learns the mean (PyTorch only prints a warning)."
    ),
    fix=(
        "Size the last layer to the number of classes (`nn.Linear(features, C)`); for "
        "regression make output and target the same shape (`out.squeeze(-1)` or "
        "`y.unsqueeze(-1)`)."
    ),
    example=(
        "head = nn.Linear(512, 1000)   # ImageNet head kept, data has 10 classes\n"
        "head = nn.Linear(512, 10)\n\n"
        "loss(model(x), y)             # (N, 1) vs (N,): broadcasts to (N, N)\n"
        "loss(model(x).squeeze(-1), y)"
    ),
    source='Deep Learning Practical Tricks (a tips list) (check that the "number of output is right").',
)
def output_size_mismatch(ctx: StaticContext) -> Iterator[Hit]:
    y, out = _targets(ctx), _output(ctx)
    if y is None or out is None:
        return
    if ctx.task in ("classification", "segmentation") and not torch.is_floating_point(y):
        yield from _classes_vs_outputs(ctx, y, out)
    elif ctx.task == "regression" and torch.is_floating_point(y):
        yield from _regression_shapes(ctx, out)


def _regression_shapes(ctx: StaticContext, out: torch.Tensor) -> Iterator[Hit]:
    y = ctx.batch[1]  # the targets of the very batch the output came from
    if ctx.loss_match[1] == "squeeze":
        return  # the loss squeezes (N, 1) to the targets' (N,) itself (HF's regression loss)
    if isinstance(y, torch.Tensor) and out.shape != y.shape:
        try:
            broadcast = torch.broadcast_shapes(out.shape, y.shape)
        except RuntimeError:
            return  # the loss would have crashed; the static stage reported it
        if broadcast != out.shape or broadcast != y.shape:
            n = len(y)
            yield Hit(
                f"the model output has shape {tuple(out.shape)} but the targets "
                f"{tuple(y.shape)}: the loss broadcasts them to {tuple(broadcast)} and compares "
                "every prediction with every target",
                where=output_producer(ctx),
                evidence={
                    "output_shape": list(out.shape),
                    "target_shape": list(y.shape),
                    "broadcast_shape": list(broadcast),
                },
                fix="Make them match: `loss(model(x).squeeze(-1), y)` or reshape the targets to "
                f"(N, 1) with `y.unsqueeze(-1)` (batch of {n} here).",
            )


def _classes_vs_outputs(ctx: StaticContext, y: torch.Tensor, out: torch.Tensor) -> Iterator[Hit]:
    if out.dim() < 2:
        return
    outputs = int(out.shape[1])
    labels = [y]
    if ctx.val_sample is not None and isinstance(ctx.val_sample.targets, torch.Tensor):
        labels.append(ctx.val_sample.targets)
    seen = torch.cat([t.flatten() for t in labels])
    seen = seen[seen != IGNORE_INDEX]
    if seen.numel() == 0 or int(seen.min()) < 0:
        return
    classes = int(seen.max()) + 1
    distinct = int(torch.unique(seen).numel())
    where = output_producer(ctx)
    evidence = {"outputs": outputs, "classes_in_labels": classes, "distinct_labels": distinct}
    if outputs == 1 and ctx.loss_kind in CLASS_INDEX:
        yield Hit(
            f"the model has 1 output but cross-entropy needs one logit per class "
            f"({classes} classes in the labels): a softmax over one column is always 1 and the "
            "loss is 0 whatever the weights",
            where=where,
            evidence=evidence,
            fix=f"Give the last layer {max(classes, 2)} outputs, or keep 1 output with "
            "`nn.BCEWithLogitsLoss()` and float 0/1 targets for a binary task.",
        )
    elif outputs < classes:
        if int(seen.min()) >= 1 and classes - 1 == outputs:
            return  # 1-based labels: labels-out-of-range names them and the fix
        yield Hit(
            f"the model has {outputs} outputs but the labels name {classes} classes "
            f"(0..{classes - 1})",
            where=where,
            evidence=evidence,
            fix=f"{ctx.give_outputs(classes).capitalize()} (labels-out-of-range lists the "
            "samples).",
        )
    elif outputs > classes:
        sampled = len(ctx.train_sample)
        complete = ctx.train_sample.dataset_size == sampled
        if not complete and sampled < SAMPLES_PER_CLASS_TO_TRUST * outputs:
            return  # too few samples to say the missing classes are absent from the data
        yield Hit(
            f"the model has {outputs} outputs but the labels only use {classes} classes "
            f"(0..{classes - 1}, over {len(seen)} sampled labels): {outputs - classes} outputs "
            "train towards classes that never occur",
            where=where,
            evidence=evidence,
            fix=f"Resize the head to {classes} outputs, e.g. `model.fc = nn.Linear("
            f"model.fc.in_features, {classes})`.",
            severity="warning",
        )
