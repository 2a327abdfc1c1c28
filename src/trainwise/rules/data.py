"""Static rules about the data, read from a sample of the datasets."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

from trainwise.context import StaticContext
from trainwise.data import DataSample, input_parts, part_label
from trainwise.loss_kinds import IGNORE_INDEX
from trainwise.rules.registry import Hit, rule


@rule(
    "labels-out-of-range",
    severity="error",
    category="data",
    summary="A class label is negative or not smaller than the number of model outputs",
    why=(
        "Cross-entropy indexes the output row with the label. A label equal to or above the "
        "number of outputs crashes on the CPU with an index error and, on a GPU, with a "
        "device-side assert (or memory corruption) far from its cause. The usual reasons are "
        "1-based labels, a head sized for fewer classes than the data has, or a stray "
        "sentinel value."
    ),
    fix=(
        "Make labels run from 0 to C-1 (e.g. `y - 1` for 1-based labels), or give the head as "
        "many outputs as there are classes."
    ),
    example=(
        "y = torch.tensor(raw_labels)          # labels 1..10\n"
        "head = nn.Linear(128, 10)             # outputs 0..9: label 10 is out of range\n\n"
        "y = torch.tensor(raw_labels) - 1      # labels 0..9"
    ),
    source='Deep Learning Practical Tricks (a tips list) ("index out of range" crashes).',
)
def labels_out_of_range(ctx: StaticContext) -> Iterator[Hit]:
    if ctx.task not in ("classification", "segmentation") or ctx.num_classes is None:
        return
    for split, sample in (("train", ctx.train_sample), ("val", ctx.val_sample)):
        if sample is not None:
            yield from _check_labels(split, sample, ctx.num_classes, ctx.give_outputs)


def _check_labels(
    split: str, sample: DataSample, classes: int, give_outputs: Callable[[int], str]
) -> Iterator[Hit]:
    y = sample.targets
    if not isinstance(y, torch.Tensor) or torch.is_floating_point(y):
        return
    valid = y != IGNORE_INDEX
    bad = valid & ((y < 0) | (y >= classes))
    if not bool(bad.any()):
        return
    bad_rows = bad.reshape(len(y), -1).any(dim=1).nonzero().flatten().tolist()
    first = sample.indices[bad_rows[0]]
    label = (
        int(y[bad_rows[0]][bad[bad_rows[0]]].flatten()[0]) if y.dim() > 1 else int(y[bad_rows[0]])
    )
    lo, hi = int(y[valid].min()), int(y[valid].max())
    if lo >= 1 and hi == classes:
        fix = (
            "Labels run 1.."
            + f"{classes}: they look 1-based. Subtract 1 (`y - 1`) so they run 0..{classes - 1}."
        )
    elif hi >= classes:
        fix = (
            f"The data has labels up to {hi} but the model has {classes} outputs: "
            f"{give_outputs(hi + 1)}, or remap the labels to 0..{classes - 1}."
        )
    else:
        fix = f"Remove or remap negative labels; only {IGNORE_INDEX} (ignore_index) is allowed."
    yield Hit(
        f"{len(bad_rows)} of {len(sample)} sampled {split} samples have a label outside "
        f"0..{classes - 1} (the model has {classes} outputs); {split} sample {first} has label "
        f"{label}; labels seen span {lo}..{hi}",
        where=f"{split}[{first}]",
        evidence={
            "bad_samples": len(bad_rows),
            "sampled": len(sample),
            "first_bad_index": first,
            "first_bad_label": label,
            "label_min": lo,
            "label_max": hi,
            "num_outputs": classes,
        },
        fix=fix,
    )


# Thresholds on per-channel statistics. Standardized inputs have mean 0 / std 1; data scaled to
# [0, 1] (mean ~0.5, std ~0.3) trains fine and must stay quiet, raw 0-255 pixels (mean ~120,
# std ~70) or 0-16 digit intensities (mean ~4.9, std ~6) must not.
MAX_ABS_MEAN = 2.0
MAX_STD = 4.0
MIN_STD = 0.02  # inputs measured in tiny units (volts, metres on a micro scale)
MAX_LISTED_CHANNELS = 16  # beyond this, the per-feature values live in the evidence only


def channel_dim(ctx: StaticContext, x: torch.Tensor) -> int:
    """Which axis holds channels/features: (N, C, ...) for convs, (N, T, F) for sequences."""
    if x.dim() == 3:
        first = next((c.module for c in ctx.trace.leaf_calls), None)
        return 1 if isinstance(first, nn.Conv1d) else 2
    return 1


@rule(
    "inputs-not-normalized",
    severity="warning",
    category="data",
    summary="Input features are far from mean 0 / std 1 (e.g. raw 0-255 pixels)",
    why=(
        "Default initializations (Kaiming, PyTorch's uniform fan-in init) assume inputs of "
        "roughly unit scale. Inputs on a scale of tens or hundreds saturate activations, make "
        "the first layer's gradients dominate, and force a much smaller learning rate; features "
        "on very different scales make the loss surface ill-conditioned."
    ),
    fix=(
        "Standardize each input channel with the mean and std measured on the training set: "
        "`x = (x - mean) / std` (the numbers are in the finding)."
    ),
    example=(
        "x = torch.tensor(images, dtype=torch.float32)            # 0..255\n\n"
        "mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))   # per channel, train set only\n"
        "x = (x - mean[:, None, None]) / std[:, None, None]"
    ),
    source="Deep Learning Practical Tricks (a tips list) (general pre-processing tricks: whitening, "
    "scaling). LeCun et al., Efficient BackProp (1998), section 4.3.",
)
def inputs_not_normalized(ctx: StaticContext) -> Iterator[Hit]:
    # A model of several inputs (an image and a table...): each part is judged on its own.
    for name, x in input_parts(ctx.train_sample.inputs):
        if isinstance(x, torch.Tensor) and torch.is_floating_point(x) and x.dim() >= 2:
            yield from _not_normalized(ctx, x, name)  # token ids and other integers are skipped


def _not_normalized(ctx: StaticContext, x: torch.Tensor, name: str) -> Iterator[Hit]:
    what = f"{part_label(name)} is" if name else "inputs are"
    dim = channel_dim(ctx, x)
    xc = x.detach().float().movedim(dim, 1).reshape(x.shape[0], x.shape[dim], -1)  # (N, C, rest)
    per_channel = xc.transpose(0, 1).reshape(x.shape[dim], -1)  # (C, N * rest)
    mean, std = per_channel.mean(dim=1), per_channel.std(dim=1)
    varying = std > 0  # constant channels (e.g. always-zero border pixels) are left out
    if not bool(varying.any()):
        return
    abs_mean, std_v = mean.abs()[varying], std[varying]
    too_far = float(abs_mean.max()) > MAX_ABS_MEAN
    too_wide = float(std_v.max()) > MAX_STD
    too_narrow = float(std_v.median()) < MIN_STD
    if not (too_far or too_wide or too_narrow):
        return
    # The channel that deviates most from unit scale, in log terms.
    badness = (mean.abs() + 1).log() + std.clamp_min(1e-12).log().abs()
    badness[~varying] = -1
    worst = int(badness.argmax())
    kind = "channel" if x.dim() >= 3 and dim == 1 else "feature"
    count = x.shape[dim]
    means = [round(float(m), 4) for m in mean]
    stds = [round(float(s), 4) if s > 0 else 1.0 for s in std]
    if count <= MAX_LISTED_CHANNELS:
        numbers = f"mean={means}, std={stds}"
    else:
        numbers = "the per-feature mean/std in this finding's evidence (mean, std)"
    part = f"{part_label(name)} " if name else "input "
    evidence = {"mean": means, "std": stds, "channels": count, "sampled": len(ctx.train_sample)}
    if name:
        evidence["input"] = name
    yield Hit(
        f"{what} not normalized: over {len(ctx.train_sample)} sampled train inputs, "
        f"{kind} means span {float(mean.min()):.3g}..{float(mean.max()):.3g} and stds "
        f"{float(std_v.min()):.3g}..{float(std_v.max()):.3g} (expected about 0 and 1); "
        f"{part}{kind} {worst} has mean {float(mean[worst]):.3g}, std {float(std[worst]):.3g}",
        where=f"{part}{kind} {worst}",
        evidence=evidence,
        fix=f"Standardize per {kind} with the training-set statistics, {numbers}: "
        f"`x = (x - mean) / std` (broadcast over {kind} dim {dim}).",
    )
